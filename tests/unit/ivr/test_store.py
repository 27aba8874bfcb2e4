"""ivr.store: round trips per table, forward migrations, errors become StoreError."""

from __future__ import annotations

import asyncio
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
    assert db.schema_version() == SCHEMA_VERSION
    assert db.check() == []
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
    first.add_audit(AuditEntry(who="admin", at=1.0, action="boot"))
    assert first.migrate() == SCHEMA_VERSION
    assert first.migrate() == SCHEMA_VERSION
    first.close()
    again = Database(path)  # reopening runs migrate() again
    assert again.schema_version() == SCHEMA_VERSION
    assert [e.action for e in again.audit()] == ["boot"]
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
    db.put_registration(reg)
    db.put_registration(registration("sip:alice@10.0.0.6", expires_at=999_000.0, q=1.0))
    assert db.registrations(now=1_000_000.0) == [reg]
    assert len(db.registrations()) == 2
    # A refresh replaces the binding (same aor + contact).
    refreshed = registration(cseq=8, expires_at=1_003_600.0)
    db.put_registration(refreshed)
    assert db.registrations(now=1_000_000.0, aor=reg.aor) == [refreshed]
    assert db.purge_expired_registrations(1_000_000.0) == 1
    assert db.delete_registration(reg.aor, reg.contact) == 1
    assert db.registrations() == []


def test_registrations_replace_with_a_snapshot(db: Database) -> None:
    db.put_registration(registration("sip:old@10.0.0.1"))
    snapshot = [registration("sip:a@10.0.0.2"), registration("sip:b@10.0.0.3")]
    db.replace_registrations(snapshot)
    assert sorted(r.contact for r in db.registrations()) == ["sip:a@10.0.0.2", "sip:b@10.0.0.3"]


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
    db.add_call_record(record)
    db.add_call_record(CallRecord(call_id="c2", started_at=500.0, queue="sales"))
    assert db.call_record("c1") == record
    assert db.call_record("missing") is None
    assert [r.call_id for r in db.call_records()] == ["c2", "c1"]
    assert [r.call_id for r in db.call_records(queue="billing")] == ["c1"]
    assert [r.call_id for r in db.call_records(since=200.0)] == ["c2"]
    assert db.purge_call_records(before=200.0) == 1


def test_voicemails_round_trip_and_state(db: Database, tmp_path: Path) -> None:
    vm = voicemail(tmp=tmp_path)
    assert db.add_voicemail(vm) is None
    assert db.voicemail("vm-1") == vm
    assert db.voicemails(queue="billing", state="new") == [vm]
    assert db.set_voicemail_state("vm-1", "notified")
    assert db.voicemails(state="new") == []
    assert db.voicemail("vm-1").state == "notified"  # type: ignore[union-attr]
    assert db.delete_voicemail("vm-1")
    assert db.voicemail("vm-1") is None


def test_voicemail_and_its_crm_item_are_written_together(db: Database, tmp_path: Path) -> None:
    vm = voicemail(tmp=tmp_path)
    item_id = db.add_voicemail(vm, crm=outbox_item())
    assert item_id is not None and db.outbox_item(item_id) is not None
    # A second insert of the same voicemail fails: neither row is added.
    with pytest.raises(StoreError):
        db.add_voicemail(vm, crm=outbox_item())
    assert len(db.outbox_items()) == 1


