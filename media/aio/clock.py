"""The one shared media clock: a single ``loop.call_at`` chain ticking every 20 ms for all legs.

Ticks are scheduled on absolute deadlines (``start + n * interval``), so lateness of one
callback never accumulates into drift. When the loop falls more than ``max_late_intervals``
behind, the clock skips the missed ticks (counting them in ``late_ticks``) rather than
firing a burst, which would send a burst of RTP.
"""

from __future__ import annotations

import asyncio
import math
from typing import Protocol

import structlog

__all__ = ["MediaClock", "TickListener"]

log = structlog.get_logger(__name__)


class TickListener(Protocol):
    """Anything with ``on_tick(tick)``; called once per clock tick."""

    def on_tick(self, tick: int) -> None: ...


class MediaClock:
    """Shared ticker. Starts with the first listener, stops when the last one is removed.

    ``add``/``remove`` are safe from inside ``on_tick``: a listener removed during a tick is
    not called later in that tick; one added during a tick is first called on the next.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        interval_seconds: float = 0.02,
        *,
        max_late_intervals: int = 3,
        auto_start: bool = True,
    ) -> None:
        if interval_seconds <= 0:
            raise ValueError("interval_seconds must be positive")
        self._loop = loop
        self.interval_seconds = interval_seconds
        self.max_late_intervals = max_late_intervals
        self.auto_start = auto_start
        self.late_ticks = 0
        self._listeners: dict[int, TickListener] = {}
        self._snapshot: tuple[TickListener, ...] = ()
        self._start: float | None = None
        self._next_tick = 0
        self._handle: asyncio.TimerHandle | None = None
        self._in_tick = False
        self._removed_in_tick = False
        self.current_tick = -1

    # -- listeners -----------------------------------------------------------------------

    def add(self, listener: TickListener) -> None:
        """Register ``listener``; starts the clock if it is the first (and auto_start)."""
        self._listeners[id(listener)] = listener
        self._snapshot = tuple(self._listeners.values())
        if self.auto_start and self._handle is None:
            self.start()

    def remove(self, listener: TickListener) -> None:
        """Unregister ``listener`` (no error if absent); stops the clock when none remain."""
        if self._listeners.pop(id(listener), None) is None:
            return
        self._snapshot = tuple(self._listeners.values())
        if self._in_tick:
            self._removed_in_tick = True
        if self.auto_start and not self._listeners:
            self.stop()

    def __len__(self) -> int:
        return len(self._listeners)

    # -- schedule ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while a tick is scheduled."""
        return self._handle is not None

    @property
    def start_time(self) -> float | None:
        """Loop time of tick 0 of the current run, or None when stopped."""
        return self._start

    def deadline(self, tick: int) -> float:
        """Absolute loop time at which ``tick`` is scheduled: ``start + tick * interval``."""
        if self._start is None:
            raise RuntimeError("media clock is not running")
        return self._start + tick * self.interval_seconds

    def start(self) -> None:
        """Start ticking now (tick 0 at the current loop time); no-op if running."""
        if self._handle is not None:
            return
        self._start = self._loop.time()
        self._next_tick = 0
        self.current_tick = -1
        self._handle = self._loop.call_at(self._start, self._fire)

    def stop(self) -> None:
        """Stop ticking; a later start begins a new schedule at tick 0."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._start = None

    def _fire(self) -> None:
        fired = self._handle
        tick = self._next_tick
        self.current_tick = tick
        self._in_tick = True
        self._removed_in_tick = False
        try:
            for listener in self._snapshot:
                if self._removed_in_tick and id(listener) not in self._listeners:
                    continue
                try:
                    listener.on_tick(tick)
                except Exception:
                    log.exception("media_clock_listener_failed", tick=tick, listener=repr(listener))
        finally:
            self._in_tick = False
        if self._handle is not fired or self._start is None:
            return  # a listener stopped (and maybe restarted) the clock: that run owns it
        next_tick = tick + 1
        deadline = self._start + next_tick * self.interval_seconds
        now = self._loop.time()
        if now - deadline > self.max_late_intervals * self.interval_seconds:
            # Late by more than N intervals: skip to the next future tick instead of bursting.
            caught_up = math.floor((now - self._start) / self.interval_seconds) + 1
            self.late_ticks += caught_up - next_tick
            log.warning("media_clock_late", skipped=caught_up - next_tick, tick=caught_up)
            next_tick = caught_up
            deadline = self._start + next_tick * self.interval_seconds
        self._next_tick = next_tick
        self._handle = self._loop.call_at(deadline, self._fire)
