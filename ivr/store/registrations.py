"""The ``registrations`` table: agent contact bindings, so they survive a restart.

Writes use ``synchronous=NORMAL``: a process crash loses nothing, a power cut may lose the
last few (phones re-register anyway).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ivr.store.db import M
from ivr.store.records import Registration
from ivr.store.repository import Repository, operation

__all__ = ["RegistrationsRepo"]

_PUT = "INSERT OR REPLACE INTO registrations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"


def _row(reg: Registration) -> tuple[Any, ...]:
    return (
        reg.aor,
        reg.contact,
        reg.expires_at,
        reg.call_id,
        reg.cseq,
        reg.transport,
        reg.remote_host,
        reg.remote_port,
        reg.local_host,
        reg.local_port,
        reg.q,
        reg.user_agent,
    )


def _registration(r: Sequence[Any]) -> Registration:
    return Registration(
        aor=r[0],
        contact=r[1],
        expires_at=r[2],
        call_id=r[3],
        cseq=r[4],
        transport=r[5],
        remote_host=r[6],
        remote_port=r[7],
        local_host=r[8],
        local_port=r[9],
        q=r[10],
        user_agent=r[11],
    )


class RegistrationsRepo(Repository[M]):
    """Bindings keyed by (aor, contact); ``expires_at`` is wall-clock seconds."""

    @operation("put_registration")
    def put(self, reg: Registration) -> None:
        """Insert the binding, or replace the one with the same aor and contact."""
        self.db.write(lambda c: c.execute(_PUT, _row(reg)), durable=False)

    @operation("delete_registration")
    def delete(self, aor: str, contact: str | None = None) -> int:
        """Remove one contact, or every contact of ``aor`` when ``contact`` is None."""
        if contact is None:
            cursor = self.db.write(
                lambda c: c.execute("DELETE FROM registrations WHERE aor=?", (aor,)),
                durable=False,
            )
        else:
            cursor = self.db.write(
                lambda c: c.execute(
                    "DELETE FROM registrations WHERE aor=? AND contact=?", (aor, contact)
                ),
                durable=False,
            )
        return cursor.rowcount

    @operation("replace_registrations")
    def replace_all(self, regs: Iterable[Registration]) -> None:
        """Make the table exactly ``regs`` (a registrar snapshot) in one transaction."""
        rows = [_row(r) for r in regs]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM registrations")
            conn.executemany(_PUT, rows)

        self.db.write(work, durable=False)

    @operation("registrations")
    def find(self, *, now: float | None = None, aor: str | None = None) -> list[Registration]:
        """Bindings (of ``aor``, or all), those expired at ``now`` left out."""
        sql = "SELECT * FROM registrations WHERE expires_at > ?"
        args: list[Any] = [now if now is not None else float("-inf")]
        if aor is not None:
            sql += " AND aor = ?"
            args.append(aor)
        rows = self.db.read(
            lambda c: c.execute(sql + " ORDER BY aor, q DESC, contact", args).fetchall()
        )
        return [_registration(r) for r in rows]

    @operation("purge_expired_registrations")
    def purge_expired(self, now: float) -> int:
        """Delete the bindings expired at ``now``; returns how many."""
        return self.db.write(
            lambda c: c.execute("DELETE FROM registrations WHERE expires_at <= ?", (now,)),
            durable=False,
        ).rowcount
