"""Timer values (RFC 3261 §17, Table 4) and a small deadline heap shared by the sans-IO cores."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TimerSettings:
    """T1, T2, T4 in seconds (RFC 3261 §17.1.1.1 defaults: 500 ms, 4 s, 5 s)."""

    t1_seconds: float = 0.5
    t2_seconds: float = 4.0
    t4_seconds: float = 5.0

    @property
    def timeout_seconds(self) -> float:
        """64*T1: timers B, F, H, J, L, M and the 2xx retransmission give-up (§13.3.1.4)."""
        return 64 * self.t1_seconds


class TimerHeap:
    """Deadlines keyed by (owner, name); re-arming a key replaces its deadline.

    Cancelled entries stay in the heap and are skipped lazily (cheap cancel, O(log n) arm).
    """

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable]] = []
        self._live: dict[Hashable, tuple[float, int]] = {}
        self._counter = itertools.count()

    def arm(self, key: Hashable, deadline: float) -> None:
        seq = next(self._counter)
        self._live[key] = (deadline, seq)
        heapq.heappush(self._heap, (deadline, seq, key))

    def cancel(self, key: Hashable) -> None:
        self._live.pop(key, None)

    def deadline(self, key: Hashable) -> float | None:
        entry = self._live.get(key)
        return entry[0] if entry else None

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, seq, key = heap[0]
            if self._live.get(key) == (deadline, seq):
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[Hashable]:
        """Remove and return every key whose deadline is <= now, earliest first."""
        due: list[Hashable] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            deadline, seq, key = heapq.heappop(heap)
            if self._live.get(key) == (deadline, seq):
                del self._live[key]
                due.append(key)
        return due

    def __len__(self) -> int:
        return len(self._live)
