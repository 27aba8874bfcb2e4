"""Two sans-IO user agents back to back (UAC ``a``, UAS ``b``) on a fake clock.

The :class:`Pair` harness moves :class:`~sipstack.transaction.Outgoing` datagrams between the
cores, drops the ones a loss function picks, records ``(time, sender, first line)`` for every
datagram sent, and advances time only to the deadlines ``get_timer()`` reports, so timer
schedules (RFC 3261 §17 Table 4, RFC 6026) are asserted exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sipstack.message import Request, Response, parse_message
from sipstack.timers import TimerSettings
from sipstack.transaction import Flow
from sipstack.ua import (
    CallEstablished,
    CallFailed,
    CallTerminated,
    EndedBy,
    Event,
    InDialogResponseReceived,
    InviteCancelled,
    InviteReceived,
    ProgressReceived,
    ReinviteReceived,
    RequestReceived,
    UserAgent,
)

A_ADDR = ("192.0.2.1", 5060)
B_ADDR = ("192.0.2.2", 5060)
SDP = (
    b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 0\r\n"
)
HOLD_SDP = SDP + b"a=sendonly\r\n"

Loss = Callable[[str, bytes, float], bool]


@dataclass(frozen=True)
class Sent:
    time: float
    sender: str
    first_line: str
    lost: bool


class Pair:
    """UAC ``a`` at A_ADDR and UAS ``b`` at B_ADDR, wired back to back."""

    def __init__(
        self,
        *,
        transport: str = "UDP",
        timers: TimerSettings | None = None,
        loss: Loss | None = None,
    ) -> None:
        self.now = 0.0
        self.transport = transport
        self.uas = {
            "a": UserAgent(rng=random.Random(1), timers=timers),
            "b": UserAgent(rng=random.Random(2), timers=timers),
        }
        self.addr = {"a": A_ADDR, "b": B_ADDR}
        self.loss: Loss = loss or (lambda sender, data, now: False)
        self.log: list[Sent] = []
        self.events: dict[str, list[tuple[float, Event]]] = {"a": [], "b": []}
        self.datagrams: dict[str, list[bytes]] = {"a": [], "b": []}  # received, per side

    @property
    def a(self) -> UserAgent:
        return self.uas["a"]

    @property
    def b(self) -> UserAgent:
        return self.uas["b"]

    def flow_to(self, sender: str, receiver: str) -> Flow:
        """The flow on which ``sender`` reaches ``receiver``."""
        connection = 1 if self.transport != "UDP" else None
        return Flow(self.transport, self.addr[receiver], connection, self.addr[sender])

    def arrival(self, sender: str) -> Flow:
        """The flow a datagram from ``sender`` arrives on at the other side."""
        receiver = "b" if sender == "a" else "a"
        return self.flow_to(receiver, sender)

    def _collect(self) -> None:
        for name, ua in self.uas.items():
            while (event := ua.next_event()) is not None:
                self.events[name].append((self.now, event))

    def pump(self) -> None:
        """Deliver everything queued, repeatedly, until both cores are quiet."""
        self._collect()
        while True:
            moved = False
            for sender, ua in self.uas.items():
                for out in ua.datagrams_to_send():
                    moved = True
                    receiver = "b" if out.flow.remote == B_ADDR else "a"
                    assert out.flow.remote == self.addr[receiver], out.flow
                    assert receiver != sender, f"{sender} sent to itself: {out.data[:60]!r}"
                    lost = self.loss(sender, out.data, self.now)
                    first = out.data.split(b"\r\n", 1)[0].decode()
                    self.log.append(Sent(self.now, sender, first, lost))
                    if not lost:
                        self.datagrams[receiver].append(out.data)
                        self.uas[receiver].receive_datagram(
                            out.data, self.arrival(sender), self.now
                        )
            self._collect()
            if not moved:
                return

    def next_timer(self) -> float | None:
        deadlines = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        return min(deadlines) if deadlines else None

    def advance(self, until: float) -> None:
        """Fire every timer due up to ``until`` at its exact deadline, then set now=until."""
        self.pump()
        while (deadline := self.next_timer()) is not None and deadline <= until:
            self.now = max(self.now, deadline)
            for ua in self.uas.values():
                timer = ua.get_timer()
                if timer is not None and timer <= self.now:
                    ua.handle_timer(self.now)
            self.pump()
        self.now = max(self.now, until)

    # ---- queries ----------------------------------------------------------------------------

    def sent(self, sender: str, prefix: str) -> list[float]:
        return [s.time for s in self.log if s.sender == sender and s.first_line.startswith(prefix)]

    def of(self, side: str, kind: type) -> list:
        return [e for _, e in self.events[side] if isinstance(e, kind)]

    def at(self, side: str, kind: type) -> list[float]:
        return [t for t, e in self.events[side] if isinstance(e, kind)]

    # ---- scenario helpers -------------------------------------------------------------------

    def call(self, **invite_kwargs: object) -> int:
        leg = self.a.invite(
            request_uri="sip:ivr@192.0.2.2",
            from_uri="<sip:alice@192.0.2.1>",
            to_uri="<sip:ivr@192.0.2.2>",
            flow=self.flow_to("a", "b"),
            now=self.now,
            body=SDP,
            **invite_kwargs,
        )  # type: ignore[arg-type]
        self.pump()
        return leg

    def incoming(self) -> InviteReceived:
        invites = self.of("b", InviteReceived)
        assert invites, "b got no InviteReceived"
        return invites[-1]

    def establish(self) -> tuple[int, int]:
        leg_a = self.call()
        leg_b = self.incoming().leg_id
        self.b.ring(leg_b, self.now)
        self.b.answer(leg_b, SDP, self.now)
        self.pump()
        assert self.of("a", CallEstablished) and self.of("b", CallEstablished)
        return leg_a, leg_b


def first_line_is(prefix: str) -> Callable[[bytes], bool]:
    return lambda data: data.startswith(prefix.encode())


def drop(sender: str, prefix: str, count: int | None = None) -> Loss:
    """Drop the first ``count`` (or all) datagrams from ``sender`` starting with ``prefix``."""
    state = {"n": 0}

    def loss(who: str, data: bytes, now: float) -> bool:
        if who == sender and data.startswith(prefix.encode()):
            state["n"] += 1
            return count is None or state["n"] <= count
        return False

    return loss


def parsed(data: bytes) -> Request | Response:
    return parse_message(data)


# ---------------------------------------------------------------------------------------------
# Basic call flows
# ---------------------------------------------------------------------------------------------


def test_basic_call_and_bye_from_caller() -> None:
    p = Pair()
    leg_a, _leg_b = p.establish()
    assert [s.first_line.split(" ")[0] for s in p.log] == [
        "INVITE",
        "SIP/2.0",
        "SIP/2.0",
        "SIP/2.0",
        "ACK",
    ]
    assert [s.first_line for s in p.log[1:4]] == [
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 200 OK",
    ]
    p.advance(5.0)
    p.a.hangup(leg_a, p.now)
    p.pump()
    [ended_a] = p.of("a", CallTerminated)
    [ended_b] = p.of("b", CallTerminated)
    assert ended_a.ended_by is EndedBy.LOCAL and ended_b.ended_by is EndedBy.REMOTE
    assert p.sent("a", "BYE") == [5.0] and p.sent("b", "SIP/2.0 200") == [0.0, 5.0]
    # Everything winds down: B's 200 retransmission stopped at the ACK, J/K end the rest.
    p.advance(100.0)
    assert p.sent("b", "SIP/2.0 200") == [0.0, 5.0]
    assert len(p.a.transactions) == 0 and len(p.b.transactions) == 0
    assert p.a.leg_count == 0 and p.b.leg_count == 0


def test_bye_from_callee() -> None:
    p = Pair()
    _leg_a, leg_b = p.establish()
    p.b.hangup(leg_b, p.now)
    p.pump()
    assert p.of("a", CallTerminated)[0].ended_by is EndedBy.REMOTE
    assert p.of("b", CallTerminated)[0].ended_by is EndedBy.LOCAL
    bye = parsed(p.datagrams["a"][-1])
    assert isinstance(bye, Request) and bye.method == "BYE"
    # §12.2.1.1: From carries B's tag, To carries A's; CSeq is B's own (new) sequence.
    invite = parsed(p.datagrams["b"][0])
    assert bye.to.tag == invite.from_.tag
    assert bye.call_id == invite.call_id


def test_ack_for_2xx_is_a_new_transaction_with_new_branch() -> None:
    """§17.1.1.3 / §13.2.2.4: the ACK for a 2xx has its own branch, same CSeq number."""
    p = Pair()
    p.establish()
    invite = parsed(p.datagrams["b"][0])
    ack = parsed(p.datagrams["b"][-1])
    assert isinstance(ack, Request) and ack.method == "ACK"
    assert ack.cseq.number == invite.cseq.number and ack.cseq.method == "ACK"
    assert ack.top_via.branch != invite.top_via.branch
    assert ack.top_via.branch is not None and ack.top_via.branch.startswith("z9hG4bK")
    assert ack.to.tag is not None


# ---------------------------------------------------------------------------------------------
# INVITE client transaction timers (§17.1.1.2)
# ---------------------------------------------------------------------------------------------


def test_invite_retransmissions_and_timer_b_under_total_loss() -> None:
    p = Pair(loss=lambda who, data, now: True)
    leg = p.call()
    p.advance(40.0)
    assert p.sent("a", "INVITE") == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    [failed] = p.of("a", CallFailed)
    assert failed.leg_id == leg and failed.status_code == 408
    assert p.at("a", CallFailed) == [32.0]
    assert len(p.a.transactions) == 0 and p.a.leg_count == 0


def test_custom_t1_scales_the_schedule() -> None:
    p = Pair(timers=TimerSettings(t1_seconds=0.1, t2_seconds=4.0), loss=lambda who, data, now: True)
    p.call()
    p.advance(10.0)
    assert p.sent("a", "INVITE") == pytest.approx([0.0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3])
    assert p.at("a", CallFailed) == pytest.approx([6.4])


def test_provisional_stops_invite_retransmission_and_timer_b() -> None:
    """§17.1.1.2: in Proceeding the INVITE is not retransmitted and Timer B does not apply:
    a callee may ring for minutes (the application CANCELs when it gives up)."""
    p = Pair()
    leg_a = p.call()
    p.b.ring(p.incoming().leg_id, p.now)
    p.advance(120.0)
    assert p.sent("a", "INVITE") == [0.0]
    assert p.of("a", CallFailed) == []
    assert p.a.leg(leg_a) is not None
    p.a.hangup(leg_a, p.now)  # CANCEL
    p.pump()
    assert [e.status_code for e in p.of("a", CallFailed)] == [487]


def test_retransmitted_invite_is_absorbed_and_100_resent() -> None:
    p = Pair(loss=drop("b", "SIP/2.0 100", count=1))
    p.call()
    p.advance(2.0)
    assert p.sent("a", "INVITE") == [0.0, 0.5]  # the 2nd INVITE got the 100 re-sent
    assert p.sent("b", "SIP/2.0 100") == [0.0, 0.5]
    assert len(p.of("b", InviteReceived)) == 1


def test_invite_retransmission_absorbed_in_accepted_state() -> None:
    """RFC 6026 §7.1: after the 2xx, INVITE retransmissions are absorbed (the TU's 2xx
    retransmission answers them), never a second InviteReceived."""
    p = Pair()
    p.call()
    leg_b = p.incoming().leg_id
    invite = p.datagrams["b"][0]
    p.b.answer(leg_b, SDP, p.now)
    p.pump()
    p.b.receive_datagram(invite, p.arrival("a"), p.now)
    p.pump()
    assert len(p.of("b", InviteReceived)) == 1
    assert p.sent("b", "SIP/2.0 200") == [0.0]


# ---------------------------------------------------------------------------------------------
# 2xx reliability (§13.3.1.4, RFC 6026)
# ---------------------------------------------------------------------------------------------


def test_lost_200s_are_retransmitted_until_ack() -> None:
    p = Pair(loss=drop("b", "SIP/2.0 200", count=3))
    p.call()
    leg_b = p.incoming().leg_id
    p.b.answer(leg_b, SDP, p.now)
    p.advance(60.0)
    assert p.sent("b", "SIP/2.0 200") == [0.0, 0.5, 1.5, 3.5]
    assert p.at("a", CallEstablished) == [3.5]
    assert p.at("b", CallEstablished) == [3.5]
    assert p.of("b", CallTerminated) == []


def test_200_retransmission_schedule_capped_at_t2_and_bye_without_ack() -> None:
    p = Pair(loss=drop("a", "ACK"))
    p.call()
    leg_b = p.incoming().leg_id
    p.b.answer(leg_b, SDP, p.now)
    p.advance(100.0)
    assert p.sent("b", "SIP/2.0 200") == [
        0.0,
        0.5,
        1.5,
        3.5,
        7.5,
        11.5,
        15.5,
        19.5,
        23.5,
        27.5,
        31.5,
    ]
    # §13.3.1.4: no ACK within 64*T1 -> BYE.
    assert p.sent("b", "BYE") == [32.0]
    [ended] = p.of("b", CallTerminated)
    assert ended.ended_by is EndedBy.NO_ACK
    assert p.at("b", CallTerminated) == [32.0]
    # A re-ACKs every retransmitted 200 (§13.2.2.4).
    assert len(p.sent("a", "ACK")) == 11
    assert p.of("a", CallTerminated)[0].ended_by is EndedBy.REMOTE


def test_hangup_before_ack_waits_for_ack() -> None:
    """§15: the callee must not send BYE before the ACK (or 64*T1)."""
    p = Pair(loss=drop("a", "ACK", count=2))
    p.call()
    leg_b = p.incoming().leg_id
    p.b.answer(leg_b, SDP, p.now)
    p.pump()
    p.b.hangup(leg_b, p.now)
    p.advance(10.0)
    assert p.sent("b", "BYE") == [1.5]  # right after the third ACK arrived
    assert p.of("a", CallTerminated)[0].ended_by is EndedBy.REMOTE


# ---------------------------------------------------------------------------------------------
# Error responses: Timer G, H, D and the ACK for non-2xx (§17.1.1.3, §17.2.1)
# ---------------------------------------------------------------------------------------------


def test_486_with_lost_acks_timer_g_and_h() -> None:
    p = Pair(loss=drop("a", "ACK"))
    leg_a = p.call()
    p.advance(1.0)
    p.b.reject(p.incoming().leg_id, 486, p.now)
    p.advance(100.0)
    expected = [1.0 + t for t in (0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)]
    assert p.sent("b", "SIP/2.0 486") == expected
    # The UAC ACKs each 486 it receives (§17.1.1.2), passing only the first one up.
    assert p.sent("a", "ACK") == expected
    assert [(e.leg_id, e.status_code) for e in p.of("a", CallFailed)] == [(leg_a, 486)]
    assert p.at("a", CallFailed) == [1.0]
    # Timer H ended the server transaction at 1 + 64*T1; Timer D the client's at 1 + 32.
    assert len(p.a.transactions) == 0 and len(p.b.transactions) == 0


def test_486_ack_stops_timer_g() -> None:
    p = Pair()
    p.call()
    p.b.reject(p.incoming().leg_id, 486, p.now)
    p.advance(3.0)
    assert p.sent("b", "SIP/2.0 486") == [0.0]
    ack = parsed(p.datagrams["b"][-1])
    invite = parsed(p.datagrams["b"][0])
    assert isinstance(ack, Request) and ack.method == "ACK"
    # §17.1.1.3: the ACK for a non-2xx reuses the INVITE's branch and Request-URI.
    assert ack.top_via.branch == invite.top_via.branch and ack.uri == invite.uri
    assert ack.to.tag is not None
    assert p.b.next_event() is None and p.of("b", InviteReceived)
    # Timer I (T4 = 5 s) then ends the server transaction.
    p.advance(5.0)
    assert len(p.b.transactions) == 0


# ---------------------------------------------------------------------------------------------
# CANCEL (§9)
# ---------------------------------------------------------------------------------------------


def test_cancel_after_180() -> None:
    p = Pair()
    leg_a = p.call()
    leg_b = p.incoming().leg_id
    p.b.ring(leg_b, p.now)
    p.pump()
    assert p.of("a", ProgressReceived)
    p.advance(2.0)
    p.a.cancel(leg_a, p.now)
    p.pump()
    assert p.sent("a", "CANCEL") == [2.0]
    assert p.sent("b", "SIP/2.0 200") == [2.0]
    assert p.sent("b", "SIP/2.0 487") == [2.0]
    assert p.sent("a", "ACK") == [2.0]
    assert [e.leg_id for e in p.of("b", InviteCancelled)] == [leg_b]
    assert [(e.leg_id, e.status_code) for e in p.of("a", CallFailed)] == [(leg_a, 487)]
    p.advance(60.0)
    assert p.sent("b", "SIP/2.0 487") == [2.0]  # the ACK was absorbed by the IST: no G
    assert len(p.events["b"]) == 2  # InviteReceived, InviteCancelled: ACK never surfaced
    assert len(p.a.transactions) == 0 and len(p.b.transactions) == 0


def test_cancel_before_provisional_is_deferred() -> None:
    """§9.1: CANCEL must not be sent before a provisional response arrived."""
    p = Pair(loss=drop("b", "SIP/2.0 100", count=1))
    leg_a = p.call()
    p.a.cancel(leg_a, p.now)
    p.advance(0.4)
    assert p.sent("a", "CANCEL") == []
    p.advance(1.0)  # INVITE retransmitted at 0.5 -> 100 -> CANCEL
    assert p.sent("a", "CANCEL") == [0.5]
    assert [e.status_code for e in p.of("a", CallFailed)] == [487]


def test_cancel_for_unknown_transaction_gets_481() -> None:
    p = Pair()
    cancel = (
        b"CANCEL sip:ivr@192.0.2.2 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnothere\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.1>;tag=1\r\nTo: <sip:ivr@192.0.2.2>\r\n"
        b"Call-ID: nope\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
    )
    p.b.receive_datagram(cancel, p.arrival("a"), 0.0)
    [out] = p.b.datagrams_to_send()
    assert out.data.startswith(b"SIP/2.0 481 ")


# ---------------------------------------------------------------------------------------------
# Non-INVITE client transaction (§17.1.2.2): Timer E, F
# ---------------------------------------------------------------------------------------------


def test_bye_timer_e_capped_at_t2_and_timer_f() -> None:
    p = Pair()
    leg_a, _ = p.establish()
    p.advance(10.0)
    p.loss = lambda who, data, now: who == "a"
    p.a.hangup(leg_a, p.now)
    p.advance(100.0)
    assert p.sent("a", "BYE") == [
        10.0 + t for t in (0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)
    ]
    [ended] = p.of("a", CallTerminated)
    assert ended.ended_by is EndedBy.LOCAL
    assert p.at("a", CallTerminated) == [42.0]  # Timer F = 64*T1


# ---------------------------------------------------------------------------------------------
# In-dialog requests
# ---------------------------------------------------------------------------------------------


def test_reinvite_hold_from_caller() -> None:
    p = Pair()
    leg_a, leg_b = p.establish()
    p.advance(3.0)
    p.a.send_in_dialog(leg_a, "INVITE", p.now, body=HOLD_SDP, content_type="application/sdp")
    p.pump()
    [reinvite] = p.of("b", ReinviteReceived)
    assert reinvite.leg_id == leg_b and reinvite.request.body == HOLD_SDP
    p.b.respond(reinvite.transaction_id, 200, p.now, body=SDP, content_type="application/sdp")
    p.pump()
    [resp] = p.of("a", InDialogResponseReceived)
    assert resp.method == "INVITE" and resp.response is not None
    assert resp.response.status_code == 200 and resp.response.body == SDP
    assert p.sent("a", "ACK") == [0.0, 3.0]
    p.advance(60.0)
    assert p.sent("b", "SIP/2.0 200") == [0.0, 3.0]  # ACK stopped the 2xx retransmission
    assert p.of("b", CallTerminated) == [] and p.of("a", CallTerminated) == []


def test_reinvite_from_callee_with_lost_200() -> None:
    """The caller's side answers a re-INVITE: its 2xx retransmissions go to the callee (the
    re-INVITE's Via), and each duplicate 200 reaching the callee is ACKed but reported once."""
    p = Pair(loss=drop("a", "SIP/2.0 200", count=2))
    _leg_a, leg_b = p.establish()
    p.b.send_in_dialog(leg_b, "INVITE", p.now, body=HOLD_SDP, content_type="application/sdp")
    p.pump()
    [reinvite] = p.of("a", ReinviteReceived)
    p.a.respond(reinvite.transaction_id, 200, p.now, body=SDP, content_type="application/sdp")
    p.advance(30.0)
    assert p.sent("a", "SIP/2.0 200 OK") == [0.0, 0.5, 1.5]
    assert len(p.of("b", InDialogResponseReceived)) == 1
    assert p.of("a", CallTerminated) == [] and p.of("b", CallTerminated) == []


