"""The ``voicemails`` table: each message's WAV path and what the caller told us.

Every write is durable (``synchronous=FULL``): once it returns, the row survives a crash or a
power cut.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ivr.store.db import M, to_json
from ivr.store.outbox import insert_item
from ivr.store.records import NewOutboxItem, Voicemail, VoicemailState
from ivr.store.repository import Repository, operation

__all__ = ["VoicemailsRepo"]


def _voicemail(r: Sequence[Any]) -> Voicemail:
    return Voicemail(
        id=r[0],
        queue=r[1],
        caller=r[2],
        callback_number=r[3],
        started_at=r[4],
        duration_seconds=r[5],
        menu_path=tuple(json.loads(r[6])),
        wav_path=Path(r[7]),
        state=r[8],
        call_id=r[9],
    )


class VoicemailsRepo(Repository[M]):
    """Voicemails keyed by ``id``; ``state`` is ``new``, ``notified`` or ``handled``."""

    @operation("add_voicemail")
    def add(self, vm: Voicemail, *, crm: NewOutboxItem | None = None) -> int | None:
        """Store a voicemail; with ``crm``, enqueue its CRM delivery in the same transaction
        (both or neither). Returns the outbox id when ``crm`` is given."""

        def work(conn: sqlite3.Connection) -> int | None:
            conn.execute(
                "INSERT INTO voicemails VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    vm.id,
                    vm.queue,
                    vm.caller,
                    vm.callback_number,
                    vm.started_at,
                    vm.duration_seconds,
                    to_json(list(vm.menu_path)),
                    str(vm.wav_path),
                    vm.state,
                    vm.call_id,
                ),
            )
            return None if crm is None else insert_item(conn, crm)

        return self.db.write(work, durable=True)

    @operation("voicemail")
    def get(self, voicemail_id: str) -> Voicemail | None:
        row = self.db.read(
            lambda c: c.execute("SELECT * FROM voicemails WHERE id=?", (voicemail_id,)).fetchone()
        )
        return None if row is None else _voicemail(row)

    @operation("voicemails")
    def find(self, *, queue: str | None = None, state: str | None = None) -> list[Voicemail]:
        """Oldest first."""
        sql = "SELECT * FROM voicemails WHERE 1=1"
        args: list[Any] = []
        if queue is not None:
            sql += " AND queue=?"
            args.append(queue)
        if state is not None:
            sql += " AND state=?"
            args.append(state)
        return [
            _voicemail(r)
            for r in self.db.read(
                lambda c: c.execute(sql + " ORDER BY started_at, id", args).fetchall()
            )
        ]

    @operation("set_voicemail_state")
    def set_state(self, voicemail_id: str, state: VoicemailState) -> bool:
        """False when there is no such voicemail."""
        return (
            self.db.write(
                lambda c: c.execute(
                    "UPDATE voicemails SET state=? WHERE id=?", (state, voicemail_id)
                ),
                durable=True,
            ).rowcount
            == 1
        )

    @operation("delete_voicemail")
    def delete(self, voicemail_id: str) -> bool:
        """Delete the row (the caller deletes the WAV). False when there was none."""
        return (
            self.db.write(
                lambda c: c.execute("DELETE FROM voicemails WHERE id=?", (voicemail_id,)),
                durable=True,
            ).rowcount
            == 1
        )
