"""The ``outbox`` table: CRM deliveries waiting, done or failed (``ivr.outbox`` drives them).

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
from ivr.store.records import NewOutboxItem, OutboxItem
from ivr.store.repository import Repository, operation

__all__ = ["OutboxRepo", "insert_item"]


def insert_item(conn: sqlite3.Connection, item: NewOutboxItem) -> int:
    """Insert a ``pending`` item inside the caller's transaction; returns its id. Also used
    by the voicemails table, which commits a voicemail and its delivery together."""
    cursor = conn.execute(
        "INSERT INTO outbox (kind, delivery_id, payload, files, parts_acked, attempts, "
        "next_attempt_at, created_at, state, last_error, updated_at) "
        "VALUES (?,?,?,?,0,0,?,?,'pending',NULL,?)",
        (
            item.kind,
            item.delivery_id,
            to_json(dict(item.payload)),
            to_json([str(p) for p in item.files]),
            item.created_at,
            item.created_at,
            item.created_at,
        ),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _item(r: Sequence[Any]) -> OutboxItem:
    return OutboxItem(
        id=r[0],
        kind=r[1],
        delivery_id=r[2],
        payload=json.loads(r[3]),
        files=tuple(Path(p) for p in json.loads(r[4])),
        parts_acked=r[5],
        attempts=r[6],
        next_attempt_at=r[7],
        created_at=r[8],
        state=r[9],
        last_error=r[10],
        updated_at=r[11],
    )


class OutboxRepo(Repository[M]):
    """Items move ``pending`` -> ``done`` or ``failed``; ``failed`` -> ``pending`` on requeue."""

    @operation("enqueue")
    def enqueue(self, item: NewOutboxItem) -> int:
        """Persist a ``pending`` item due at its ``created_at``; returns its id."""
        return self.db.write(lambda c: insert_item(c, item), durable=True)

    @operation("outbox_item")
    def get(self, item_id: int) -> OutboxItem | None:
        row = self.db.read(
            lambda c: c.execute("SELECT * FROM outbox WHERE id=?", (item_id,)).fetchone()
        )
        return None if row is None else _item(row)

    @operation("outbox_items")
    def find(self, *, state: str | None = None) -> list[OutboxItem]:
        """Every item (in ``state``), by id."""
        sql = "SELECT * FROM outbox"
        args: list[Any] = []
        if state is not None:
            sql += " WHERE state=?"
            args.append(state)
        return [
            _item(r)
            for r in self.db.read(lambda c: c.execute(sql + " ORDER BY id", args).fetchall())
        ]

    @operation("due_outbox")
    def due(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Pending items whose next attempt is due, oldest due first."""
        return [
            _item(r)
            for r in self.db.read(
                lambda c: c.execute(
                    "SELECT * FROM outbox WHERE state='pending' AND next_attempt_at <= ? "
                    "ORDER BY next_attempt_at, id LIMIT ?",
                    (now, limit),
                ).fetchall()
            )
        ]

    @operation("next_outbox_due")
    def next_due(self) -> float | None:
        """When the next pending item is due; None when nothing is pending."""
        row = self.db.read(
            lambda c: c.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state='pending'"
            ).fetchone()
        )
        return None if row[0] is None else float(row[0])

    @operation("outbox_part_acked")
    def set_parts_acked(self, item_id: int, parts_acked: int, now: float) -> None:
        """The CRM acknowledged the first ``parts_acked`` parts."""
        self.db.write(
            lambda c: c.execute(
                "UPDATE outbox SET parts_acked=?, updated_at=? WHERE id=?",
                (parts_acked, now, item_id),
            ),
            durable=True,
        )

    @operation("outbox_done")
    def mark_done(self, item_id: int, now: float) -> None:
        """Delivered: state ``done``, one more attempt counted, the last error cleared."""
        self.db.write(
            lambda c: c.execute(
                "UPDATE outbox SET state='done', attempts=attempts+1, last_error=NULL, "
                "updated_at=? WHERE id=?",
                (now, item_id),
            ),
            durable=True,
        )

    @operation("outbox_retry")
    def retry_later(
        self, item_id: int, *, attempts: int, next_attempt_at: float, error: str, now: float
    ) -> None:
        """A retryable failure: still ``pending``, due again at ``next_attempt_at``."""
        self.db.write(
            lambda c: c.execute(
                "UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=?, updated_at=? "
                "WHERE id=?",
                (attempts, next_attempt_at, error, now, item_id),
            ),
            durable=True,
        )

    @operation("outbox_failed")
    def mark_failed(self, item_id: int, *, attempts: int, error: str, now: float) -> None:
        """A permanent failure: state ``failed`` (kept, visible, requeueable)."""
        self.db.write(
            lambda c: c.execute(
                "UPDATE outbox SET state='failed', attempts=?, last_error=?, updated_at=? "
                "WHERE id=?",
                (attempts, error, now, item_id),
            ),
            durable=True,
        )

    @operation("outbox_requeue")
    def requeue(self, item_id: int, now: float) -> bool:
        """Put a ``failed`` item back to ``pending`` (after the admin fixed the CRM side)."""
        return (
            self.db.write(
                lambda c: c.execute(
                    "UPDATE outbox SET state='pending', next_attempt_at=?, updated_at=? "
                    "WHERE id=? AND state='failed'",
                    (now, now, item_id),
                ),
                durable=True,
            ).rowcount
            == 1
        )

    @operation("outbox_delete")
    def delete(self, item_ids: Sequence[int]) -> int:
        """Delete these items in one transaction; returns how many existed."""

        def work(conn: sqlite3.Connection) -> int:
            return conn.executemany(
                "DELETE FROM outbox WHERE id=?", [(i,) for i in item_ids]
            ).rowcount

        return self.db.write(work, durable=True)

    @operation("outbox_older_than")
    def older_than(self, cutoff: float) -> list[OutboxItem]:
        """Items created before ``cutoff``, whatever their state, by id."""
        return [
            _item(r)
            for r in self.db.read(
                lambda c: c.execute(
                    "SELECT * FROM outbox WHERE created_at < ? ORDER BY id", (cutoff,)
                ).fetchall()
            )
        ]