def test_outbox_round_trip_and_transitions(db: Database, tmp_path: Path) -> None:
    files = (tmp_path / "a.wav.part001of002", tmp_path / "a.wav.part002of002")
    item_id = db.enqueue(outbox_item(files))
    item = db.outbox_item(item_id)
    assert item is not None
    assert (item.kind, item.files, item.state, item.attempts, item.parts_acked) == (
        "recording",
        files,
        "pending",
        0,
        0,
    )
    assert item.payload == {"call_id": "c1", "caller": "+331"}
    assert db.due_outbox(now=1_000_000.0) == [item]
    assert db.next_outbox_due() == 1_000_000.0
    db.outbox_retry(item_id, attempts=1, next_attempt_at=1_000_010.0, error="503", now=1.0)
    assert db.due_outbox(now=1_000_005.0) == []
    db.outbox_part_acked(item_id, 1, now=2.0)
    db.outbox_done(item_id, now=3.0)
    done = db.outbox_item(item_id)
    assert done is not None and (done.state, done.attempts, done.parts_acked) == ("done", 2, 1)
    assert db.next_outbox_due() is None

    other = db.enqueue(outbox_item())
    db.outbox_failed(other, attempts=1, error="CRM answered 400", now=4.0)
    assert [i.id for i in db.outbox_items(state="failed")] == [other]
    assert db.outbox_requeue(other, now=5.0)
    assert db.outbox_item(other).state == "pending"  # type: ignore[union-attr]
    assert [i.id for i in db.outbox_older_than(1_000_001.0)] == [item_id, other]
    assert db.outbox_delete([item_id, other]) == 2
    assert db.outbox_items() == []


def test_audit_round_trip(db: Database) -> None:
    first = db.add_audit(
        AuditEntry(
            who="sup1", at=10.0, action="monitor.start", call_id="c1", details={"mode": "listen"}
        )
    )
    db.add_audit(AuditEntry(who="mgr", at=20.0, action="call.end", call_id="c2"))
    entries = db.audit(call_id="c1")
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
    assert [e.action for e in db.audit(since=15.0)] == ["call.end"]


# -- errors ----------------------------------------------------------------------------------


def test_disk_full_is_a_store_error_and_nothing_is_half_written(tmp_path: Path) -> None:
    db = Database(tmp_path / "store.db", max_size_mb=1)
    big = {"blob": "x" * (600 * 1024)}
    first = db.enqueue(
        NewOutboxItem(kind="k", delivery_id="1", payload=big, files=(), created_at=1.0)
    )
    with pytest.raises(StoreError, match="database or disk is full") as caught:
        for n in range(5):
            db.enqueue(
                NewOutboxItem(kind="k", delivery_id=str(n), payload=big, files=(), created_at=1.0)
            )
    assert caught.value.reason == "disk_full"
    assert caught.value.operation == "enqueue"
    # The store still works for reads and small writes after the failure.
    assert db.outbox_item(first) is not None
    db.add_audit(AuditEntry(who="x", at=1.0, action="still-serving"))
    assert db.check() == []
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
            await store.put_registration(registration())
            await store.add_voicemail(voicemail(tmp=tmp_path))
            await store.add_audit(AuditEntry(who="a", at=1.0, action="x"))
            assert len(await store.registrations()) == 1
            assert (await store.voicemail("vm-1")) is not None
            assert await store.schema_version() == SCHEMA_VERSION
        with pytest.raises(StoreError, match="not open") as caught:
            await store.audit()
        assert caught.value.reason == "closed"

    asyncio.run(scenario())


def test_async_store_reports_failed_writes(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = Store(tmp_path / "store.db", max_size_mb=1)
        await store.start()
        big = {"blob": "y" * (700 * 1024)}
        await store.enqueue(
            NewOutboxItem(kind="k", delivery_id="1", payload=big, files=(), created_at=1.0)
        )
        with pytest.raises(StoreError) as caught:
            await store.enqueue(
                NewOutboxItem(kind="k", delivery_id="2", payload=big, files=(), created_at=1.0)
            )
        assert caught.value.reason == "disk_full"
        assert len(await store.outbox_items()) == 1
        await store.close()

    asyncio.run(scenario())


def test_settings_resolve_paths_against_the_config_directory(tmp_path: Path) -> None:
    settings = StoreSettings.model_validate(
        {"path": "data/sh.db"}, context={"base_dir": str(tmp_path)}
    )
    assert settings.path == tmp_path / "data" / "sh.db"
    with pytest.raises(ValueError):
        StoreSettings.model_validate({"path": "x.db", "bogus": 1})
