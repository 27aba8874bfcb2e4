"""The transaction tables (RFC 3261 §17, RFC 6026) as data, and driven through the layer.

Two views of the same plans: the :data:`ON_ENTER` rows resolved to exact deadlines, and real
transactions brought to each (machine, state, transport) at an explicit ``now`` whose armed
timers must be exactly those deadlines. No sockets, no sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sipstack.errors import LocalProtocolError
from sipstack.message import Request, make_response
from sipstack.timers import TimerSettings
from sipstack.transaction import (
    INITIAL_STATE,
    ON_ENTER,
    TIMER_D_SECONDS,
    TIMER_INPUT,
    TRANSITIONS,
    Flow,
    Input,
    Machine,
    Reaction,
    RequestReceived,
    State,
    Timer,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
)

from .test_transaction import TCP, UDP, drain, request

DEFAULTS = TimerSettings()  # T1 = 0.5, T2 = 4, T4 = 5, 64*T1 = 32
ALL = frozenset(Timer)
NOW = 10.0

# ---------------------------------------------------------------------------------------------
# ON_ENTER as data: (machine, state, reliable) -> (cancelled, {timer: deadline from NOW})
# ---------------------------------------------------------------------------------------------

M, S = Machine, State
EXPECTED_ON_ENTER: dict[
    tuple[Machine, State, bool], tuple[frozenset[Timer], dict[Timer, float]]
] = {
    (M.ICT, S.CALLING, False): (frozenset(), {Timer.A: 10.5, Timer.B: 42.0}),
    (M.ICT, S.CALLING, True): (frozenset(), {Timer.B: 42.0}),
    (M.ICT, S.PROCEEDING, False): (frozenset({Timer.A, Timer.B}), {}),
    (M.ICT, S.PROCEEDING, True): (frozenset({Timer.A, Timer.B}), {}),
    (M.ICT, S.ACCEPTED, False): (frozenset({Timer.A, Timer.B}), {Timer.M: 42.0}),
    (M.ICT, S.ACCEPTED, True): (frozenset({Timer.A, Timer.B}), {Timer.M: 42.0}),
    (M.ICT, S.COMPLETED, False): (frozenset({Timer.A, Timer.B}), {Timer.D: 42.0}),
    (M.ICT, S.COMPLETED, True): (frozenset({Timer.A, Timer.B}), {Timer.D: 10.0}),
    (M.ICT, S.TERMINATED, False): (ALL, {}),
    (M.ICT, S.TERMINATED, True): (ALL, {}),
    (M.NICT, S.TRYING, False): (frozenset(), {Timer.E: 10.5, Timer.F: 42.0}),
    (M.NICT, S.TRYING, True): (frozenset(), {Timer.F: 42.0}),
    (M.NICT, S.PROCEEDING, False): (frozenset(), {}),
    (M.NICT, S.PROCEEDING, True): (frozenset(), {}),
    (M.NICT, S.COMPLETED, False): (frozenset({Timer.E, Timer.F}), {Timer.K: 15.0}),
    (M.NICT, S.COMPLETED, True): (frozenset({Timer.E, Timer.F}), {Timer.K: 10.0}),
    (M.NICT, S.TERMINATED, False): (ALL, {}),
    (M.NICT, S.TERMINATED, True): (ALL, {}),
    (M.IST, S.PROCEEDING, False): (frozenset(), {}),
    (M.IST, S.PROCEEDING, True): (frozenset(), {}),
    (M.IST, S.ACCEPTED, False): (frozenset(), {Timer.L: 42.0}),
    (M.IST, S.ACCEPTED, True): (frozenset(), {Timer.L: 42.0}),
    (M.IST, S.COMPLETED, False): (frozenset(), {Timer.G: 10.5, Timer.H: 42.0}),
    (M.IST, S.COMPLETED, True): (frozenset(), {Timer.H: 42.0}),
    (M.IST, S.CONFIRMED, False): (frozenset({Timer.G, Timer.H}), {Timer.I: 15.0}),
    (M.IST, S.CONFIRMED, True): (frozenset({Timer.G, Timer.H}), {Timer.I: 10.0}),
    (M.IST, S.TERMINATED, False): (ALL, {}),
    (M.IST, S.TERMINATED, True): (ALL, {}),
    (M.NIST, S.TRYING, False): (frozenset(), {}),
    (M.NIST, S.TRYING, True): (frozenset(), {}),
    (M.NIST, S.PROCEEDING, False): (frozenset(), {}),
    (M.NIST, S.PROCEEDING, True): (frozenset(), {}),
    (M.NIST, S.COMPLETED, False): (frozenset(), {Timer.J: 42.0}),
    (M.NIST, S.COMPLETED, True): (frozenset(), {Timer.J: 10.0}),
    (M.NIST, S.TERMINATED, False): (ALL, {}),
    (M.NIST, S.TERMINATED, True): (ALL, {}),
}


def _key_id(key: object) -> str:
    machine, state, reliable = key  # type: ignore[misc]
    return f"{machine}-{state.name}-{'reliable' if reliable else 'unreliable'}"


@pytest.mark.parametrize("key", list(EXPECTED_ON_ENTER), ids=_key_id)
def test_on_enter_plan_deadlines(key: tuple[Machine, State, bool]) -> None:
    cancelled, deadlines = EXPECTED_ON_ENTER[key]
    plan = ON_ENTER[key]
    assert plan.cancel == cancelled
    assert plan.deadlines(NOW, DEFAULTS) == deadlines


def test_on_enter_has_a_row_for_every_state_of_every_machine_and_transport() -> None:
    states = {(m, s) for m, s, _ in TRANSITIONS} | {
        (m, step.to) for (m, _, _), step in TRANSITIONS.items()
    }
    assert states == {(m, s) for m, s, _ in EXPECTED_ON_ENTER}
    assert set(ON_ENTER) == set(EXPECTED_ON_ENTER)


def test_plans_follow_timer_settings_and_timer_d_is_a_fixed_floor() -> None:
    """Every delay is computed from the TimerSettings in use, except Timer D: "at least 32
    seconds for unreliable transports" whatever T1 is (§17.1.1.2)."""
    fast = TimerSettings(t1_seconds=0.25, t2_seconds=2.0, t4_seconds=2.5)
    assert ON_ENTER[(M.ICT, S.CALLING, False)].deadlines(0.0, fast) == {
        Timer.A: 0.25,
        Timer.B: 16.0,
    }
    assert ON_ENTER[(M.NICT, S.COMPLETED, False)].deadlines(0.0, fast) == {Timer.K: 2.5}
    assert ON_ENTER[(M.ICT, S.COMPLETED, False)].deadlines(0.0, fast) == {Timer.D: TIMER_D_SECONDS}
    assert TIMER_D_SECONDS == 32.0


