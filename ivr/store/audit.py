"""The ``audit`` table: who did what, when, to which call (supervisors, managers, admins).

Every write is durable (``synchronous=FULL``): once it returns, the entry survives a crash or
a power cut.
"""

from __future__ import annotations

import json
from typing import Any

from ivr.store.db import M, to_json
from ivr.store.records import AuditEntry
from ivr.store.repository import Repository, operation

__all__ = ["AuditRepo"]


class AuditRepo(Repository[M]):
    """Append-only entries; the store assigns ``id``."""

    @operation("add_audit")
    def add(self, entry: AuditEntry) -> int:
        """Append the entry; returns its id."""
        cursor = self.db.write(
            lambda c: c.execute(
                "INSERT INTO audit (who, at, action, call_id, details) VALUES (?,?,?,?,?)",
                (entry.who, entry.at, entry.action, entry.call_id, to_json(dict(entry.details))),
            ),
            durable=True,
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    @operation("audit")
    def find(
        self, *, call_id: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        """Oldest first."""
        sql = "SELECT * FROM audit WHERE 1=1"
        args: list[Any] = []
        if call_id is not None:
            sql += " AND call_id=?"
            args.append(call_id)
        if since is not None:
            sql += " AND at>=?"
            args.append(since)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [
            AuditEntry(
                id=r[0], who=r[1], at=r[2], action=r[3], call_id=r[4], details=json.loads(r[5])
            )
            for r in self.db.read(lambda c: c.execute(sql, args).fetchall())
        ]