def test_reinvite_2xx_retransmission_reported_once() -> None:
    """A lost ACK for a re-INVITE 2xx: the 2xx comes again, gets an ACK, no second event."""
    p = Pair()
    leg_a, _ = p.establish()
    p.advance(5.0)
    p.loss = drop("a", "ACK", count=1)
    p.a.send_in_dialog(leg_a, "INVITE", p.now, body=HOLD_SDP, content_type="application/sdp")
    p.pump()
    [reinvite] = p.of("b", ReinviteReceived)
    p.b.respond(reinvite.transaction_id, 200, p.now, body=SDP, content_type="application/sdp")
    p.advance(30.0)
    assert len(p.of("a", InDialogResponseReceived)) == 1
    assert p.sent("b", "SIP/2.0 200") == [0.0, 5.0, 5.5]
    assert p.sent("a", "ACK") == [0.0, 5.0, 5.5]


def test_info_in_dialog() -> None:
    p = Pair()
    leg_a, _leg_b = p.establish()
    p.a.send_in_dialog(
        leg_a,
        "INFO",
        p.now,
        body=b"Signal=5\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
    )
    p.pump()
    from sipstack.ua import InDialogRequestReceived

    [info] = p.of("b", InDialogRequestReceived)
    p.b.respond(info.transaction_id, 200, p.now)
    p.pump()
    [resp] = p.of("a", InDialogResponseReceived)
    assert resp.method == "INFO" and resp.response is not None
    assert resp.response.status_code == 200


