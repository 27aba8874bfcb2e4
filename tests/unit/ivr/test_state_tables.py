"""The run-time state machines are tables with one writer: legal moves follow the table,
anything else raises (the agent machine in ivr.acd.agents is the model)."""

from __future__ import annotations

import pytest

from ivr.call import (
    CALL_TRANSITIONS,
    CallEvent,
    CallState,
    IllegalCallTransition,
    MediaLeg,
)
from ivr.monitoring import (
    MONITOR_TRANSITIONS,
    IllegalMonitorTransition,
    MonitorEvent,
    MonitorState,
)
from ivr.queueing import (
    SESSION_TRANSITIONS,
    IllegalSessionTransition,
    SessionEvent,
    SessionState,
)
from sipstack.transaction import Flow


class NoCore:
    """A leg's owner that must not be asked anything: these tests only move states."""

    def hangup(self, call: MediaLeg, reason: str) -> None:
        raise AssertionError("not expected")


def leg() -> MediaLeg:
    return MediaLeg(
        engine=NoCore(),  # type: ignore[arg-type]
        leg_id=1,
        call_id="c1",
        flow=Flow("UDP", ("127.0.0.1", 5060), None, None),
        started_at=0.0,
    )


def test_a_leg_is_answered_then_ended() -> None:
    a = leg()
    assert a.state is CallState.SETTING_UP
    assert a.move(CallEvent.ANSWERED) is CallState.ANSWERED
    assert a.move(CallEvent.ENDED) is CallState.ENDED


def test_a_leg_can_end_before_it_is_answered() -> None:
    a = leg()
    assert a.move(CallEvent.ENDED) is CallState.ENDED


@pytest.mark.parametrize(
    ("events", "state", "event"),
    [
        ((CallEvent.ANSWERED,), CallState.ANSWERED, CallEvent.ANSWERED),
        ((CallEvent.ENDED,), CallState.ENDED, CallEvent.ENDED),
        ((CallEvent.ENDED,), CallState.ENDED, CallEvent.ANSWERED),
    ],
)
def test_illegal_leg_moves_raise_and_change_nothing(
    events: tuple[CallEvent, ...], state: CallState, event: CallEvent
) -> None:
    a = leg()
    for e in events:
        a.move(e)
    with pytest.raises(IllegalCallTransition) as raised:
        a.move(event)
    assert (raised.value.state, raised.value.event) == (state, event)
    assert a.state is state


def test_ended_is_final() -> None:
    assert not [key for key in CALL_TRANSITIONS if key[0] is CallState.ENDED]


def test_the_monitor_table() -> None:
    assert MONITOR_TRANSITIONS == {
        (MonitorState.CALLING, MonitorEvent.ATTACHED): MonitorState.ACTIVE,
        (MonitorState.CALLING, MonitorEvent.CALL_FAILED): MonitorState.FAILED,
        (MonitorState.CALLING, MonitorEvent.STOPPED): MonitorState.STOPPED,
        (MonitorState.ACTIVE, MonitorEvent.ATTACHED): MonitorState.ACTIVE,
        (MonitorState.ACTIVE, MonitorEvent.STOPPED): MonitorState.STOPPED,
        (MonitorState.STOPPED, MonitorEvent.STOPPED): MonitorState.STOPPED,
    }
    assert [s for s in MonitorState if s.live] == [MonitorState.CALLING, MonitorState.ACTIVE]
    # Views and the admin API compare and print the plain names.
    assert MonitorState.ACTIVE == "active" and str(MonitorState.FAILED) == "failed"
    assert IllegalMonitorTransition(MonitorState.FAILED, MonitorEvent.ATTACHED).state is (
        MonitorState.FAILED
    )


def test_the_queue_session_table() -> None:
    assert SESSION_TRANSITIONS == {
        (SessionState.NOT_QUEUED, SessionEvent.ENQUEUED): SessionState.WAITING,
        (SessionState.WAITING, SessionEvent.AGENT_CONNECTED): SessionState.CONNECTED,
        (SessionState.CONNECTED, SessionEvent.TRANSFERRED_TO_QUEUE): SessionState.WAITING,
        (SessionState.WAITING, SessionEvent.LEFT): SessionState.NOT_QUEUED,
        (SessionState.CONNECTED, SessionEvent.LEFT): SessionState.NOT_QUEUED,
        (SessionState.NOT_QUEUED, SessionEvent.LEFT): SessionState.NOT_QUEUED,
    }
    # Every state can be left (a hang-up may come at any time), and only a waiting caller
    # can be connected to an agent.
    assert all((state, SessionEvent.LEFT) in SESSION_TRANSITIONS for state in SessionState)
    assert [k[0] for k in SESSION_TRANSITIONS if k[1] is SessionEvent.AGENT_CONNECTED] == [
        SessionState.WAITING
    ]
    assert IllegalSessionTransition(SessionState.WAITING, SessionEvent.ENQUEUED).event is (
        SessionEvent.ENQUEUED
    )