# ---------------------------------------------------------------------------------------------
# The row plans: retransmission back-off and the CANCEL re-arming Timer B
# ---------------------------------------------------------------------------------------------

# (machine, state, input) -> {timer: deadline} at NOW when the current interval is 1.0 s.
EXPECTED_ROW_PLANS: dict[tuple[Machine, State, Input], dict[Timer, float]] = {
    (M.ICT, S.CALLING, Input.RETRANSMIT): {Timer.A: 12.0},  # 2 * interval, no cap
    (M.NICT, S.TRYING, Input.RETRANSMIT): {Timer.E: 12.0},  # min(2 * interval, T2)
    (M.NICT, S.PROCEEDING, Input.RETRANSMIT): {Timer.E: 14.0},  # T2
    (M.IST, S.COMPLETED, Input.RETRANSMIT): {Timer.G: 12.0},  # min(2 * interval, T2)
    (M.ICT, S.CALLING, Input.CANCEL_SENT): {Timer.B: 42.0},  # §9.1: 64*T1 after the CANCEL
    (M.ICT, S.PROCEEDING, Input.CANCEL_SENT): {Timer.B: 42.0},
}


def test_row_plans() -> None:
    plans = {key: step.timers for key, step in TRANSITIONS.items() if step.timers.arm}
    assert set(plans) == set(EXPECTED_ROW_PLANS)
    for key, expected in EXPECTED_ROW_PLANS.items():
        assert plans[key].deadlines(NOW, DEFAULTS, interval=1.0) == expected, key
        assert not plans[key].cancel
    # The back-off caps at T2 (except Timer A, §17.1.1.2).
    assert TRANSITIONS[(M.NICT, S.TRYING, Input.RETRANSMIT)].timers.deadlines(
        NOW, DEFAULTS, interval=3.0
    ) == {Timer.E: 14.0}
    assert TRANSITIONS[(M.ICT, S.CALLING, Input.RETRANSMIT)].timers.deadlines(
        NOW, DEFAULTS, interval=3.0
    ) == {Timer.A: 16.0}


