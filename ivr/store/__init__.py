"""The embedded store: SQLite tables for registrations, call records, voicemails, the CRM
outbox and the audit trail, behind an asyncio API that never blocks the event loop.

- :mod:`~ivr.store.settings`: the ``store:`` section.
- :mod:`~ivr.store.records`: the rows, as frozen dataclasses.
- :mod:`~ivr.store.db`: the connection, migrations, the worker thread and
  :class:`StoreError`.
- :mod:`~ivr.store.repository`: how one repository method serves both ways in.
- One repository per table, each with its SQL: :mod:`~ivr.store.registrations`,
  :mod:`~ivr.store.calls`, :mod:`~ivr.store.voicemails`, :mod:`~ivr.store.outbox`,
  :mod:`~ivr.store.audit`.
- :mod:`~ivr.store.api`: :class:`Store` (asyncio: ``await store.calls.add(record)``) and
  :class:`Database` (the same, synchronous).

Every statement of a :class:`Store` runs on ONE dedicated worker thread that owns the only
connection. SQLite errors never escape: they become a :class:`StoreError` whose ``reason``
says what went wrong (``disk_full``, ``read_only``, ``corrupt``, ``busy``, ``io``, ``schema``,
``closed``, ``other``). A write that raised was not stored; the caller logs it and keeps
serving calls.

Durability: the database runs in WAL mode. Outbox, voicemail and audit writes commit with
``synchronous=FULL`` (fsync on every commit), so once ``await`` returns the row survives a
process crash or a power cut; registrations and call records use ``NORMAL`` (they survive a
process crash; a power cut may lose the last few commits).

Times are wall-clock UNIX seconds (``time.time()``), never ``loop.time()``: they must mean the
same thing after a restart. See ``docs/storage.md``.
"""

from ivr.store.api import Database, Store
from ivr.store.db import MIGRATIONS, SCHEMA_VERSION, StoreError
from ivr.store.records import (
    AuditEntry,
    CallRecord,
    NewOutboxItem,
    OutboxItem,
    OutboxState,
    Registration,
    Voicemail,
    VoicemailState,
)
from ivr.store.settings import StoreSettings

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "AuditEntry",
    "CallRecord",
    "Database",
    "NewOutboxItem",
    "OutboxItem",
    "OutboxState",
    "Registration",
    "Store",
    "StoreError",
    "StoreSettings",
    "Voicemail",
    "VoicemailState",
]
