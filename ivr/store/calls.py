"""The ``call_records`` table: what happened on each call, written when it ends.

Writes use ``synchronous=NORMAL``: a process crash loses nothing, a power cut may lose the
last few records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from ivr.store.db import M, to_json
from ivr.store.records import CallRecord
from ivr.store.repository import Repository, operation

__all__ = ["CallsRepo"]


def _row(rec: CallRecord) -> tuple[Any, ...]:
    return (
        rec.call_id,
        rec.started_at,
        rec.answered_at,
        rec.ended_at,
        rec.caller,
        rec.called,
        rec.trunk,
        rec.queue,
        rec.agent,
        to_json(list(rec.menu_path)),
        rec.wait_seconds,
        rec.ring_seconds,
        rec.talk_seconds,
        rec.hold_seconds,
        to_json([dict(t) for t in rec.transfers]),
        rec.outcome,
        to_json(dict(rec.profile)),
    )


def _call_record(r: Sequence[Any]) -> CallRecord:
    return CallRecord(
        call_id=r[0],
        started_at=r[1],
        answered_at=r[2],
        ended_at=r[3],
        caller=r[4],
        called=r[5],
        trunk=r[6],
        queue=r[7],
        agent=r[8],
        menu_path=tuple(json.loads(r[9])),
        wait_seconds=r[10],
        ring_seconds=r[11],
        talk_seconds=r[12],
        hold_seconds=r[13],
        transfers=tuple(json.loads(r[14])),
        outcome=r[15],
        profile=json.loads(r[16]),
    )


class CallsRepo(Repository[M]):
    """Call records keyed by ``call_id``."""

    @operation("add_call_record")
    def add(self, rec: CallRecord) -> None:
        """Insert the record, or replace the one with the same ``call_id``."""
        self.db.write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO call_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                _row(rec),
            ),
            durable=False,
        )

    @operation("call_record")
    def get(self, call_id: str) -> CallRecord | None:
        row = self.db.read(
            lambda c: c.execute("SELECT * FROM call_records WHERE call_id=?", (call_id,)).fetchone()
        )
        return None if row is None else _call_record(row)

    @operation("call_records")
    def find(
        self,
        *,
        since: float | None = None,
        until: float | None = None,
        queue: str | None = None,
        agent: str | None = None,
        limit: int = 1000,
    ) -> list[CallRecord]:
        """Newest first."""
        sql = "SELECT * FROM call_records WHERE 1=1"
        args: list[Any] = []
        for column, op, value in (
            ("started_at", ">=", since),
            ("started_at", "<", until),
            ("queue", "=", queue),
            ("agent", "=", agent),
        ):
            if value is not None:
                sql += f" AND {column} {op} ?"
                args.append(value)
        sql += " ORDER BY started_at DESC LIMIT ?"
        args.append(limit)
        return [_call_record(r) for r in self.db.read(lambda c: c.execute(sql, args).fetchall())]

    @operation("purge_call_records")
    def purge(self, before: float) -> int:
        """Delete the records of calls started before ``before``; returns how many."""
        return self.db.write(
            lambda c: c.execute("DELETE FROM call_records WHERE started_at < ?", (before,)),
            durable=False,
        ).rowcount