def test_timer_inputs() -> None:
    assert dict(TIMER_INPUT) == {
        Timer.A: Input.RETRANSMIT,
        Timer.E: Input.RETRANSMIT,
        Timer.G: Input.RETRANSMIT,
        Timer.B: Input.TIMEOUT,
        Timer.F: Input.TIMEOUT,
        Timer.H: Input.TIMEOUT,
        Timer.D: Input.DONE,
        Timer.I: Input.DONE,
        Timer.J: Input.DONE,
        Timer.K: Input.DONE,
        Timer.L: Input.DONE,
        Timer.M: Input.DONE,
    }


def test_absorbed_inputs_are_rows() -> None:
    """Retransmissions (and a CANCEL after the final response) are absorbed by explicit
    rows: nothing is sent and nothing reported."""
    absorbed = {key for key, step in TRANSITIONS.items() if step.reaction is Reaction.ABSORB}
    assert absorbed == {
        (M.ICT, S.CALLING, Input.CANCEL_SENT),  # only re-arms Timer B
        (M.ICT, S.PROCEEDING, Input.CANCEL_SENT),  # only re-arms Timer B
        (M.ICT, S.ACCEPTED, Input.PROVISIONAL),
        (M.ICT, S.ACCEPTED, Input.FAILURE),
        (M.ICT, S.ACCEPTED, Input.CANCEL_SENT),
        (M.ICT, S.COMPLETED, Input.PROVISIONAL),
        (M.ICT, S.COMPLETED, Input.SUCCESS),
        (M.ICT, S.COMPLETED, Input.CANCEL_SENT),
        (M.NICT, S.COMPLETED, Input.PROVISIONAL),
        (M.NICT, S.COMPLETED, Input.SUCCESS),
        (M.NICT, S.COMPLETED, Input.FAILURE),
        (M.IST, S.PROCEEDING, Input.ACK),
        (M.IST, S.ACCEPTED, Input.REQUEST),
        (M.IST, S.COMPLETED, Input.ACK),  # -> Confirmed; the ACK is the transaction's own
        (M.IST, S.CONFIRMED, Input.ACK),
        (M.IST, S.CONFIRMED, Input.REQUEST),
        (M.NIST, S.TRYING, Input.REQUEST),
    }
    resent = {key for key, step in TRANSITIONS.items() if step.reaction is Reaction.RESEND}
    assert resent == {
        (M.ICT, S.CALLING, Input.RETRANSMIT),
        (M.ICT, S.COMPLETED, Input.FAILURE),  # the ACK again
        (M.NICT, S.TRYING, Input.RETRANSMIT),
        (M.NICT, S.PROCEEDING, Input.RETRANSMIT),
        (M.IST, S.PROCEEDING, Input.REQUEST),
        (M.IST, S.COMPLETED, Input.REQUEST),
        (M.IST, S.COMPLETED, Input.RETRANSMIT),
        (M.NIST, S.PROCEEDING, Input.REQUEST),
        (M.NIST, S.COMPLETED, Input.REQUEST),
    }


