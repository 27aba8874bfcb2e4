"""Leg states (sipstack.ua): one table keyed by (state, cause), moved only by ``Leg.move``.

The table is checked row by row, every other (state, cause) must raise, and two UAs back to
back (the :class:`Pair` harness, explicit ``now``) walk their legs through it.
"""

from __future__ import annotations

import itertools

import pytest

from sipstack.errors import LocalProtocolError
from sipstack.transaction import Flow
from sipstack.ua import LEG_TRANSITIONS, Leg, LegCause, LegState

from .test_transaction import request
from .test_ua_pair import Pair, drop

L, C = LegState, LegCause
LIVE = [s for s in L if s is not L.TERMINATED]

EXPECTED: dict[tuple[LegState, LegCause], LegState] = {
    (L.INCOMING, C.SENT_1XX): L.EARLY,
    (L.EARLY, C.SENT_1XX): L.EARLY,
    (L.INCOMING, C.SENT_2XX): L.ANSWERED,
    (L.EARLY, C.SENT_2XX): L.ANSWERED,
    (L.INCOMING, C.SENT_FAILURE): L.TERMINATED,
    (L.EARLY, C.SENT_FAILURE): L.TERMINATED,
    (L.INCOMING, C.GOT_CANCEL): L.TERMINATED,
    (L.EARLY, C.GOT_CANCEL): L.TERMINATED,
    (L.ANSWERED, C.GOT_ACK): L.CONFIRMED,
    (L.ANSWERED, C.NO_ACK): L.CONFIRMED,
    (L.CALLING, C.GOT_1XX): L.EARLY,
    (L.EARLY, C.GOT_1XX): L.EARLY,
    (L.CALLING, C.GOT_2XX): L.CONFIRMED,
    (L.EARLY, C.GOT_2XX): L.CONFIRMED,
    (L.CALLING, C.GOT_FAILURE): L.TERMINATED,
    (L.EARLY, C.GOT_FAILURE): L.TERMINATED,
    (L.CALLING, C.TIMED_OUT): L.TERMINATED,
    (L.EARLY, C.TIMED_OUT): L.TERMINATED,
    (L.CONFIRMED, C.SENT_BYE): L.TERMINATING,
    (L.ANSWERED, C.GOT_BYE): L.TERMINATED,
    (L.CONFIRMED, C.GOT_BYE): L.TERMINATED,
    (L.TERMINATING, C.GOT_BYE): L.TERMINATED,
    (L.TERMINATING, C.BYE_ANSWERED): L.TERMINATED,
    (L.TERMINATING, C.BYE_TIMED_OUT): L.TERMINATED,
    **{(s, C.ABORTED): L.TERMINATED for s in LIVE},
}


def leg_in(state: LegState) -> Leg:
    flow = Flow("UDP", ("192.0.2.9", 5060), None, ("192.0.2.2", 5060))
    return Leg(1, True, request("INVITE"), flow, state, "tag")


def _id(value: object) -> str:
    return "-".join(v.name for v in value) if isinstance(value, tuple) else str(value)


def test_leg_table_is_exactly_the_expected_rows() -> None:
    assert dict(LEG_TRANSITIONS) == EXPECTED
    assert not [key for key in LEG_TRANSITIONS if key[0] is L.TERMINATED]


@pytest.mark.parametrize("key", list(EXPECTED), ids=_id)
def test_each_row_moves_the_leg(key: tuple[LegState, LegCause]) -> None:
    state, cause = key
    leg = leg_in(state)
    assert leg.move(cause) is EXPECTED[key]
    assert leg.state is EXPECTED[key]


ILLEGAL = [k for k in itertools.product(LegState, LegCause) if k not in EXPECTED]


@pytest.mark.parametrize("key", ILLEGAL, ids=_id)
def test_illegal_move_raises_and_leaves_the_state(key: tuple[LegState, LegCause]) -> None:
    state, cause = key
    leg = leg_in(state)
    with pytest.raises(LocalProtocolError, match=f"no move from {state.value} on"):
        leg.move(cause)
    assert leg.state is state


def test_illegal_move_on_a_live_leg_of_the_ua_raises() -> None:
    """An ACK cause for a leg that never sent a 2xx is the caller's bug, not the peer's."""
    p = Pair()
    p.call()
    leg = p.b.leg(p.incoming().leg_id)
    assert leg is not None and leg.state is L.INCOMING
    with pytest.raises(LocalProtocolError):
        leg.move(C.GOT_ACK)
    assert leg.state is L.INCOMING


def states(p: Pair, side: str, leg_id: int) -> LegState | None:
    leg = p.uas[side].leg(leg_id)
    return None if leg is None else leg.state


def test_a_call_walks_both_legs_through_the_table() -> None:
    p = Pair()
    leg_a = p.a.invite(
        request_uri="sip:ivr@192.0.2.2",
        from_uri="<sip:alice@192.0.2.1>",
        to_uri="<sip:ivr@192.0.2.2>",
        flow=p.flow_to("a", "b"),
        now=p.now,
    )
    assert states(p, "a", leg_a) is L.CALLING
    p.pump()
    leg_b = p.incoming().leg_id
    # The UAS sent 100 Trying at once: a provisional, so the caller is already EARLY.
    assert (states(p, "a", leg_a), states(p, "b", leg_b)) == (L.EARLY, L.INCOMING)
    p.b.ring(leg_b, p.now)
    p.pump()
    assert (states(p, "a", leg_a), states(p, "b", leg_b)) == (L.EARLY, L.EARLY)
    p.b.answer(leg_b, b"v=0\r\n", p.now)
    assert states(p, "b", leg_b) is L.ANSWERED
    p.pump()
    assert (states(p, "a", leg_a), states(p, "b", leg_b)) == (L.CONFIRMED, L.CONFIRMED)
    p.a.hangup(leg_a, p.now)
    assert states(p, "a", leg_a) is L.TERMINATING
    p.pump()
    # Ended legs are dropped by the UA once TERMINATED.
    assert (states(p, "a", leg_a), states(p, "b", leg_b)) == (None, None)


def test_no_ack_confirms_then_byes() -> None:
    """§13.3.1.4: no ACK for 64*T1 -> "the dialog is confirmed, but the session SHOULD be
    terminated", with a BYE: ANSWERED -> CONFIRMED -> TERMINATING."""
    p = Pair(loss=drop("a", "ACK"))
    p.call()
    leg_b = p.incoming().leg_id
    p.b.answer(leg_b, b"v=0\r\n", p.now)
    p.advance(31.9)
    assert states(p, "b", leg_b) is L.ANSWERED
    p.b.handle_timer(32.0)
    assert states(p, "b", leg_b) is L.TERMINATING


def test_only_move_writes_a_leg_state() -> None:
    """``Leg.move`` is the one writer of ``state`` in the UA core (``_end_leg`` included)."""
    import ast
    import inspect

    import sipstack.ua

    tree = ast.parse(inspect.getsource(sipstack.ua))
    writers = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign)
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Attribute) and target.attr == "state"
    ]
    assert writers == ["move"]
