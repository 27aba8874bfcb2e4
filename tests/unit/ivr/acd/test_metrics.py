from __future__ import annotations

import pytest

from ivr.acd import CallTimeline, QueueCounters, call_metrics


def test_queue_wait_includes_ring_whisper_and_countdown() -> None:
    metrics = call_metrics(
        CallTimeline(
            call_id="c1",
            queue="billing",
            agent_id="a1",
            enqueued_at=100,
            offered_at=120,
            answered_at=125,
            bridged_at=131,  # whisper + countdown took 6 s
            ended_at=200,
            hold_intervals=[(150, 160), (190, 210)],  # the second runs past the end: clipped
            transfers=1,
        )
    )
    assert metrics.queue_wait_seconds == 31
    assert metrics.ring_seconds == 5
    assert metrics.whisper_seconds == 6
    assert metrics.hold_seconds == 20
    assert metrics.talk_seconds == 49
    assert metrics.as_record() == {
        "call_id": "c1",
        "queue": "billing",
        "agent_id": "a1",
        "outcome": "answered",
        "queue_wait_seconds": 31,
        "ring_seconds": 5,
        "whisper_seconds": 6,
        "talk_seconds": 49,
        "hold_seconds": 20,
        "transfers": 1,
    }


def test_unbridged_call_is_abandoned_or_the_given_outcome() -> None:
    abandoned = call_metrics(CallTimeline(call_id="c", queue="q", enqueued_at=0, ended_at=42))
    assert (abandoned.outcome, abandoned.queue_wait_seconds, abandoned.talk_seconds) == (
        "abandoned",
        42,
        None,
    )
    overflow = call_metrics(
        CallTimeline(
            call_id="c", queue="q", enqueued_at=0, ended_at=60, outcome_override="overflow"
        )
    )
    assert overflow.outcome == "overflow"


def test_out_of_order_instants_are_rejected() -> None:
    with pytest.raises(ValueError, match="bridged_at"):
        call_metrics(
            CallTimeline(
                call_id="c", queue="q", enqueued_at=0, answered_at=10, bridged_at=5, ended_at=20
            )
        )


def test_queue_counters_average_handle_is_rolling() -> None:
    counters = QueueCounters(handle_samples=2)
    assert counters.average_handle is None and counters.average_wait is None
    for seconds in (100, 50, 70):
        counters.record_handle(seconds)
    assert counters.average_handle == 60
    counters.record_answered(10)
    counters.record_answered(20)
    assert counters.average_wait == 15