def raw_request(
    method: str,
    *,
    call_id: str = "raw-1",
    to_tag: str | None = None,
    extra: str = "",
    branch: str = "z9hG4bKraw1",
    cseq: int = 1,
) -> bytes:
    to = "<sip:ivr@192.0.2.2>" + (f";tag={to_tag}" if to_tag else "")
    return (
        f"{method} sip:ivr@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:alice@192.0.2.1>;tag=aaa\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: <sip:alice@192.0.2.1:5060>\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def answers(p: Pair, data: bytes) -> list[Response]:
    p.b.receive_datagram(data, p.arrival("a"), p.now)
    out = []
    for o in p.b.datagrams_to_send():
        assert o.flow.remote == A_ADDR
        msg = parsed(o.data)
        assert isinstance(msg, Response)
        out.append(msg)
    return out


def test_bye_for_unknown_dialog_gets_481() -> None:
    p = Pair()
    [resp] = answers(p, raw_request("BYE", to_tag="nosuchtag"))
    assert resp.status_code == 481
    assert resp.to.tag == "nosuchtag"


def test_unknown_method_gets_405_with_allow() -> None:
    p = Pair()
    [resp] = answers(p, raw_request("FOO"))
    assert resp.status_code == 405
    assert "INVITE" in resp.headers.get_all("Allow")
    assert resp.to.tag  # §8.2.6.2: a final response carries a To tag


def test_unsupported_require_gets_420() -> None:
    p = Pair()
    [resp] = answers(p, raw_request("INVITE", extra="Require: foo, 100rel\r\n"))
    assert resp.status_code == 420
    assert resp.headers.get_all("Unsupported") == ["foo", "100rel"]
    assert p.b.next_event() is None


def test_options_out_of_dialog_and_respond() -> None:
    p = Pair()
    p.b.receive_datagram(raw_request("OPTIONS"), p.arrival("a"), p.now)
    event = p.b.next_event()
    assert isinstance(event, RequestReceived) and event.request.method == "OPTIONS"
    assert p.b.datagrams_to_send() == []
    p.b.respond(event.transaction_id, 200, p.now, headers=p.b.options_headers())
    [out] = p.b.datagrams_to_send()
    resp = parsed(out.data)
    assert isinstance(resp, Response) and resp.status_code == 200
    assert "OPTIONS" in resp.headers.get_all("Allow")
    assert resp.to.tag and resp.cseq.method == "OPTIONS"
    # rport (RFC 3581): the response goes to the source address and port.
    assert out.flow.remote == A_ADDR
    # RFC 3581 §4: received is added even when it equals sent-by, when rport is present.
    assert resp.top_via.param("received") == "192.0.2.1"
    assert resp.top_via.param("rport") == "5060"


def test_unknown_scheme_request_uri_gets_416() -> None:
    p = Pair()
    data = raw_request("OPTIONS").replace(b"OPTIONS sip:ivr@192.0.2.2", b"OPTIONS xmpp:ivr")
    [resp] = answers(p, data)
    assert resp.status_code == 416


# ---------------------------------------------------------------------------------------------
# Reliable transport: no A/E/G retransmissions; D, I, J, K are zero (§17)
# ---------------------------------------------------------------------------------------------


def test_tcp_no_invite_retransmission_timer_b_still_applies() -> None:
    p = Pair(transport="TCP", loss=lambda who, data, now: True)
    p.call()
    p.advance(40.0)
    assert p.sent("a", "INVITE") == [0.0]
    assert p.at("a", CallFailed) == [32.0]


def test_tcp_error_response_timers_d_and_i_zero() -> None:
    p = Pair(transport="TCP")
    p.call()
    p.b.reject(p.incoming().leg_id, 486, p.now)
    p.pump()
    p.advance(p.now)  # D and I are zero: both transactions end at once
    assert len(p.a.transactions) == 0 and len(p.b.transactions) == 0
    assert p.sent("b", "SIP/2.0 486") == [0.0]


def test_tcp_bye_timers_j_and_k_zero() -> None:
    p = Pair(transport="TCP")
    leg_a, _ = p.establish()
    p.a.hangup(leg_a, p.now)
    p.pump()
    p.advance(p.now)
    assert p.of("a", CallTerminated) and p.of("b", CallTerminated)
    # The INVITE server transaction lingers in ACCEPTED for Timer L (64*T1) on any transport.
    p.advance(32.0)
    assert len(p.a.transactions) == 0 and len(p.b.transactions) == 0


def test_tcp_bye_no_timer_e() -> None:
    p = Pair(transport="TCP")
    leg_a, _ = p.establish()
    p.loss = lambda who, data, now: True
    p.a.hangup(leg_a, p.now)
    p.advance(40.0)
    assert p.sent("a", "BYE") == [0.0]
    assert p.at("a", CallTerminated) == [32.0]


def test_cancel_without_final_response_gives_up_after_64_t1() -> None:
    """§9.1: no 487 within 64*T1 of the CANCEL -> the INVITE transaction is destroyed."""
    p = Pair(loss=drop("b", "SIP/2.0 487"))
    leg_a = p.call()
    p.b.ring(p.incoming().leg_id, p.now)
    p.advance(10.0)
    p.a.cancel(leg_a, p.now)
    p.advance(100.0)
    assert [(t, e.status_code) for t, e in p.events["a"] if isinstance(e, CallFailed)] == [
        (42.0, 408)
    ]
    assert len(p.a.transactions) == 0