def test_table_invariants_the_layer_relies_on() -> None:
    responses = {Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE}
    for (machine, state, event), step in TRANSITIONS.items():
        # send_response sends exactly when the row says SEND: every row for a TU response.
        if machine.server and event in responses:
            assert step.reaction is Reaction.SEND
        else:
            assert step.reaction is not Reaction.SEND
        # Only a timer ends a transaction (the layer destroys it in _on_timer).
        if step.to is S.TERMINATED:
            assert event in (Input.TIMEOUT, Input.DONE)
        # Row plans are for self-loops: a move to another state runs that state's ON_ENTER.
        if step.timers.arm or step.timers.cancel:
            assert step.to is state
    assert set(INITIAL_STATE) == set(Machine)


@pytest.mark.parametrize("reliable", [False, True], ids=["unreliable", "reliable"])
@pytest.mark.parametrize("machine", list(Machine), ids=str)
def test_every_timer_that_can_be_armed_has_a_row_where_it_can_fire(
    machine: Machine, reliable: bool
) -> None:
    """Walk every path of the tables and collect, per state, the timers that may be armed
    there; each must have a row for its input in that state (or handle_timer would raise)."""

    def armed_by(plan_key: tuple[Machine, State, bool]) -> set[Timer]:
        return set(ON_ENTER[plan_key].deadlines(0.0, DEFAULTS))

    start = INITIAL_STATE[machine]
    live: dict[State, set[Timer]] = {start: armed_by((machine, start, reliable))}
    changed = True
    while changed:
        changed = False
        for (m, state, _), step in TRANSITIONS.items():
            if m is not machine or state not in live:
                continue
            timers = set(live[state])
            if step.to is not state:
                timers = (timers - ON_ENTER[(machine, step.to, reliable)].cancel) | armed_by(
                    (machine, step.to, reliable)
                )
            timers = (timers - step.timers.cancel) | set(step.timers.deadlines(0.0, DEFAULTS))
            if not timers <= live.setdefault(step.to, set()):
                live[step.to] |= timers
                changed = True
    assert live[S.TERMINATED] == set()
    for state, timers in live.items():
        for timer in timers:
            assert (machine, state, TIMER_INPUT[timer]) in TRANSITIONS, (state, timer)


# ---------------------------------------------------------------------------------------------
# The same plans, driven: real transactions at explicit times, their armed timers exactly
# ---------------------------------------------------------------------------------------------

Drive = Callable[[TransactionLayer, Flow], int]


def _client(method: str, *steps: tuple[float, int | str]) -> Drive:
    """Send ``method`` at 0.0, then at each (time, status) receive that response, at each
    (time, "timer") fire the timers due, at each (time, "cancel") report a CANCEL sent."""

    def drive(layer: TransactionLayer, flow: Flow) -> int:
        req = request(method)
        tid = layer.send_request(req, flow, 0.0)
        for at, what in steps:
            if what == "timer":
                layer.handle_timer(at)
            elif what == "cancel":
                layer.cancel_sent(tid, at)
            else:
                assert isinstance(what, int)
                layer.receive_response(make_response(req, what, to_tag="t"), flow, at)
        return tid

    return drive


def _server(method: str, *steps: tuple[float, int | str]) -> Drive:
    """Receive ``method`` at 0.0, then at each (time, status) answer it, at each
    (time, "ACK") receive the ACK, at each (time, "timer") fire the timers due."""

    def drive(layer: TransactionLayer, flow: Flow) -> int:
        req = request(method)
        layer.receive_request(req, flow, 0.0)
        [event] = drain(layer)
        assert isinstance(event, RequestReceived)
        tid = event.transaction_id
        for at, what in steps:
            if what == "timer":
                layer.handle_timer(at)
            elif what == "ACK":
                layer.receive_request(request("ACK", to_tag="t", cseq_method="ACK"), flow, at)
            else:
                assert isinstance(what, int)
                layer.send_response(tid, make_response(req, what, to_tag="t"), at)
        return tid

    return drive


@dataclass(frozen=True)
class Scenario:
    name: str
    drive: Drive
    state: State
    udp: dict[Timer, float]
    tcp: dict[Timer, float] | None  # None: the scenario needs a retransmission timer


