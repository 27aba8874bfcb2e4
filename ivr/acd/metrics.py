"""Call and queue metrics from explicit timestamps (no clock reads).

Per call, :func:`call_metrics` turns a :class:`CallTimeline` (the instants the engine observed)
into durations. The queue wait runs from joining the queue to the bridge, so it INCLUDES the
ring time and the whisper and countdown the agent hears before the caller is connected: the
caller is still waiting during all of it.

Per queue, :class:`QueueCounters` accumulates answered/abandoned/overflowed counts, the average
wait and a rolling average handle time (the input of the estimated wait).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "HANDLE_TIME_SAMPLES",
    "CallMetrics",
    "CallTimeline",
    "QueueCounters",
    "call_metrics",
]

HANDLE_TIME_SAMPLES = 20
"""Handle times kept per queue for the rolling average (the most recent calls)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallTimeline:
    """What happened to one caller in one queue, as the engine saw it.

    ``offered_at`` is when the winning offer started ringing the agent who answered;
    ``answered_at`` when that agent answered (whisper starts); ``bridged_at`` when whisper and
    countdown were done and the legs were bridged; ``ended_at`` when the call (or the caller's
    wait, if never bridged) ended. ``hold_intervals`` are (start, end) pairs of agent hold.
    """

    call_id: str
    queue: str
    enqueued_at: float
    ended_at: float
    agent_id: str | None = None
    offered_at: float | None = None
    answered_at: float | None = None
    bridged_at: float | None = None
    hold_intervals: Sequence[tuple[float, float]] = ()
    transfers: int = 0
    outcome_override: str | None = None  # e.g. "overflow:voicemail:billing"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallMetrics:
    call_id: str
    queue: str
    agent_id: str | None
    outcome: str  # "answered", "abandoned" or the override
    queue_wait_seconds: float  # enqueue -> bridge (whisper and countdown included)
    ring_seconds: float | None  # offer -> agent answer
    whisper_seconds: float | None  # agent answer -> bridge
    talk_seconds: float | None  # bridge -> end, minus hold
    hold_seconds: float | None
    transfers: int

    def as_record(self) -> dict[str, Any]:
        """A plain dict for the call record store and ``switchhook calls``."""
        return {
            "call_id": self.call_id,
            "queue": self.queue,
            "agent_id": self.agent_id,
            "outcome": self.outcome,
            "queue_wait_seconds": round(self.queue_wait_seconds, 3),
            "ring_seconds": _round(self.ring_seconds),
            "whisper_seconds": _round(self.whisper_seconds),
            "talk_seconds": _round(self.talk_seconds),
            "hold_seconds": _round(self.hold_seconds),
            "transfers": self.transfers,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def call_metrics(timeline: CallTimeline) -> CallMetrics:
    """Durations of one call; raises ValueError when the instants are out of order."""
    t = timeline
    marks = [("enqueued_at", t.enqueued_at)]
    for name in ("offered_at", "answered_at", "bridged_at"):
        value = getattr(t, name)
        if value is not None:
            marks.append((name, value))
    marks.append(("ended_at", t.ended_at))
    for (a_name, a), (b_name, b) in itertools.pairwise(marks):
        if b < a:
            raise ValueError(f"{t.call_id}: {b_name} ({b}) is before {a_name} ({a})")
    if t.bridged_at is not None and t.answered_at is None:
        raise ValueError(f"{t.call_id}: bridged_at without answered_at")

    bridged = t.bridged_at
    ring = None
    if t.answered_at is not None and t.offered_at is not None:
        ring = t.answered_at - t.offered_at
    whisper = None
    if bridged is not None and t.answered_at is not None:
        whisper = bridged - t.answered_at
    if bridged is None:
        wait = t.ended_at - t.enqueued_at
        hold = talk = None
        outcome = t.outcome_override or "abandoned"
    else:
        wait = bridged - t.enqueued_at
        hold = 0.0
        for start, end in t.hold_intervals:
            if end < start:
                raise ValueError(f"{t.call_id}: hold interval ({start}, {end}) is reversed")
            # Only hold while bridged counts; clip anything the engine reports outside it.
            hold += max(0.0, min(end, t.ended_at) - max(start, bridged))
        talk = t.ended_at - bridged - hold
        outcome = t.outcome_override or "answered"
    return CallMetrics(
        call_id=t.call_id,
        queue=t.queue,
        agent_id=t.agent_id,
        outcome=outcome,
        queue_wait_seconds=wait,
        ring_seconds=ring,
        whisper_seconds=whisper,
        talk_seconds=talk,
        hold_seconds=hold,
        transfers=t.transfers,
    )


class QueueCounters:
    """Counts and averages of one queue since the engine started."""

    def __init__(self, *, handle_samples: int = HANDLE_TIME_SAMPLES) -> None:
        self.answered = 0
        self.abandoned = 0
        self.overflowed = 0
        self._wait_total = 0.0
        self._handle_times: deque[float] = deque(maxlen=handle_samples)

    def record_answered(self, wait_seconds: float) -> None:
        """A caller was bridged to an agent after ``wait_seconds`` (whisper included)."""
        self.answered += 1
        self._wait_total += wait_seconds

    def record_abandoned(self) -> None:
        self.abandoned += 1

    def record_overflow(self) -> None:
        self.overflowed += 1

    def record_handle(self, seconds: float) -> None:
        """An agent finished a call: answer -> end of wrap-up."""
        self._handle_times.append(seconds)

    @property
    def average_wait(self) -> float | None:
        """Mean queue wait of answered callers; None before the first one."""
        return self._wait_total / self.answered if self.answered else None

    @property
    def average_handle(self) -> float | None:
        """Mean of the last HANDLE_TIME_SAMPLES handle times; None before the first call."""
        if not self._handle_times:
            return None
        return sum(self._handle_times) / len(self._handle_times)
