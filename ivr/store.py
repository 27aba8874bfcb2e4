"""The embedded store: SQLite tables for registrations, call records, voicemails, the CRM
outbox and the audit trail, behind an asyncio API that never blocks the event loop.

Every statement runs on ONE dedicated worker thread that owns the only connection
(``await store.xxx(...)`` hands the work to it). SQLite errors never escape: they become a
:class:`StoreError` whose ``reason`` says what went wrong (``disk_full``, ``read_only``,
``corrupt``, ``busy``, ``io``, ``schema``, ``closed``, ``other``). A write that raised was not
stored; the caller logs it and keeps serving calls.

Durability: the database runs in WAL mode. Outbox, voicemail and audit writes commit with
``synchronous=FULL`` (fsync on every commit), so once ``await`` returns the row survives a
process crash or a power cut; registrations and call records use ``NORMAL`` (they survive a
process crash; a power cut may lose the last few commits).

Times are wall-clock UNIX seconds (``time.time()``), never ``loop.time()``: they must mean the
same thing after a restart. See ``docs/storage.md``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ivr.yamlloc import ConfigPath
from sipstack.registrar import Binding
from sipstack.transaction import Flow

__all__ = [
    "SCHEMA_VERSION",
    "AuditEntry",
    "CallRecord",
    "Database",
    "OutboxItem",
    "OutboxState",
    "Registration",
    "Store",
    "StoreError",
    "StoreSettings",
    "Voicemail",
]

T = TypeVar("T")

OutboxState = Literal["pending", "done", "failed"]
VoicemailState = Literal["new", "notified", "handled"]

# --------------------------------------------------------------------------------------------
# Config


class StoreSettings(BaseModel):
    """``store:`` section. ``path`` is relative to the config file's directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Defaults are validated too, so they resolve against the config file's directory.
    path: ConfigPath = Field(Path("var/switchhook.db"), validate_default=True)
    # Directory for audio the engine keeps (voicemails, recordings waiting for the CRM).
    audio_dir: ConfigPath = Field(Path("var/audio"), validate_default=True)
    # Upper bound on the database file; a write beyond it fails with reason "disk_full"
    # instead of filling the disk the audio also lives on. None: no cap.
    max_size_mb: int | None = Field(default=None, ge=1)


# --------------------------------------------------------------------------------------------
# Errors