SCENARIOS = [
    Scenario(
        "ict-calling", _client("INVITE"), S.CALLING, {Timer.A: 0.5, Timer.B: 32.0}, {Timer.B: 32.0}
    ),
    Scenario(
        "ict-calling-a-fired",
        _client("INVITE", (0.5, "timer")),
        S.CALLING,
        {Timer.A: 1.5, Timer.B: 32.0},
        None,
    ),
    Scenario(
        "ict-calling-a-fired-twice",
        _client("INVITE", (0.5, "timer"), (1.5, "timer")),
        S.CALLING,
        {Timer.A: 3.5, Timer.B: 32.0},
        None,
    ),
    Scenario(
        "ict-calling-cancelled",
        _client("INVITE", (3.0, "cancel")),
        S.CALLING,
        {Timer.A: 0.5, Timer.B: 35.0},
        {Timer.B: 35.0},
    ),
    Scenario("ict-proceeding", _client("INVITE", (0.2, 180)), S.PROCEEDING, {}, {}),
    Scenario(
        "ict-proceeding-cancelled",
        _client("INVITE", (0.2, 180), (3.0, "cancel")),
        S.PROCEEDING,
        {Timer.B: 35.0},
        {Timer.B: 35.0},
    ),
    Scenario(
        "ict-accepted", _client("INVITE", (1.0, 200)), S.ACCEPTED, {Timer.M: 33.0}, {Timer.M: 33.0}
    ),
    Scenario(
        "ict-accepted-2xx-again",
        _client("INVITE", (1.0, 200), (2.0, 200)),
        S.ACCEPTED,
        {Timer.M: 33.0},
        {Timer.M: 33.0},
    ),
    Scenario(
        "ict-accepted-late-cancel",
        _client("INVITE", (1.0, 200), (2.0, "cancel")),
        S.ACCEPTED,
        {Timer.M: 33.0},
        {Timer.M: 33.0},
    ),
    Scenario(
        "ict-completed",
        _client("INVITE", (0.2, 180), (1.0, 486)),
        S.COMPLETED,
        {Timer.D: 33.0},
        {Timer.D: 1.0},
    ),
    Scenario(
        "ict-completed-486-again",
        _client("INVITE", (1.0, 486), (2.0, 486)),
        S.COMPLETED,
        {Timer.D: 33.0},
        {Timer.D: 1.0},
    ),
    Scenario(
        "nict-trying", _client("BYE"), S.TRYING, {Timer.E: 0.5, Timer.F: 32.0}, {Timer.F: 32.0}
    ),
    Scenario(
        "nict-trying-e-fired",
        _client("BYE", (0.5, "timer")),
        S.TRYING,
        {Timer.E: 1.5, Timer.F: 32.0},
        None,
    ),
    Scenario(
        "nict-proceeding",
        _client("BYE", (0.2, 100), (0.4, 100)),
        S.PROCEEDING,
        {Timer.E: 0.5, Timer.F: 32.0},
        {Timer.F: 32.0},
    ),
    Scenario(
        "nict-proceeding-e-fired",
        _client("BYE", (0.2, 100), (0.5, "timer")),
        S.PROCEEDING,
        {Timer.E: 4.5, Timer.F: 32.0},
        None,
    ),
    Scenario(
        "nict-completed",
        _client("BYE", (0.2, 100), (1.0, 200)),
        S.COMPLETED,
        {Timer.K: 6.0},
        {Timer.K: 1.0},
    ),
    Scenario("ist-proceeding", _server("INVITE", (0.0, 100), (0.5, 180)), S.PROCEEDING, {}, {}),
    Scenario(
        "ist-accepted",
        _server("INVITE", (0.0, 100), (1.0, 200), (2.0, 200)),
        S.ACCEPTED,
        {Timer.L: 33.0},
        {Timer.L: 33.0},
    ),
    Scenario(
        "ist-completed",
        _server("INVITE", (0.0, 100), (1.0, 486)),
        S.COMPLETED,
        {Timer.G: 1.5, Timer.H: 33.0},
        {Timer.H: 33.0},
    ),
    Scenario(
        "ist-completed-g-fired",
        _server("INVITE", (1.0, 486), (1.5, "timer")),
        S.COMPLETED,
        {Timer.G: 2.5, Timer.H: 33.0},
        None,
    ),
    Scenario(
        "ist-confirmed",
        _server("INVITE", (1.0, 486), (2.0, "ACK"), (2.5, "ACK")),
        S.CONFIRMED,
        {Timer.I: 7.0},
        {Timer.I: 2.0},
    ),
    Scenario("nist-trying", _server("OPTIONS"), S.TRYING, {}, {}),
    Scenario("nist-proceeding", _server("REGISTER", (0.5, 100)), S.PROCEEDING, {}, {}),
    Scenario(
        "nist-completed",
        _server("OPTIONS", (0.5, 100), (1.0, 200)),
        S.COMPLETED,
        {Timer.J: 33.0},
        {Timer.J: 1.0},
    ),
]

