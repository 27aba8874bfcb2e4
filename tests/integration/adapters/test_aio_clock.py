"""MediaClock on a real event loop: tick order, absolute schedule, late skipping, safety."""

from __future__ import annotations

import asyncio

from media.aio.clock import MediaClock
from media.aio.loop import install_best_event_loop_policy


class Recorder:
    def __init__(self, clock: MediaClock, stop_after: int, done: asyncio.Future[None]) -> None:
        self.clock = clock
        self.ticks: list[int] = []
        self.deadlines: list[float] = []
        self.stop_after = stop_after
        self.done = done

    def on_tick(self, tick: int) -> None:
        self.ticks.append(tick)
        self.deadlines.append(self.clock.deadline(tick))
        if len(self.ticks) == self.stop_after:
            self.clock.remove(self)
            self.done.set_result(None)


class Boom:
    def __init__(self) -> None:
        self.calls = 0

    def on_tick(self, tick: int) -> None:
        self.calls += 1
        raise RuntimeError("listener bug")


def test_ten_ticks_in_order_on_absolute_deadlines() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        done: asyncio.Future[None] = loop.create_future()
        boom = Boom()
        clock.add(boom)  # a failing listener must not stop the others
        rec = Recorder(clock, 10, done)
        clock.add(rec)
        start = clock.start_time
        assert start is not None and clock.running
        await asyncio.wait_for(done, 5)
        assert rec.ticks == list(range(10))
        assert rec.deadlines == [start + n * 0.005 for n in range(10)]
        assert boom.calls >= 10
        clock.remove(boom)
        assert not clock.running and len(clock) == 0

    asyncio.run(main())


def test_late_loop_skips_ahead_instead_of_bursting() -> None:
    import time

    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005, max_late_intervals=2)
        done: asyncio.Future[None] = loop.create_future()

        class Blocker:
            def on_tick(self, tick: int) -> None:
                if tick == 1:
                    time.sleep(0.05)  # simulate a blocked loop: ~10 intervals

        blocker = Blocker()
        clock.add(blocker)
        rec = Recorder(clock, 4, done)
        clock.add(rec)
        await asyncio.wait_for(done, 5)
        clock.remove(blocker)
        assert rec.ticks[:2] == [0, 1]
        assert rec.ticks[2] > 2 + 2  # skipped ahead
        assert rec.ticks[3] == rec.ticks[2] + 1
        assert clock.late_ticks == rec.ticks[2] - 2

    asyncio.run(main())


def test_remove_other_listener_during_tick() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        done: asyncio.Future[None] = loop.create_future()
        victim = Boom()

        class Remover:
            def on_tick(self, tick: int) -> None:
                clock.remove(victim)

        remover = Remover()
        clock.add(remover)
        clock.add(victim)
        rec = Recorder(clock, 3, done)
        clock.add(rec)
        await asyncio.wait_for(done, 5)
        assert victim.calls == 0
        clock.remove(remover)
        assert not clock.running

    asyncio.run(main())


def test_install_best_event_loop_policy() -> None:
    original = asyncio.get_event_loop_policy()
    try:
        name = install_best_event_loop_policy()
        assert name in ("uvloop", "asyncio")
    finally:
        asyncio.set_event_loop_policy(original)