class StoreError(Exception):
    """A store operation failed; nothing was written by the failing call.

    ``reason``: ``disk_full`` | ``read_only`` | ``corrupt`` | ``busy`` | ``io`` | ``schema`` |
    ``closed`` | ``other``. ``operation`` names the store method.
    """

    def __init__(self, message: str, *, reason: str = "other", operation: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.operation = operation


_REASONS = {
    "SQLITE_FULL": ("disk_full", "database or disk is full"),
    "SQLITE_READONLY": ("read_only", "database is read-only"),
    "SQLITE_CORRUPT": ("corrupt", "database file is corrupt"),
    "SQLITE_NOTADB": ("corrupt", "file is not an SQLite database"),
    "SQLITE_BUSY": ("busy", "database is locked by another process"),
    "SQLITE_LOCKED": ("busy", "database table is locked"),
    "SQLITE_IOERR": ("io", "disk I/O error"),
    "SQLITE_CANTOPEN": ("io", "cannot open the database file"),
    "SQLITE_PERM": ("read_only", "permission denied"),
}


def _convert(error: sqlite3.Error, path: Path, operation: str) -> StoreError:
    name = getattr(error, "sqlite_errorname", "") or ""
    # Extended codes (SQLITE_READONLY_DBMOVED, SQLITE_IOERR_WRITE...) share the primary prefix.
    primary = "_".join(name.split("_")[:2])
    reason, summary = _REASONS.get(primary, ("other", "database error"))
    if reason == "other" and "disk is full" in str(error):
        reason, summary = _REASONS["SQLITE_FULL"]
    return StoreError(
        f"store {operation} failed: {summary} ({path}): {error}", reason=reason, operation=operation
    )


# --------------------------------------------------------------------------------------------
# Rows


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """One agent contact binding (RFC 3261 §10.3). ``expires_at`` is wall-clock seconds."""

    aor: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    remote_host: str
    remote_port: int
    local_host: str | None = None
    local_port: int | None = None
    q: float = 1.0
    user_agent: str = ""

    @classmethod
    def from_binding(cls, binding: Binding, *, mono_now: float, wall_now: float) -> Registration:
        """The registrar keeps ``loop.time()`` deadlines; the store keeps wall-clock ones."""
        local = binding.flow.local
        return cls(
            aor=binding.aor,
            contact=binding.contact,
            expires_at=wall_now + (binding.expires_at - mono_now),
            call_id=binding.call_id,
            cseq=binding.cseq,
            transport=binding.flow.transport,
            remote_host=binding.flow.remote[0],
            remote_port=binding.flow.remote[1],
            local_host=local[0] if local else None,
            local_port=local[1] if local else None,
            q=binding.q,
            user_agent=binding.user_agent,
        )

    def to_binding(self, *, mono_now: float, wall_now: float) -> Binding:
        """Back to a registrar binding. Connections do not survive a restart: a TCP/TLS
        contact is reached on a new connection (or re-registers)."""
        local = (self.local_host, self.local_port) if self.local_host and self.local_port else None
        flow = Flow(self.transport, (self.remote_host, self.remote_port), None, local)
        return Binding(
            aor=self.aor,
            contact=self.contact,
            expires_at=mono_now + (self.expires_at - wall_now),
            call_id=self.call_id,
            cseq=self.cseq,
            flow=flow,
            q=self.q,
            user_agent=self.user_agent,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """What happened on one call, written when it ends."""

    call_id: str
    started_at: float
    answered_at: float | None = None
    ended_at: float | None = None
    caller: str = ""
    called: str = ""
    trunk: str | None = None
    queue: str | None = None
    agent: str | None = None
    menu_path: tuple[str, ...] = ()
    wait_seconds: float = 0.0
    ring_seconds: float = 0.0
    talk_seconds: float = 0.0
    hold_seconds: float = 0.0
    transfers: tuple[Mapping[str, Any], ...] = ()
    outcome: str = ""
    profile: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Voicemail:
    """A voicemail: the WAV on disk plus what the caller told us."""

    id: str
    queue: str
    caller: str
    callback_number: str | None
    started_at: float
    duration_seconds: float
    menu_path: tuple[str, ...]
    wav_path: Path
    state: VoicemailState = "new"
    call_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """A delivery to the CRM. ``files`` are the ordered parts; ``parts_acked`` of them are done."""

    id: int
    kind: str
    delivery_id: str
    payload: Mapping[str, Any]
    files: tuple[Path, ...]
    parts_acked: int
    attempts: int
    next_attempt_at: float
    created_at: float
    state: OutboxState
    last_error: str | None
    updated_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """Who did what, when, to which call."""

    who: str
    at: float
    action: str
    call_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None  # assigned by the store


# --------------------------------------------------------------------------------------------
# Schema: forward-only migrations, each applied once in its own transaction.

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE registrations (
        aor TEXT NOT NULL, contact TEXT NOT NULL, expires_at REAL NOT NULL,
        call_id TEXT NOT NULL, cseq INTEGER NOT NULL, transport TEXT NOT NULL,
        remote_host TEXT NOT NULL, remote_port INTEGER NOT NULL,
        local_host TEXT, local_port INTEGER, q REAL NOT NULL DEFAULT 1.0,
        user_agent TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (aor, contact));
    CREATE TABLE call_records (
        call_id TEXT PRIMARY KEY, started_at REAL NOT NULL, answered_at REAL, ended_at REAL,
        caller TEXT NOT NULL, called TEXT NOT NULL, trunk TEXT, queue TEXT, agent TEXT,
        menu_path TEXT NOT NULL, wait_seconds REAL NOT NULL, ring_seconds REAL NOT NULL,
        talk_seconds REAL NOT NULL, hold_seconds REAL NOT NULL, transfers TEXT NOT NULL,
        outcome TEXT NOT NULL, profile TEXT NOT NULL);
    CREATE INDEX call_records_started ON call_records (started_at);
    CREATE TABLE voicemails (
        id TEXT PRIMARY KEY, queue TEXT NOT NULL, caller TEXT NOT NULL, callback_number TEXT,
        started_at REAL NOT NULL, duration_seconds REAL NOT NULL, menu_path TEXT NOT NULL,
        wav_path TEXT NOT NULL, state TEXT NOT NULL, call_id TEXT);
    CREATE INDEX voicemails_queue ON voicemails (queue, state);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, delivery_id TEXT NOT NULL,
        payload TEXT NOT NULL, files TEXT NOT NULL, parts_acked INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0, next_attempt_at REAL NOT NULL,
        created_at REAL NOT NULL, state TEXT NOT NULL, last_error TEXT,
        updated_at REAL NOT NULL);
    CREATE INDEX outbox_due ON outbox (state, next_attempt_at);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT NOT NULL, at REAL NOT NULL,
        action TEXT NOT NULL, call_id TEXT, details TEXT NOT NULL);
    CREATE INDEX audit_call ON audit (call_id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------
# The synchronous core: one connection, used from one thread only.


class Database:
    """Synchronous store over one SQLite connection. Not thread-safe by design:
    :class:`Store` calls it from its single worker thread. Tests may use it directly."""

    def __init__(self, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreError(
                f"store open failed: cannot create {self.path.parent}: {error}",
                reason="io",
                operation="open",
            ) from None
        self._conn: sqlite3.Connection | None = None
        self._synchronous = ""
        try:
            # isolation_level=None: we issue BEGIN IMMEDIATE/COMMIT ourselves.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._conn = conn
            conn.execute("PRAGMA foreign_keys=ON")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(
                    f"store open failed: {self.path} cannot use WAL (got {mode})",
                    reason="io",
                    operation="open",
                )
            conn.execute("PRAGMA busy_timeout=5000")
            if max_size_mb is not None:
                page_size = conn.execute("PRAGMA page_size").fetchone()[0]
                conn.execute(f"PRAGMA max_page_count={max(1, max_size_mb * 2**20 // page_size)}")
            self._set_synchronous("FULL")
            self.migrate()
        except sqlite3.Error as error:
            self.close()
            raise _convert(error, self.path, "open") from None
        except StoreError:
            self.close()
            raise

    # -- plumbing ------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is closed", reason="closed")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _set_synchronous(self, level: str) -> None:
        if self._synchronous != level:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def _run(self, operation: str, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return work(self.conn)
        except sqlite3.Error as error:
            raise _convert(error, self.path, operation) from None

    def _write(
        self, operation: str, work: Callable[[sqlite3.Connection], T], *, durable: bool
    ) -> T:
        """One transaction; rolled back (and reported) if anything in it fails."""

        def run(conn: sqlite3.Connection) -> T:
            self._set_synchronous("FULL" if durable else "NORMAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        return self._run(operation, run)

    def schema_version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            return int(row[0] or 0)

        return self._run("schema_version", read)

    def migrate(self) -> int:
        """Apply the migrations this database has not seen; returns the new version."""
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path} has schema version {current}, newer than this "
                f"switchhook understands ({SCHEMA_VERSION}); refusing to touch it",
                reason="schema",
                operation="migrate",
            )
        for version in range(current + 1, SCHEMA_VERSION + 1):
            script = MIGRATIONS[version - 1]

            def apply(
                conn: sqlite3.Connection, script: str = script, version: int = version
            ) -> None:
                for statement in script.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))

            self._write("migrate", apply, durable=True)
        return SCHEMA_VERSION

    def check(self) -> list[str]:
        """``PRAGMA quick_check``: an empty list when the file is sound."""
        rows = self._run("check", lambda c: c.execute("PRAGMA quick_check").fetchall())
        return [] if rows == [("ok",)] else [str(row[0]) for row in rows]

    # -- registrations -------------------------------------------------------------------

    def put_registration(self, reg: Registration) -> None:
        self._write(
            "put_registration",
            lambda c: c.execute(
                "INSERT OR REPLACE INTO registrations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
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
                ),
            ),
            durable=False,
        )

    def delete_registration(self, aor: str, contact: str | None = None) -> int:
        """Remove one contact, or every contact of ``aor`` when ``contact`` is None."""
        if contact is None:
            cursor = self._write(
                "delete_registration",
                lambda c: c.execute("DELETE FROM registrations WHERE aor=?", (aor,)),
                durable=False,
            )
        else:
            cursor = self._write(
                "delete_registration",
                lambda c: c.execute(
                    "DELETE FROM registrations WHERE aor=? AND contact=?", (aor, contact)
                ),
                durable=False,
            )
        return cursor.rowcount

    def replace_registrations(self, regs: Iterable[Registration]) -> None:
        """Make the table exactly ``regs`` (a registrar snapshot) in one transaction."""
        rows = [
            (
                r.aor,
                r.contact,
                r.expires_at,
                r.call_id,
                r.cseq,
                r.transport,
                r.remote_host,
                r.remote_port,
                r.local_host,
                r.local_port,
                r.q,
                r.user_agent,
            )
            for r in regs
        ]

        def work(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM registrations")
            conn.executemany(
                "INSERT OR REPLACE INTO registrations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows
            )

        self._write("replace_registrations", work, durable=False)

    def registrations(
        self, *, now: float | None = None, aor: str | None = None
    ) -> list[Registration]:
        """Bindings (of ``aor``, or all), those expired at ``now`` left out."""
        sql = "SELECT * FROM registrations WHERE expires_at > ?"
        args: list[Any] = [now if now is not None else float("-inf")]
        if aor is not None:
            sql += " AND aor = ?"
            args.append(aor)
        rows = self._run(
            "registrations",
            lambda c: c.execute(sql + " ORDER BY aor, q DESC, contact", args).fetchall(),
        )
        return [
            Registration(
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
            for r in rows
        ]

    def purge_expired_registrations(self, now: float) -> int:
        return self._write(
            "purge_expired_registrations",
            lambda c: c.execute("DELETE FROM registrations WHERE expires_at <= ?", (now,)),
            durable=False,
        ).rowcount

    # -- call records --------------------------------------------------------------------

    def add_call_record(self, rec: CallRecord) -> None:
        self._write(
            "add_call_record",
            lambda c: c.execute(
                "INSERT OR REPLACE INTO call_records VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    rec.call_id,
                    rec.started_at,
                    rec.answered_at,
                    rec.ended_at,
                    rec.caller,
                    rec.called,
                    rec.trunk,
                    rec.queue,
                    rec.agent,
                    _json(list(rec.menu_path)),
                    rec.wait_seconds,
                    rec.ring_seconds,
                    rec.talk_seconds,
                    rec.hold_seconds,
                    _json([dict(t) for t in rec.transfers]),
                    rec.outcome,
                    _json(dict(rec.profile)),
                ),
            ),
            durable=False,
        )

    @staticmethod
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

    def call_record(self, call_id: str) -> CallRecord | None:
        row = self._run(
            "call_record",
            lambda c: c.execute(
                "SELECT * FROM call_records WHERE call_id=?", (call_id,)
            ).fetchone(),
        )
        return None if row is None else self._call_record(row)

    def call_records(
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
        return [
            self._call_record(r)
            for r in self._run("call_records", lambda c: c.execute(sql, args).fetchall())
        ]

    def purge_call_records(self, before: float) -> int:
        return self._write(
            "purge_call_records",
            lambda c: c.execute("DELETE FROM call_records WHERE started_at < ?", (before,)),
            durable=False,
        ).rowcount

    # -- voicemails ----------------------------------------------------------------------

    def add_voicemail(self, vm: Voicemail, *, crm: NewOutboxItem | None = None) -> int | None:
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
                    _json(list(vm.menu_path)),
                    str(vm.wav_path),
                    vm.state,
                    vm.call_id,
                ),
            )
            return None if crm is None else self._insert_outbox(conn, crm)

        return self._write("add_voicemail", work, durable=True)

    @staticmethod
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

    def voicemail(self, voicemail_id: str) -> Voicemail | None:
        row = self._run(
            "voicemail",
            lambda c: c.execute("SELECT * FROM voicemails WHERE id=?", (voicemail_id,)).fetchone(),
        )
        return None if row is None else self._voicemail(row)

    def voicemails(self, *, queue: str | None = None, state: str | None = None) -> list[Voicemail]:
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
            self._voicemail(r)
            for r in self._run(
                "voicemails", lambda c: c.execute(sql + " ORDER BY started_at, id", args).fetchall()
            )
        ]

    def set_voicemail_state(self, voicemail_id: str, state: VoicemailState) -> bool:
        return (
            self._write(
                "set_voicemail_state",
                lambda c: c.execute(
                    "UPDATE voicemails SET state=? WHERE id=?", (state, voicemail_id)
                ),
                durable=True,
            ).rowcount
            == 1
        )

    def delete_voicemail(self, voicemail_id: str) -> bool:
        """Delete the row (the caller deletes the WAV)."""
        return (
            self._write(
                "delete_voicemail",
                lambda c: c.execute("DELETE FROM voicemails WHERE id=?", (voicemail_id,)),
                durable=True,
            ).rowcount
            == 1
        )

    # -- outbox --------------------------------------------------------------------------

    @staticmethod
    def _insert_outbox(conn: sqlite3.Connection, item: NewOutboxItem) -> int:
        cursor = conn.execute(
            "INSERT INTO outbox (kind, delivery_id, payload, files, parts_acked, attempts, "
            "next_attempt_at, created_at, state, last_error, updated_at) "
            "VALUES (?,?,?,?,0,0,?,?,'pending',NULL,?)",
            (
                item.kind,
                item.delivery_id,
                _json(dict(item.payload)),
                _json([str(p) for p in item.files]),
                item.created_at,
                item.created_at,
                item.created_at,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def enqueue(self, item: NewOutboxItem) -> int:
        return self._write("enqueue", lambda c: self._insert_outbox(c, item), durable=True)

    @staticmethod
    def _outbox(r: Sequence[Any]) -> OutboxItem:
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

    def outbox_item(self, item_id: int) -> OutboxItem | None:
        row = self._run(
            "outbox_item",
            lambda c: c.execute("SELECT * FROM outbox WHERE id=?", (item_id,)).fetchone(),
        )
        return None if row is None else self._outbox(row)

    def outbox_items(self, *, state: str | None = None) -> list[OutboxItem]:
        sql = "SELECT * FROM outbox"
        args: list[Any] = []
        if state is not None:
            sql += " WHERE state=?"
            args.append(state)
        return [
            self._outbox(r)
            for r in self._run(
                "outbox_items", lambda c: c.execute(sql + " ORDER BY id", args).fetchall()
            )
        ]

    def due_outbox(self, now: float, limit: int = 100) -> list[OutboxItem]:
        """Pending items whose next attempt is due, oldest due first."""
        return [
            self._outbox(r)
            for r in self._run(
                "due_outbox",
                lambda c: c.execute(
                    "SELECT * FROM outbox WHERE state='pending' AND next_attempt_at <= ? "
                    "ORDER BY next_attempt_at, id LIMIT ?",
                    (now, limit),
                ).fetchall(),
            )
        ]

    def next_outbox_due(self) -> float | None:
        row = self._run(
            "next_outbox_due",
            lambda c: c.execute(
                "SELECT MIN(next_attempt_at) FROM outbox WHERE state='pending'"
            ).fetchone(),
        )
        return None if row[0] is None else float(row[0])

    def outbox_part_acked(self, item_id: int, parts_acked: int, now: float) -> None:
        self._write(
            "outbox_part_acked",
            lambda c: c.execute(
                "UPDATE outbox SET parts_acked=?, updated_at=? WHERE id=?",
                (parts_acked, now, item_id),
            ),
            durable=True,
        )

    def outbox_done(self, item_id: int, now: float) -> None:
        self._write(
            "outbox_done",
            lambda c: c.execute(
                "UPDATE outbox SET state='done', attempts=attempts+1, last_error=NULL, "
                "updated_at=? WHERE id=?",
                (now, item_id),
            ),
            durable=True,
        )

    def outbox_retry(
        self, item_id: int, *, attempts: int, next_attempt_at: float, error: str, now: float
    ) -> None:
        self._write(
            "outbox_retry",
            lambda c: c.execute(
                "UPDATE outbox SET attempts=?, next_attempt_at=?, last_error=?, updated_at=? "
                "WHERE id=?",
                (attempts, next_attempt_at, error, now, item_id),
            ),
            durable=True,
        )

    def outbox_failed(self, item_id: int, *, attempts: int, error: str, now: float) -> None:
        self._write(
            "outbox_failed",
            lambda c: c.execute(
                "UPDATE outbox SET state='failed', attempts=?, last_error=?, updated_at=? "
                "WHERE id=?",
                (attempts, error, now, item_id),
            ),
            durable=True,
        )

    def outbox_requeue(self, item_id: int, now: float) -> bool:
        """Put a ``failed`` item back to ``pending`` (after the admin fixed the CRM side)."""
        return (
            self._write(
                "outbox_requeue",
                lambda c: c.execute(
                    "UPDATE outbox SET state='pending', next_attempt_at=?, updated_at=? "
                    "WHERE id=? AND state='failed'",
                    (now, now, item_id),
                ),
                durable=True,
            ).rowcount
            == 1
        )

    def outbox_delete(self, item_ids: Sequence[int]) -> int:
        def work(conn: sqlite3.Connection) -> int:
            return conn.executemany(
                "DELETE FROM outbox WHERE id=?", [(i,) for i in item_ids]
            ).rowcount

        return self._write("outbox_delete", work, durable=True)

    def outbox_older_than(self, cutoff: float) -> list[OutboxItem]:
        return [
            self._outbox(r)
            for r in self._run(
                "outbox_older_than",
                lambda c: c.execute(
                    "SELECT * FROM outbox WHERE created_at < ? ORDER BY id", (cutoff,)
                ).fetchall(),
            )
        ]

    # -- audit ---------------------------------------------------------------------------

    def add_audit(self, entry: AuditEntry) -> int:
        cursor = self._write(
            "add_audit",
            lambda c: c.execute(
                "INSERT INTO audit (who, at, action, call_id, details) VALUES (?,?,?,?,?)",
                (entry.who, entry.at, entry.action, entry.call_id, _json(dict(entry.details))),
            ),
            durable=True,
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def audit(
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
            for r in self._run("audit", lambda c: c.execute(sql, args).fetchall())
        ]


@dataclass(frozen=True, slots=True, kw_only=True)
class NewOutboxItem:
    """What :meth:`Database.enqueue` persists (the outbox assigns ``delivery_id``)."""

    kind: str
    delivery_id: str
    payload: Mapping[str, Any]
    files: tuple[Path, ...]
    created_at: float


# --------------------------------------------------------------------------------------------
# The asyncio adapter: one worker thread, every call awaited.


class Store:
    """``await Store.open(path)`` (or ``Store(path)`` then ``await store.start()``).

    Every method runs :class:`Database` work on the store's single worker thread; the
    event loop only awaits. Raises :class:`StoreError`, never ``sqlite3.Error``.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> None:
        self.path = Path(path)
        self._max_size_mb = max_size_mb
        self._executor: ThreadPoolExecutor | None = None
        self._db: Database | None = None

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> Store:
        store = cls(path, max_size_mb=max_size_mb)
        await store.start()
        return store

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Store:
        return cls(settings.path, max_size_mb=settings.max_size_mb)

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchhook-store")
        try:
            self._db = await self._call("open", self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open(self) -> Database:
        return Database(self.path, max_size_mb=self._max_size_mb)

    async def close(self) -> None:
        if self._executor is None:
            return
        db, executor = self._db, self._executor
        if db is not None:
            await self._call("close", db.close)
        self._db, self._executor = None, None
        executor.shutdown(wait=True)

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def _call(self, operation: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._executor is None:
            raise StoreError(
                f"store {operation} failed: store is not open ({self.path})",
                reason="closed",
                operation=operation,
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, lambda: fn(*args, **kwargs))
        except StoreError:
            raise
        except sqlite3.Error as error:  # only from paths outside Database._run
            raise _convert(error, self.path, operation) from None
        except RuntimeError as error:  # executor shut down under us
            raise StoreError(
                f"store {operation} failed: {error}", reason="closed", operation=operation
            ) from None

    @property
    def db(self) -> Database:
        if self._db is None:
            raise StoreError(f"store is not open ({self.path})", reason="closed")
        return self._db

    # Each method below mirrors the Database method of the same name.

    async def schema_version(self) -> int:
        return await self._call("schema_version", self.db.schema_version)

    async def migrate(self) -> int:
        return await self._call("migrate", self.db.migrate)

    async def check(self) -> list[str]:
        return await self._call("check", self.db.check)

    async def put_registration(self, reg: Registration) -> None:
        await self._call("put_registration", self.db.put_registration, reg)

    async def delete_registration(self, aor: str, contact: str | None = None) -> int:
        return await self._call("delete_registration", self.db.delete_registration, aor, contact)

    async def replace_registrations(self, regs: Iterable[Registration]) -> None:
        await self._call("replace_registrations", self.db.replace_registrations, list(regs))

    async def registrations(
        self, *, now: float | None = None, aor: str | None = None
    ) -> list[Registration]:
        return await self._call("registrations", self.db.registrations, now=now, aor=aor)

    async def purge_expired_registrations(self, now: float) -> int:
        return await self._call(
            "purge_expired_registrations", self.db.purge_expired_registrations, now
        )

    async def add_call_record(self, rec: CallRecord) -> None:
        await self._call("add_call_record", self.db.add_call_record, rec)

    async def call_record(self, call_id: str) -> CallRecord | None:
        return await self._call("call_record", self.db.call_record, call_id)

    async def call_records(self, **filters: Any) -> list[CallRecord]:
        return await self._call("call_records", self.db.call_records, **filters)

    async def purge_call_records(self, before: float) -> int:
        return await self._call("purge_call_records", self.db.purge_call_records, before)

    async def add_voicemail(self, vm: Voicemail, *, crm: NewOutboxItem | None = None) -> int | None:
        return await self._call("add_voicemail", self.db.add_voicemail, vm, crm=crm)

    async def voicemail(self, voicemail_id: str) -> Voicemail | None:
        return await self._call("voicemail", self.db.voicemail, voicemail_id)

    async def voicemails(
        self, *, queue: str | None = None, state: str | None = None
    ) -> list[Voicemail]:
        return await self._call("voicemails", self.db.voicemails, queue=queue, state=state)

    async def set_voicemail_state(self, voicemail_id: str, state: VoicemailState) -> bool:
        return await self._call(
            "set_voicemail_state", self.db.set_voicemail_state, voicemail_id, state
        )

    async def delete_voicemail(self, voicemail_id: str) -> bool:
        return await self._call("delete_voicemail", self.db.delete_voicemail, voicemail_id)

    async def enqueue(self, item: NewOutboxItem) -> int:
        return await self._call("enqueue", self.db.enqueue, item)

    async def outbox_item(self, item_id: int) -> OutboxItem | None:
        return await self._call("outbox_item", self.db.outbox_item, item_id)

    async def outbox_items(self, *, state: str | None = None) -> list[OutboxItem]:
        return await self._call("outbox_items", self.db.outbox_items, state=state)

    async def due_outbox(self, now: float, limit: int = 100) -> list[OutboxItem]:
        return await self._call("due_outbox", self.db.due_outbox, now, limit)

    async def next_outbox_due(self) -> float | None:
        return await self._call("next_outbox_due", self.db.next_outbox_due)

    async def outbox_part_acked(self, item_id: int, parts_acked: int, now: float) -> None:
        await self._call("outbox_part_acked", self.db.outbox_part_acked, item_id, parts_acked, now)

    async def outbox_done(self, item_id: int, now: float) -> None:
        await self._call("outbox_done", self.db.outbox_done, item_id, now)

    async def outbox_retry(
        self, item_id: int, *, attempts: int, next_attempt_at: float, error: str, now: float
    ) -> None:
        await self._call(
            "outbox_retry",
            self.db.outbox_retry,
            item_id,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            error=error,
            now=now,
        )

    async def outbox_failed(self, item_id: int, *, attempts: int, error: str, now: float) -> None:
        await self._call(
            "outbox_failed", self.db.outbox_failed, item_id, attempts=attempts, error=error, now=now
        )

    async def outbox_requeue(self, item_id: int, now: float) -> bool:
        return await self._call("outbox_requeue", self.db.outbox_requeue, item_id, now)

    async def outbox_delete(self, item_ids: Sequence[int]) -> int:
        return await self._call("outbox_delete", self.db.outbox_delete, list(item_ids))

    async def outbox_older_than(self, cutoff: float) -> list[OutboxItem]:
        return await self._call("outbox_older_than", self.db.outbox_older_than, cutoff)

    async def add_audit(self, entry: AuditEntry) -> int:
        return await self._call("add_audit", self.db.add_audit, entry)

    async def audit(
        self, *, call_id: str | None = None, since: float | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        return await self._call("audit", self.db.audit, call_id=call_id, since=since, limit=limit)
