"""The two ways into the store, with the same repositories: :class:`Store` for the engine
(asyncio, every operation awaited and run on the store's thread) and :class:`Database`
(synchronous, in the caller's thread: tests and tools)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Generic

from ivr.store.audit import AuditRepo
from ivr.store.calls import CallsRepo
from ivr.store.db import Async, Connection, M, Runner, StoreThread, Sync
from ivr.store.outbox import OutboxRepo
from ivr.store.registrations import RegistrationsRepo
from ivr.store.repository import SchemaRepo
from ivr.store.settings import StoreSettings
from ivr.store.voicemails import VoicemailsRepo

__all__ = ["Database", "Store"]


class _Repositories(Generic[M]):
    """One repository per table, all going through one runner."""

    def __init__(self, runner: Runner[M]) -> None:
        self.schema: SchemaRepo[M] = SchemaRepo(runner)
        self.registrations: RegistrationsRepo[M] = RegistrationsRepo(runner)
        self.calls: CallsRepo[M] = CallsRepo(runner)
        self.voicemails: VoicemailsRepo[M] = VoicemailsRepo(runner)
        self.outbox: OutboxRepo[M] = OutboxRepo(runner)
        self.audit: AuditRepo[M] = AuditRepo(runner)


class Store(_Repositories[Async]):
    """``await Store.open(path)`` (or ``Store(path)`` then ``await store.start()``), then
    ``await store.calls.add(record)``, ``await store.outbox.due(now)``...

    Every operation runs on the store's single worker thread; the event loop only awaits.
    Raises :class:`~ivr.store.StoreError`, never ``sqlite3.Error``.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> None:
        self.path = Path(path)
        self._thread = StoreThread(self.path, max_size_mb=max_size_mb)
        super().__init__(self._thread)

    @classmethod
    async def open(cls, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> Store:
        store = cls(path, max_size_mb=max_size_mb)
        await store.start()
        return store

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Store:
        return cls(settings.path, max_size_mb=settings.max_size_mb)

    async def start(self) -> None:
        """Start the thread and open the database on it (migrating it if needed)."""
        await self._thread.start()

    async def close(self) -> None:
        """Close the database and stop the thread; operations then fail with ``closed``."""
        await self._thread.close()

    async def __aenter__(self) -> Store:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()


class Database(_Repositories[Sync]):
    """The store over one connection used in the caller's thread: ``db.calls.add(record)``.
    Opening creates the file (WAL, migrated); not thread-safe by design."""

    def __init__(self, path: str | os.PathLike[str], *, max_size_mb: int | None = None) -> None:
        self._connection = Connection(path, max_size_mb=max_size_mb)
        self.path = self._connection.path
        super().__init__(self._connection)

    def close(self) -> None:
        self._connection.close()