CASES = [(s, "UDP") for s in SCENARIOS] + [(s, "TCP") for s in SCENARIOS if s.tcp is not None]
#: the cases with a timer running: the others wait for the TU or the peer (no time-out in an
#: INVITE server's Proceeding, or a non-INVITE server's Trying, is RFC 3261's design).
TIMED = [(s, t) for s, t in CASES if (s.udp if t == "UDP" else s.tcp)]


@pytest.mark.parametrize(
    ("scenario", "transport"), CASES, ids=lambda v: v if isinstance(v, str) else v.name
)
def test_armed_timers_per_machine_state_and_transport(scenario: Scenario, transport: str) -> None:
    layer = TransactionLayer()
    tid = scenario.drive(layer, UDP if transport == "UDP" else TCP)
    txn = layer.get(tid)
    assert txn is not None and txn.state is scenario.state
    expected = scenario.udp if transport == "UDP" else scenario.tcp
    assert layer.armed_timers(tid) == expected


@pytest.mark.parametrize(
    ("scenario", "transport"), TIMED, ids=lambda v: v if isinstance(v, str) else v.name
)
def test_every_state_ends_with_its_timers_and_nothing_armed(
    scenario: Scenario, transport: str
) -> None:
    """From each state with a timer running, letting the timers run ends the transaction: a
    time-out for B, F or H, a normal end for the linger timers; nothing of it stays armed."""
    layer = TransactionLayer()
    tid = scenario.drive(layer, UDP if transport == "UDP" else TCP)
    drain(layer)
    while (deadline := layer.get_timer()) is not None:
        layer.handle_timer(deadline)
    assert layer.get(tid) is None and len(layer) == 0 and layer.armed_timers(tid) == {}
    [end] = [e for e in drain(layer) if isinstance(e, TransactionTimedOut | TransactionTerminated)]
    assert end.transaction_id == tid
    armed = scenario.udp if transport == "UDP" else scenario.tcp
    timeout = {Timer.B, Timer.F, Timer.H} & set(armed or {})
    assert isinstance(end, TransactionTimedOut) == bool(timeout)
    if isinstance(end, TransactionTimedOut):
        assert end.reason == f"Timer {timeout.pop()}"


def test_illegal_input_raises_and_changes_nothing() -> None:
    """RFC 6026 §7.1: after a 2xx only more 2xx may pass; a 180 now is the TU's bug."""
    layer = TransactionLayer()
    tid = _server("INVITE", (1.0, 200))(layer, UDP)
    layer.datagrams_to_send()
    req: Request = request("INVITE")
    with pytest.raises(LocalProtocolError, match="ist: no transition from Accepted on 1xx"):
        layer.send_response(tid, make_response(req, 180, to_tag="t"), 2.0)
    txn = layer.get(tid)
    assert txn is not None and txn.state is S.ACCEPTED
    assert layer.datagrams_to_send() == [] and layer.armed_timers(tid) == {Timer.L: 33.0}


def test_only_advance_writes_a_transaction_state() -> None:
    """``Transaction.advance`` is the one writer of ``state`` in the transaction layer."""
    import ast
    import inspect

    import sipstack.transaction

    tree = ast.parse(inspect.getsource(sipstack.transaction))
    writers = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute) and target.attr == "state"
    ]
    assert writers == ["advance"]
