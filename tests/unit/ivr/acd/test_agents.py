from __future__ import annotations

import pytest

from ivr.acd import TRANSITIONS, Agent, AgentCommand, AgentEvent, AgentState, IllegalTransition

S, E = AgentState, AgentEvent

# Events that bring an agent from LOGGED_OUT to each state, to reach any row of the table
# through the public API only.
_PATHS: dict[AgentState, list[AgentEvent]] = {
    S.LOGGED_OUT: [],
    S.AVAILABLE: [E.LOG_IN],
    S.NOT_READY: [E.LOG_IN_NOT_READY],
    S.OFFERED: [E.LOG_IN, E.OFFER],
    S.ON_CALL: [E.LOG_IN, E.OFFER, E.ACCEPT],
    S.WRAP_UP: [E.LOG_IN, E.OFFER, E.ACCEPT, E.CALL_END],
}


def _agent_in(state: AgentState) -> Agent:
    agent = Agent("a1")
    for step, event in enumerate(_PATHS[state]):
        agent.apply(event, float(step))
    assert agent.state is state
    return agent


@pytest.mark.parametrize(("state", "event"), list(TRANSITIONS), ids=lambda v: v.name)
def test_every_legal_transition(state: AgentState, event: AgentEvent) -> None:
    agent = _agent_in(state)
    transition = agent.apply(event, 100.0)
    assert transition.old is state
    assert transition.new is TRANSITIONS[(state, event)]
    assert agent.state is transition.new
    assert agent.state_since == 100.0


ILLEGAL = [
    (S.LOGGED_OUT, E.READY),
    (S.LOGGED_OUT, E.OFFER),
    (S.LOGGED_OUT, E.LOG_OUT),
    (S.AVAILABLE, E.LOG_IN),
    (S.AVAILABLE, E.ACCEPT),
    (S.AVAILABLE, E.CALL_END),
    (S.OFFERED, E.OFFER),
    (S.OFFERED, E.CALL_END),
    (S.ON_CALL, E.LOG_OUT),
    (S.ON_CALL, E.NOT_READY),
    (S.ON_CALL, E.OFFER),
    (S.WRAP_UP, E.OFFER),
    (S.NOT_READY, E.OFFER),
    (S.NOT_READY, E.WRAP_UP_END),
]


@pytest.mark.parametrize(("state", "event"), ILLEGAL, ids=lambda v: v.name)
def test_illegal_transitions_raise(state: AgentState, event: AgentEvent) -> None:
    assert (state, event) not in TRANSITIONS
    agent = _agent_in(state)
    with pytest.raises(IllegalTransition) as info:
        agent.apply(event, 5.0)
    assert info.value.state is state
    assert agent.state is state  # unchanged


def test_commands_map_to_the_same_events_as_the_api() -> None:
    agent = Agent("a1")
    assert agent.command(AgentCommand.LOG_IN, 0).new is S.AVAILABLE
    assert agent.command(AgentCommand.NOT_READY, 1).new is S.NOT_READY
    assert agent.command(AgentCommand.READY, 2).new is S.AVAILABLE
    assert agent.command(AgentCommand.LOG_OUT, 3).new is S.LOGGED_OUT


def test_missed_offers_in_a_row_make_the_agent_not_ready() -> None:
    agent = Agent("a1", max_missed=3)
    agent.apply(E.LOG_IN, 0)
    for now in (1, 2):
        agent.apply(E.OFFER, now)
        assert agent.miss(now + 0.5).event is E.MISS
    assert agent.missed_in_a_row == 2
    agent.apply(E.OFFER, 3)
    transition = agent.miss(3.5)
    assert (transition.event, transition.new) == (E.MISS_LIMIT, S.NOT_READY)
    assert agent.missed_in_a_row == 0


def test_an_accepted_offer_resets_the_missed_run() -> None:
    agent = Agent("a1", max_missed=2)
    agent.apply(E.LOG_IN, 0)
    agent.apply(E.OFFER, 1)
    agent.miss(2)
    agent.apply(E.OFFER, 3)
    agent.apply(E.ACCEPT, 4)
    assert agent.missed_in_a_row == 0


def test_limit_zero_never_goes_not_ready() -> None:
    agent = Agent("a1", max_missed=0)
    agent.apply(E.LOG_IN, 0)
    for now in range(1, 20):
        agent.apply(E.OFFER, now)
        assert agent.miss(now).new is S.AVAILABLE


def test_idle_since_survives_missed_and_withdrawn_offers_and_resets_after_a_call() -> None:
    agent = Agent("a1")
    agent.apply(E.LOG_IN, 10)
    agent.apply(E.OFFER, 20)
    agent.miss(35)
    agent.apply(E.OFFER, 40)
    agent.apply(E.WITHDRAW, 41)
    assert agent.idle_since == 10
    agent.apply(E.OFFER, 50)
    agent.apply(E.ACCEPT, 52)
    assert agent.idle_since is None
    agent.apply(E.CALL_END, 90)
    agent.apply(E.WRAP_UP_END, 100)
    assert agent.idle_since == 100


def test_registration_is_not_a_state() -> None:
    agent = Agent("a1")
    agent.apply(E.LOG_IN, 0)
    assert not agent.offerable  # no contact yet
    assert agent.set_contacts(2)
    assert agent.offerable
    assert not agent.set_contacts(1)  # still registered: nothing changed
    assert agent.set_contacts(0)
    assert agent.state is S.AVAILABLE and not agent.offerable
