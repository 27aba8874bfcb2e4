"""How the store reaches SQLite: the one connection, its schema migrations, the thread its
statements run on, and the conversion of every ``sqlite3.Error`` into :class:`StoreError`.

A :class:`Runner` decides where a store operation runs. :class:`Connection` runs it right away
in the caller's thread (tests, tools); :class:`StoreThread` hands it to the one worker thread
that owns the connection, and the event loop only awaits. Either way, a ``sqlite3.Error``
leaves the operation as a :class:`StoreError` naming the operation and the database file.

Durability: the database runs in WAL mode; each write asks for ``synchronous=FULL`` (fsync
on every commit) or ``NORMAL`` (survives a process crash, a power cut may lose the last
commits), see :meth:`Connection.write`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Generic, TypeVar

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Async",
    "Connection",
    "Runner",
    "StoreError",
    "StoreThread",
    "Sync",
    "to_json",
]

T = TypeVar("T")

# --------------------------------------------------------------------------------------------
# Errors


class StoreError(Exception):
    """A store operation failed; nothing was written by the failing call.

    ``reason``: ``disk_full`` | ``read_only`` | ``corrupt`` | ``busy`` | ``io`` | ``schema`` |
    ``closed`` | ``other``. ``operation`` names the store operation.
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


def to_json(value: Any) -> str:
    """How JSON columns are written: compact, keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


# --------------------------------------------------------------------------------------------
# Schema: forward-only migrations, each applied once in its own transaction. A migration is
# history: never edit one that shipped, append a new one. The statements that read and write
# each table live in that table's repository module.

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


# --------------------------------------------------------------------------------------------
# Runners


class Sync:
    """Mode of a repository whose operations run in the caller's thread and return."""


class Async:
    """Mode of a repository whose operations are awaited and run on the store's thread."""


M = TypeVar("M", Sync, Async)


class Runner(Generic[M]):
    """Where store operations run. ``M`` says whether :meth:`run` returns the result
    (:class:`Sync`) or a coroutine to await (:class:`Async`)."""

    path: Path

    def connection(self) -> Connection:
        """The open connection; :class:`StoreError` (``closed``) when there is none."""
        raise NotImplementedError

    def run(self, operation: str, work: Callable[[], T]) -> Any:
        """Run ``work`` (which uses :meth:`connection`) as the operation ``operation``."""
        raise NotImplementedError


class Connection(Runner[Sync]):
    """The one SQLite connection. Not thread-safe by design: it is used from the thread that
    opened it (the :class:`StoreThread`, or the test or tool that opened it directly).

    Opening creates the parent directory, switches to WAL and applies pending migrations.
    """

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

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is closed", reason="closed")
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # -- Runner: right here, right now ---------------------------------------------------

    def connection(self) -> Connection:
        return self

    def run(self, operation: str, work: Callable[[], T]) -> T:
        try:
            return work()
        except sqlite3.Error as error:
            raise _convert(error, self.path, operation) from None

    # -- statements ----------------------------------------------------------------------

    def _set_synchronous(self, level: str) -> None:
        if self._synchronous != level:
            self.conn.execute(f"PRAGMA synchronous={level}")
            self._synchronous = level

    def read(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run queries outside an explicit transaction."""
        return work(self.conn)

    def write(self, work: Callable[[sqlite3.Connection], T], *, durable: bool) -> T:
        """One transaction, rolled back (and the error re-raised) if anything in it fails.
        ``durable``: fsync the commit (``synchronous=FULL``), else ``NORMAL``."""
        conn = self.conn
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

    # -- schema --------------------------------------------------------------------------

    def schema_version(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            return int(row[0] or 0)

        return self.run("schema_version", lambda: self.read(read))

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

            self.run("migrate", functools.partial(self.write, apply, durable=True))
        return SCHEMA_VERSION

    def check(self) -> list[str]:
        """``PRAGMA quick_check``: an empty list when the file is sound."""
        rows = self.run(
            "check", lambda: self.read(lambda c: c.execute("PRAGMA quick_check").fetchall())
        )
        return [] if rows == [("ok",)] else [str(row[0]) for row in rows]


class StoreThread(Runner[Async]):
    """The one worker thread that opens and owns the :class:`Connection`. Every operation
    is handed to it; the event loop never blocks on the disk."""

    def __init__(self, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> None:
        self.path = Path(path)
        self._max_size_mb = max_size_mb
        self._executor: ThreadPoolExecutor | None = None
        self._db: Connection | None = None

    async def start(self) -> None:
        if self._executor is not None:
            return
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="switchhook-store")
        try:
            self._db = await self._submit("open", self._open)
        except BaseException:
            self._executor.shutdown(wait=False)
            self._executor = None
            raise

    def _open(self) -> Connection:
        return Connection(self.path, max_size_mb=self._max_size_mb)

    async def close(self) -> None:
        if self._executor is None:
            return
        db, executor = self._db, self._executor
        if db is not None:
            await self._submit("close", db.close)
        self._db, self._executor = None, None
        executor.shutdown(wait=True)

    # -- Runner: on the worker thread, awaited -------------------------------------------

    def connection(self) -> Connection:
        if self._db is None:
            raise StoreError(f"store is not open ({self.path})", reason="closed")
        return self._db

    async def run(self, operation: str, work: Callable[[], T]) -> T:
        db = self.connection()
        return await self._submit(operation, db.run, operation, work)

    async def _submit(self, operation: str, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StoreError(
                f"store {operation} failed: store is not open ({self.path})",
                reason="closed",
                operation=operation,
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except StoreError:
            raise
        except sqlite3.Error as error:  # only from open/close, outside Connection.run
            raise _convert(error, self.path, operation) from None
        except RuntimeError as error:  # executor shut down under us
            raise StoreError(
                f"store {operation} failed: {error}", reason="closed", operation=operation
            ) from None
