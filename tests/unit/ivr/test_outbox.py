"""ivr.outbox: backoff schedule on a fake clock, rejection, retention, split parts, resume
after a crash. Real SQLite in a temp dir; no network, no real time."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from structlog.testing import capture_logs

from ivr.outbox import (
    BackoffSettings,
    Delivery,
    DeliveryRejected,
    DeliveryRetryable,
    Outbox,
    OutboxSettings,
    backoff_delay,
    part_info,
    split_file,
)
from ivr.store import Store, StoreError, Voicemail

T = TypeVar("T")
T0 = 1_700_000_000.0
DAY = 86400.0
POLICY = BackoffSettings(initial_seconds=1, multiplier=2, max_seconds=10, jitter=0.5)


class FakeClock:
    def __init__(self, start: float = T0) -> None:
        self.t = start
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds
        await asyncio.sleep(0)


class FakeCrm:
    """Answers from a script (an exception to raise, or None to acknowledge)."""

    def __init__(
        self, *script: Exception | None, on_ack: Callable[[Delivery], None] | None = None
    ) -> None:
        self.script = list(script)
        self.calls: list[Delivery] = []
        self.bodies: list[bytes] = []
        self.on_ack = on_ack

    async def deliver(self, delivery: Delivery) -> None:
        self.calls.append(delivery)
        outcome = self.script.pop(0) if self.script else None
        if outcome is not None:
            raise outcome
        if delivery.file is not None:
            self.bodies.append(delivery.file.read_bytes())
        if self.on_ack is not None:
            self.on_ack(delivery)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(scenario())  # type: ignore[arg-type]


def make_outbox(store: Store, crm: FakeCrm, clock: FakeClock, **settings: object) -> Outbox:
    config = OutboxSettings.model_validate({"backoff": POLICY.model_dump(), **settings})
    return Outbox(store, crm, config, now=clock.now, sleep=clock.sleep, rng=random.Random(1234))


# -- pure helpers ----------------------------------------------------------------------------


def test_backoff_schedule_is_exact_with_a_seeded_rng() -> None:
    rng = random.Random(1234)
    delays = [backoff_delay(n, POLICY, rng) for n in range(1, 7)]
    # base 1, 2, 4, 8, 10 (cap), 10, each shortened by up to 50% jitter.
    assert delays == pytest.approx(
        [
            0.5167732321539307,
            1.5592674008246474,
            3.985017059882826,
            4.356096150203504,
            5.30365501318118,
            7.088862134705254,
        ]
    )
    no_jitter = BackoffSettings(initial_seconds=5, multiplier=3, max_seconds=100, jitter=0)
    assert [backoff_delay(n, no_jitter, rng) for n in range(1, 6)] == [5, 15, 45, 100, 100]
    assert backoff_delay(10_000, no_jitter, rng) == 100


def test_split_file_gives_ordered_parts_that_concatenate_back(tmp_path: Path) -> None:
    original = tmp_path / "rec.wav"
    data = bytes(range(256)) * 10 + b"tail"  # 2564 bytes
    original.write_bytes(data)
    parts = split_file(original, 1000)
    assert [p.name for p in parts] == [
        "rec.wav.part001of003",
        "rec.wav.part002of003",
        "rec.wav.part003of003",
    ]
    assert [p.stat().st_size for p in parts] == [1000, 1000, 564]
    assert b"".join(p.read_bytes() for p in parts) == data
    assert original.exists()
    assert [part_info(p) for p in parts] == [
        ("rec.wav", 1, 3),
        ("rec.wav", 2, 3),
        ("rec.wav", 3, 3),
    ]
    assert part_info(original) == ("rec.wav", 1, 1)


def test_split_file_edges(tmp_path: Path) -> None:
    exact = tmp_path / "exact.bin"
    exact.write_bytes(b"a" * 2000)
    assert [p.stat().st_size for p in split_file(exact, 1000)] == [1000, 1000]
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    parts = split_file(empty, 1000)
    assert [p.name for p in parts] == ["empty.bin.part001of001"] and parts[0].read_bytes() == b""
    with pytest.raises(ValueError):
        split_file(exact, 0)


# -- delivery --------------------------------------------------------------------------------


def test_retries_follow_the_backoff_schedule_then_deliver(tmp_path: Path) -> None:
    clock = FakeClock()
    wav = tmp_path / "rec.wav"
    wav.write_bytes(b"RIFF....WAVE")

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            crm = FakeCrm(
                DeliveryRetryable("503"),
                DeliveryRetryable("503"),
                DeliveryRetryable("timeout"),
                None,
            )
            outbox = make_outbox(store, crm, clock)
            crm.on_ack = lambda _d: outbox.stop()
            item_id = await outbox.enqueue("recording", {"call_id": "c1"}, [wav])
            await asyncio.wait_for(outbox.run(), timeout=5)
            item = await store.outbox.get(item_id)
            assert item is not None
            assert (item.state, item.attempts, item.last_error) == ("done", 4, None)
            assert [d.attempt for d in crm.calls] == [1, 2, 3, 4]
            assert crm.bodies == [b"RIFF....WAVE"]

    run(scenario)
    # The loop slept exactly the seeded backoff delays between attempts (1, 2, 4 s bases).
    assert clock.sleeps == pytest.approx(
        [0.5167732321539307, 1.5592674008246474, 3.985017059882826], abs=1e-6
    )
    assert not wav.exists()  # acknowledged -> deleted


def test_retry_after_is_honoured_and_capped(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            crm = FakeCrm(
                DeliveryRetryable("429", retry_after=120.0),
                DeliveryRetryable("503", retry_after=86400.0),
            )
            outbox = make_outbox(store, crm, clock, retry_after_max_seconds=600)
            item_id = await outbox.enqueue("call_record", {"call_id": "c1"})
            assert await outbox.run_once() == pytest.approx(120.0)
            clock.t += 120.0
            assert await outbox.run_once() == pytest.approx(600.0)
            item = await store.outbox.get(item_id)
            assert item is not None and item.state == "pending" and item.attempts == 2

    run(scenario)


def test_rejection_is_permanent_and_visible(tmp_path: Path) -> None:
    clock = FakeClock()
    wav = tmp_path / "vm.wav"
    wav.write_bytes(b"audio")

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            crm = FakeCrm(DeliveryRejected("CRM answered 422: bad queue", status=422))
            outbox = make_outbox(store, crm, clock)
            item_id = await outbox.enqueue("voicemail", {"queue": "x"}, [wav])
            with capture_logs() as logs:
                assert await outbox.run_once() is None  # nothing left pending
            item = await store.outbox.get(item_id)
            assert item is not None
            assert (item.state, item.last_error) == ("failed", "CRM answered 422: bad queue")
            assert wav.exists()  # kept for the admin
            assert any(e["event"] == "outbox_rejected" and e["log_level"] == "error" for e in logs)
            clock.t += 3600
            await outbox.run_once()
            assert len(crm.calls) == 1  # never retried on its own
            assert await outbox.requeue(item_id)
            await outbox.run_once()
            assert (await store.outbox.get(item_id)).state == "done"  # type: ignore[union-attr]
            assert not wav.exists()

    run(scenario)


def test_large_files_go_as_ordered_parts_and_resume_after_a_failed_part(tmp_path: Path) -> None:
    clock = FakeClock()
    big = tmp_path / "rec.wav"
    data = os.urandom(2500)
    big.write_bytes(data)

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            crm = FakeCrm(None, DeliveryRetryable("503"), None, None)
            # split at 1000 bytes (the production default is 50 MB)
            outbox = make_outbox(store, crm, clock, split_mb=1000 / 2**20)
            item_id = await outbox.enqueue("recording", {"call_id": "c1"}, [big])
            assert not big.exists()  # now represented by its parts
            item = await store.outbox.get(item_id)
            assert item is not None and [p.name for p in item.files] == [
                "rec.wav.part001of003",
                "rec.wav.part002of003",
                "rec.wav.part003of003",
            ]
            delay = await outbox.run_once()  # part 1 acked, part 2 fails
            assert not item.files[0].exists() and item.files[1].exists()
            assert (await store.outbox.get(item_id)).parts_acked == 1  # type: ignore[union-attr]
            clock.t += delay or 0
            await outbox.run_once()
            assert (await store.outbox.get(item_id)).state == "done"  # type: ignore[union-attr]
            assert not any(p.exists() for p in item.files)

    run(scenario)


def test_parts_metadata_and_bytes_in_order(tmp_path: Path) -> None:
    clock = FakeClock()
    big = tmp_path / "rec.wav"
    data = os.urandom(2500)
    big.write_bytes(data)
    crm = FakeCrm()

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = make_outbox(store, crm, clock, split_mb=1000 / 2**20)
            await outbox.enqueue("recording", {"call_id": "c1"}, [big])
            await outbox.run_once()

    run(scenario)
    assert [
        (d.part_index, d.part_count, d.file_name, d.file_part, d.file_parts) for d in crm.calls
    ] == [(1, 3, "rec.wav", 1, 3), (2, 3, "rec.wav", 2, 3), (3, 3, "rec.wav", 3, 3)]
    assert len({d.idempotency_key for d in crm.calls}) == 3
    assert b"".join(crm.bodies) == data


def test_keep_originals_works_on_copies(tmp_path: Path) -> None:
    clock = FakeClock()
    wav = tmp_path / "vm.wav"
    wav.write_bytes(b"voicemail audio")
    crm = FakeCrm()

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = make_outbox(store, crm, clock)
            await outbox.enqueue("voicemail", {}, [wav], keep_originals=True)
            await outbox.run_once()

    run(scenario)
    assert wav.read_bytes() == b"voicemail audio"
    assert crm.bodies == [b"voicemail audio"]
    assert list(tmp_path.glob("vm.wav.part*")) == []


def test_voicemail_row_and_crm_item_commit_together(tmp_path: Path) -> None:
    clock = FakeClock()
    vm = Voicemail(
        id="vm-1",
        queue="root",
        caller="+331",
        callback_number=None,
        started_at=T0,
        duration_seconds=3.0,
        menu_path=("main",),
        wav_path=tmp_path / "vm-1.wav",
    )

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = make_outbox(store, FakeCrm(), clock)
            item_id = await outbox.enqueue("voicemail", {"voicemail_id": "vm-1"}, voicemail=vm)
            assert await store.voicemails.get("vm-1") == vm
            assert (await store.outbox.get(item_id)) is not None

    run(scenario)


# -- retention -------------------------------------------------------------------------------


def test_retention_expires_old_items_with_their_files(tmp_path: Path) -> None:
    clock = FakeClock()
    old_wav, new_wav = tmp_path / "old.wav", tmp_path / "new.wav"
    old_wav.write_bytes(b"old")
    new_wav.write_bytes(b"new")

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            crm = FakeCrm(*[DeliveryRetryable("down")] * 100)
            outbox = make_outbox(store, crm, clock)
            old_id = await outbox.enqueue("recording", {"call_id": "old"}, [old_wav])
            clock.t += 2 * DAY
            new_id = await outbox.enqueue("recording", {"call_id": "new"}, [new_wav])
            clock.t += 5 * DAY  # old is exactly 7 days old: kept
            assert await outbox.sweep() == []
            clock.t += 1.0
            with capture_logs() as logs:
                assert await outbox.sweep() == [old_id]
            assert await store.outbox.get(old_id) is None
            assert not old_wav.exists()
            assert new_wav.exists() and await store.outbox.get(new_id) is not None
            expired = [e for e in logs if e["event"] == "outbox_expired"]
            assert len(expired) == 1 and expired[0]["log_level"] == "warning"
            assert expired[0]["outbox_id"] == old_id

    run(scenario)


def test_retention_is_configurable(tmp_path: Path) -> None:
    clock = FakeClock()

    async def scenario() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = make_outbox(store, FakeCrm(), clock, retention_days=1)
            item_id = await outbox.enqueue("call_record", {})
            clock.t += DAY + 1
            assert await outbox.sweep() == [item_id]

    run(scenario)


# -- crash safety ----------------------------------------------------------------------------


def test_pending_items_resume_after_the_objects_are_dropped(tmp_path: Path) -> None:
    clock = FakeClock()
    wav = tmp_path / "rec.wav"
    wav.write_bytes(b"audio")

    async def first_life() -> int:
        store = await Store.open(tmp_path / "s.db")
        outbox = make_outbox(store, FakeCrm(DeliveryRetryable("down")), clock)
        item_id = await outbox.enqueue("recording", {"call_id": "c1"}, [wav])
        await outbox.run_once()
        return item_id  # "crash": neither closed nor stopped

    item_id = run(first_life)
    clock.t += 3600
    crm = FakeCrm()

    async def second_life() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            await make_outbox(store, crm, clock).run_once()
            assert (await store.outbox.get(item_id)).state == "done"  # type: ignore[union-attr]

    run(second_life)
    assert crm.bodies == [b"audio"] and crm.calls[0].attempt == 2
    assert not wav.exists()


def test_pending_items_survive_a_killed_process(tmp_path: Path) -> None:
    wav = tmp_path / "rec.wav"
    wav.write_bytes(b"audio")
    script = textwrap.dedent(f"""
        import asyncio, os, signal
        from ivr.outbox import Outbox
        from ivr.store import Store

        async def main():
            store = await Store.open({str(tmp_path / "s.db")!r})
            outbox = Outbox(store, client=None)
            await outbox.enqueue("recording", {{"call_id": "c1"}}, [{str(wav)!r}])
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
    """)
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).parents[3],
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    crm = FakeCrm()

    async def after_restart() -> None:
        async with await Store.open(tmp_path / "s.db") as store:
            await make_outbox(store, crm, FakeClock(start=time.time() + 1)).run_once()

    run(after_restart)
    assert crm.bodies == [b"audio"]


def test_a_failed_enqueue_is_reported_and_leaves_the_file_alone(tmp_path: Path) -> None:
    clock = FakeClock()
    big = tmp_path / "rec.wav"
    big.write_bytes(b"z" * 3000)

    async def scenario() -> None:
        store = await Store.open(tmp_path / "s.db")
        outbox = make_outbox(store, FakeCrm(), clock, split_mb=1000 / 2**20)
        await store.close()  # any store failure: closed, disk full, read-only...
        with pytest.raises(StoreError):
            await outbox.enqueue("recording", {}, [big])

    run(scenario)
    assert big.read_bytes() == b"z" * 3000
    assert list(tmp_path.glob("rec.wav.part*")) == []
