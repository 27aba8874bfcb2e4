"""ivr.store: round trips per table, forward migrations, errors become StoreError, and the
same repositories through the synchronous Database and the asyncio Store."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from ivr.store import (
    SCHEMA_VERSION,
    AuditEntry,
    CallRecord,
    Database,
    NewOutboxItem,
    Registration,
    Store,
    StoreError,
    StoreSettings,
    Voicemail,
)
from sipstack.registrar import Binding
from sipstack.transaction import Flow


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(tmp_path / "store.db")
    yield database
    database.close()


def registration(contact: str = "sip:alice@10.0.0.5:5060", **kw: object) -> Registration:
    fields: dict[str, object] = dict(
        aor="sip:alice@example.com",
        contact=contact,
        expires_at=1_000_600.0,
        call_id="reg-1@10.0.0.5",
        cseq=7,
        transport="udp",
        remote_host="10.0.0.5",
        remote_port=5060,
        local_host="127.0.0.1",
        local_port=5070,
        q=0.5,
        user_agent="Yealink T54W",
    )
    fields.update(kw)
    return Registration(**fields)  # type: ignore[arg-type]


def voicemail(vm_id: str = "vm-1", tmp: Path = Path("/var/vm")) -> Voicemail:
    return Voicemail(
        id=vm_id,
        queue="billing",
        caller="+33123456789",
        callback_number="+33600000000",
        started_at=1_000_000.0,
        duration_seconds=12.5,
        menu_path=("main", "2", "billing"),
        wav_path=tmp / f"{vm_id}.wav",
        call_id="call-9",
    )


def outbox_item(files: tuple[Path, ...] = (), created_at: float = 1_000_000.0) -> NewOutboxItem:
    return NewOutboxItem(
        kind="recording",
        delivery_id="d" * 32,
        payload={"call_id": "c1", "caller": "+331"},
        files=files,
        created_at=created_at,
    )


# -- schema ----------------------------------------------------------------------------------


def test_new_database_is_at_current_schema_in_wal_mode(db: Database, tmp_path: Path) -> None:
    assert db.schema.version() == SCHEMA_VERSION
    assert db.schema.check() == []
    with sqlite3.connect(tmp_path / "store.db") as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in other.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {
        "registrations",
        "call_records",
        "voicemails",
        "outbox",
        "audit",
        "schema_version",
    } <= tables


def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    first = Database(path)
    first.audit.add(AuditEntry(who="admin", at=1.0, action="boot"))
    assert first.schema.migrate() == SCHEMA_VERSION
    assert first.schema.migrate() == SCHEMA_VERSION
    first.close()
    again = Database(path)  # reopening runs migrate() again
    assert again.schema.version() == SCHEMA_VERSION
    assert [e.action for e in again.audit.find()] == ["boot"]
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT COUNT(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    again.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    Database(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer than this switchhook") as caught:
        Database(path)
    assert caught.value.reason == "schema"


# -- tables ----------------------------------------------------------------------------------


def test_registrations_round_trip_and_expiry(db: Database) -> None:
    reg = registration()
    db.registrations.put(reg)
    db.registrations.put(registration("sip:alice@10.0.0.6", expires_at=999_000.0, q=1.0))
    assert db.registrations.find(now=1_000_000.0) == [reg]
    assert len(db.registrations.find()) == 2
    # A refresh replaces the binding (same aor + contact).
    refreshed = registration(cseq=8, expires_at=1_003_600.0)
    db.registrations.put(refreshed)
    assert db.registrations.find(now=1_000_000.0, aor=reg.aor) == [refreshed]
    assert db.registrations.purge_expired(1_000_000.0) == 1
    assert db.registrations.delete(reg.aor, reg.contact) == 1
    assert db.registrations.find() == []


def test_registrations_replace_with_a_snapshot(db: Database) -> None:
    db.registrations.put(registration("sip:old@10.0.0.1"))
    snapshot = [registration("sip:a@10.0.0.2"), registration("sip:b@10.0.0.3")]
    db.registrations.replace_all(snapshot)
    assert sorted(r.contact for r in db.registrations.find()) == [
        "sip:a@10.0.0.2",
        "sip:b@10.0.0.3",
    ]


def test_registration_converts_monotonic_deadlines_to_wall_clock() -> None:
    flow = Flow("tcp", ("10.0.0.5", 40000), 3, ("127.0.0.1", 5060))
    binding = Binding(
        aor="sip:bob@example.com",
        contact="sip:bob@10.0.0.5;transport=tcp",
        expires_at=150.0,
        call_id="x",
        cseq=2,
        flow=flow,
        q=0.7,
        user_agent="ua",
    )
    reg = Registration.from_binding(binding, mono_now=100.0, wall_now=1_700_000_000.0)
    assert reg.expires_at == 1_700_000_050.0
    assert (reg.transport, reg.remote_host, reg.remote_port) == ("tcp", "10.0.0.5", 40000)
    # After a restart the loop clock starts elsewhere; the remaining lifetime is kept.
    back = reg.to_binding(mono_now=5.0, wall_now=1_700_000_010.0)
    assert back.expires_at == 45.0
    assert back.flow == Flow("tcp", ("10.0.0.5", 40000), None, ("127.0.0.1", 5060))
    assert (back.aor, back.contact, back.q, back.user_agent) == (
        binding.aor,
        binding.contact,
        0.7,
        "ua",
    )


def test_call_records_round_trip(db: Database) -> None:
    record = CallRecord(
        call_id="c1",
        started_at=100.0,
        answered_at=130.0,
        ended_at=400.0,
        caller="+331",
        called="+332",
        trunk="carrier",
        queue="billing",
        agent="alice",
        menu_path=("main", "1"),
        wait_seconds=30.0,
        ring_seconds=4.0,
        talk_seconds=260.0,
        hold_seconds=10.0,
        transfers=({"to": "sales", "at": 300.0, "kind": "blind"},),
        outcome="answered",
        profile={"verified_customer": True, "bad_actor": False},
    )
    db.calls.add(record)
    db.calls.add(CallRecord(call_id="c2", started_at=500.0, queue="sales"))
    assert db.calls.get("c1") == record
    assert db.calls.get("missing") is None
    assert [r.call_id for r in db.calls.find()] == ["c2", "c1"]
    assert [r.call_id for r in db.calls.find(queue="billing")] == ["c1"]
    assert [r.call_id for r in db.calls.find(since=200.0)] == ["c2"]
    assert db.calls.purge(before=200.0) == 1


def test_voicemails_round_trip_and_state(db: Database, tmp_path: Path) -> None:
    vm = voicemail(tmp=tmp_path)
    assert db.voicemails.add(vm) is None
    assert db.voicemails.get("vm-1") == vm
    assert db.voicemails.find(queue="billing", state="new") == [vm]
    assert db.voicemails.set_state("vm-1", "notified")
    assert db.voicemails.find(state="new") == []
    assert db.voicemails.get("vm-1").state == "notified"  # type: ignore[union-attr]
    assert db.voicemails.delete("vm-1")
    assert db.voicemails.get("vm-1") is None


def test_voicemail_and_its_crm_item_are_written_together(db: Database, tmp_path: Path) -> None:
    vm = voicemail(tmp=tmp_path)
    item_id = db.voicemails.add(vm, crm=outbox_item())
    assert item_id is not None and db.outbox.get(item_id) is not None
    # A second insert of the same voicemail fails: neither row is added.
    with pytest.raises(StoreError):
        db.voicemails.add(vm, crm=outbox_item())
    assert len(db.outbox.find()) == 1


def test_outbox_round_trip_and_transitions(db: Database, tmp_path: Path) -> None:
    files = (tmp_path / "a.wav.part001of002", tmp_path / "a.wav.part002of002")
    item_id = db.outbox.enqueue(outbox_item(files))
    item = db.outbox.get(item_id)
    assert item is not None
    assert (item.kind, item.files, item.state, item.attempts, item.parts_acked) == (
        "recording",
        files,
        "pending",
        0,
        0,
    )
    assert item.payload == {"call_id": "c1", "caller": "+331"}
    assert db.outbox.due(now=1_000_000.0) == [item]
    assert db.outbox.next_due() == 1_000_000.0
    db.outbox.retry_later(item_id, attempts=1, next_attempt_at=1_000_010.0, error="503", now=1.0)
    assert db.outbox.due(now=1_000_005.0) == []
    db.outbox.set_parts_acked(item_id, 1, now=2.0)
    db.outbox.mark_done(item_id, now=3.0)
    done = db.outbox.get(item_id)
    assert done is not None and (done.state, done.attempts, done.parts_acked) == ("done", 2, 1)
    assert db.outbox.next_due() is None

    other = db.outbox.enqueue(outbox_item())
    db.outbox.mark_failed(other, attempts=1, error="CRM answered 400", now=4.0)
    assert [i.id for i in db.outbox.find(state="failed")] == [other]
    assert db.outbox.requeue(other, now=5.0)
    assert db.outbox.get(other).state == "pending"  # type: ignore[union-attr]
    assert [i.id for i in db.outbox.older_than(1_000_001.0)] == [item_id, other]
    assert db.outbox.delete([item_id, other]) == 2
    assert db.outbox.find() == []


def test_audit_round_trip(db: Database) -> None:
    first = db.audit.add(
        AuditEntry(
            who="sup1", at=10.0, action="monitor.start", call_id="c1", details={"mode": "listen"}
        )
    )
    db.audit.add(AuditEntry(who="mgr", at=20.0, action="call.end", call_id="c2"))
    entries = db.audit.find(call_id="c1")
    assert entries == [
        AuditEntry(
            id=first,
            who="sup1",
            at=10.0,
            action="monitor.start",
            call_id="c1",
            details={"mode": "listen"},
        )
    ]
    assert [e.action for e in db.audit.find(since=15.0)] == ["call.end"]


# -- errors ----------------------------------------------------------------------------------


def test_disk_full_is_a_store_error_and_nothing_is_half_written(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", max_size_mb=1)
    big = {"blob": "x" * (600 * 1024)}
    first = db.outbox.enqueue(
        NewOutboxItem(kind="k", delivery_id="1", payload=big, files=(), created_at=1.0)
    )
    with pytest.raises(StoreError, match="database or disk is full") as caught:
        for n in range(5):
            db.outbox.enqueue(
                NewOutboxItem(kind="k", delivery_id=str(n), payload=big, files=(), created_at=1.0)
            )
    assert caught.value.reason == "disk_full"
    assert caught.value.operation == "enqueue"
    # The store still works for reads and small writes after the failure.
    assert db.outbox.get(first) is not None
    db.audit.add(AuditEntry(who="x", at=1.0, action="still-serving"))
    assert db.schema.check() == []
    db.close()


def test_corrupt_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    path.write_bytes(b"this is not an sqlite database" * 200)
    with pytest.raises(StoreError, match="not an SQLite database") as caught:
        Database(path)
    assert caught.value.reason == "corrupt"


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StoreError) as caught:
        Database(blocker / "store.db")  # parent is a file
    assert caught.value.reason == "io"


# -- the asyncio adapter ---------------------------------------------------------------------


def test_async_store_runs_on_one_worker_thread(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "store.db") as store:
            await store.registrations.put(registration())
            await store.voicemails.add(voicemail(tmp=tmp_path))
            await store.audit.add(AuditEntry(who="a", at=1.0, action="x"))
            assert len(await store.registrations.find()) == 1
            assert (await store.voicemails.get("vm-1")) is not None
            assert await store.schema.version() == SCHEMA_VERSION
        with pytest.raises(StoreError, match="not open") as caught:
            await store.audit.find()
        assert caught.value.reason == "closed"

    asyncio.run(scenario())


def test_async_store_reports_failed_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path / "store.db", max_size_mb=1)
        await store.start()
        big = {"blob": "y" * (700 * 1024)}
        await store.outbox.enqueue(
            NewOutboxItem(kind="k", delivery_id="1", payload=big, files=(), created_at=1.0)
        )
        with pytest.raises(StoreError) as caught:
            await store.outbox.enqueue(
                NewOutboxItem(kind="k", delivery_id="2", payload=big, files=(), created_at=1.0)
            )
        assert caught.value.reason == "disk_full"
        assert len(await store.outbox.find()) == 1
        await store.close()

    asyncio.run(scenario())


def test_async_store_names_the_operation_and_rolls_back_both_tables(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with await Store.open(tmp_path / "store.db", max_size_mb=1) as store:
            big = {"blob": "v" * (1100 * 1024)}  # the outbox row alone is over the cap
            crm = NewOutboxItem(kind="k", delivery_id="1", payload=big, files=(), created_at=1.0)
            with pytest.raises(StoreError) as caught:
                await store.voicemails.add(voicemail(tmp=tmp_path), crm=crm)
            assert (caught.value.reason, caught.value.operation) == ("disk_full", "add_voicemail")
            assert "store add_voicemail failed: database or disk is full" in str(caught.value)
            # The voicemail row went in first; the transaction took it back out.
            assert await store.voicemails.get("vm-1") is None
            assert await store.outbox.find() == []

    asyncio.run(scenario())


def test_async_store_is_closed_before_start_and_after_close(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path / "store.db")
        with pytest.raises(StoreError, match="not open") as before:
            await store.calls.get("c1")
        await store.start()
        assert await store.calls.get("c1") is None
        await store.close()
        with pytest.raises(StoreError, match="not open") as after:
            await store.calls.add(CallRecord(call_id="c1", started_at=1.0))
        assert before.value.reason == after.value.reason == "closed"

    asyncio.run(scenario())
    db = Database(tmp_path / "store.db")
    assert db.calls.find() == []  # the write refused after close did not happen
    db.close()


def test_what_the_store_wrote_is_there_after_a_restart(tmp_path: Path) -> None:
    record = CallRecord(call_id="c1", started_at=100.0, menu_path=("main", "2"), outcome="ok")

    async def first_life() -> None:
        async with await Store.open(tmp_path / "store.db") as store:
            await store.registrations.put(registration())
            await store.calls.add(record)
            await store.audit.add(AuditEntry(who="sup1", at=5.0, action="monitor.start"))

    asyncio.run(first_life())
    db = Database(tmp_path / "store.db")
    assert db.registrations.find(now=1_000_000.0) == [registration()]
    assert db.calls.get("c1") == record
    assert [e.action for e in db.audit.find()] == ["monitor.start"]
    db.close()


def test_both_ways_in_offer_the_same_operations(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db")
    store = Store(tmp_path / "store.db")
    tables = ("schema", "registrations", "calls", "voicemails", "outbox", "audit")
    for table in tables:
        sync_repo, async_repo = getattr(db, table), getattr(store, table)
        names = [n for n in dir(type(sync_repo)) if not n.startswith("_") and n != "db"]
        assert names, table
        for name in names:
            sync_op, async_op = getattr(sync_repo, name), getattr(async_repo, name)
            # Same parameters both ways, without ``self``, and the method's own docstring.
            assert inspect.signature(sync_op) == inspect.signature(async_op), (table, name)
            assert "self" not in inspect.signature(sync_op).parameters
            assert sync_op.__doc__ == async_op.__doc__
    assert inspect.signature(store.outbox.retry_later).parameters.keys() == {
        "item_id",
        "attempts",
        "next_attempt_at",
        "error",
        "now",
    }
    db.close()


def test_settings_resolve_paths_against_the_config_directory(tmp_path: Path) -> None:
    settings = StoreSettings.model_validate(
        {"path": "data/sh.db"}, context={"base_dir": str(tmp_path)}
    )
    assert settings.path == tmp_path / "data" / "sh.db"
    with pytest.raises(ValueError):
        StoreSettings.model_validate({"path": "x.db", "bogus": 1})
