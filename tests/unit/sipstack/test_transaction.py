"""Transaction layer (RFC 3261 §17, RFC 6026) driven directly, with explicit ``now``."""

from __future__ import annotations

import pytest

from sipstack.errors import LocalProtocolError
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.transaction import (
    TRANSITIONS,
    AckReceived,
    Flow,
    RequestReceived,
    ResponseReceived,
    State,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    server_key,
    stamp_via,
)

PEER = ("192.0.2.9", 5060)
UDP = Flow("UDP", PEER, None, ("192.0.2.2", 5060))
TCP = Flow("TCP", PEER, 7, ("192.0.2.2", 5060))


def request(
    method: str = "OPTIONS",
    *,
    branch: str = "z9hG4bKtx1",
    to_tag: str = "",
    cseq: int = 1,
    cseq_method: str | None = None,
) -> Request:
    to = "<sip:b@192.0.2.2>" + (f";tag={to_tag}" if to_tag else "")
    data = (
        f"{method} sip:b@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.9:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:a@192.0.2.9>;tag=ft\r\n"
        f"To: {to}\r\nCall-ID: txn-call\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\nContact: <sip:a@192.0.2.9>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def drain(layer: TransactionLayer) -> list[object]:
    out = []
    while (event := layer.next_event()) is not None:
        out.append(event)
    return out


def run_until(layer: TransactionLayer, until: float) -> list[tuple[float, bytes]]:
    """Fire timers at their exact deadlines; return (time, first line) of what was sent."""
    sent: list[tuple[float, bytes]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        sent += [(deadline, o.data.split(b"\r\n", 1)[0]) for o in layer.datagrams_to_send()]
    return sent


def test_transition_table_only_rfc_states() -> None:
    machines = {m for m, _, _ in TRANSITIONS}
    assert machines == {"ict", "nict", "ist", "nist"}
    # Terminal state has no way out.
    assert not [k for k in TRANSITIONS if k[1] is State.TERMINATED]


def test_nict_timer_e_schedule_in_trying() -> None:
    layer = TransactionLayer()
    layer.send_request(request("BYE"), UDP, 0.0)
    assert len(layer.datagrams_to_send()) == 1
    sent = run_until(layer, 40.0)
    assert [t for t, _ in sent] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    [timeout] = drain(layer)
    assert isinstance(timeout, TransactionTimedOut) and timeout.reason == "Timer F"
    assert len(layer) == 0


def test_nict_timer_e_in_proceeding_is_t2() -> None:
    """§17.1.2.2: a provisional moves to Proceeding; E keeps its deadline, then fires every
    T2. A retransmitted provisional does not push the timer back."""
    layer = TransactionLayer()
    req = request("BYE")
    layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    trying = make_response(req, 100)
    layer.receive_response(trying, UDP, 0.2)
    layer.receive_response(trying, UDP, 0.4)
    sent = run_until(layer, 20.0)
    assert [t for t, _ in sent] == [0.5, 4.5, 8.5, 12.5, 16.5]
    events = drain(layer)
    assert [type(e) for e in events] == [ResponseReceived, ResponseReceived]
    run_until(layer, 40.0)
    assert [type(e) for e in drain(layer)] == [TransactionTimedOut]  # F still at 32 s


def test_nict_final_response_timer_k() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    tid = layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    ok = make_response(req, 200, to_tag="tt")
    layer.receive_response(ok, UDP, 1.0)
    layer.receive_response(ok, UDP, 1.1)  # retransmission: absorbed
    assert [type(e) for e in drain(layer)] == [ResponseReceived]
    assert layer.get(tid) is not None and layer.get(tid).state is State.COMPLETED  # type: ignore[union-attr]
    assert layer.get_timer() == 6.0  # Timer K = T4
    run_until(layer, 6.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


def test_nict_reliable_k_zero_and_no_e() -> None:
    layer = TransactionLayer()
    req = request("BYE")
    layer.send_request(req, TCP, 0.0)
    layer.datagrams_to_send()
    assert layer.get_timer() == 32.0  # only F
    layer.receive_response(make_response(req, 200, to_tag="t"), TCP, 1.0)
    assert layer.get_timer() == 1.0  # K = 0
    run_until(layer, 1.0)
    assert len(layer) == 0


def test_nist_retransmission_resends_final_response_until_j() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    assert isinstance(event, RequestReceived)
    # Trying: a retransmission before any response is absorbed silently (§17.2.2).
    layer.receive_request(request("OPTIONS"), UDP, 0.1)
    assert layer.datagrams_to_send() == [] and drain(layer) == []
    layer.send_response(event.transaction_id, make_response(req, 200, to_tag="x"), 0.2)
    [first] = layer.datagrams_to_send()
    layer.receive_request(request("OPTIONS"), UDP, 5.0)
    [again] = layer.datagrams_to_send()
    assert again.data == first.data and again.flow == first.flow
    assert drain(layer) == []
    assert layer.get_timer() == pytest.approx(0.2 + 32.0)  # Timer J = 64*T1
    run_until(layer, 40.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]
    layer.receive_request(request("OPTIONS"), UDP, 41.0)  # now a new transaction
    assert [type(e) for e in drain(layer)] == [RequestReceived]


def test_nist_proceeding_resends_provisional() -> None:
    layer = TransactionLayer()
    req = request("REGISTER")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    layer.send_response(event.transaction_id, make_response(req, 100), 0.0)
    layer.datagrams_to_send()
    layer.receive_request(request("REGISTER"), UDP, 1.0)
    [out] = layer.datagrams_to_send()
    assert out.data.startswith(b"SIP/2.0 100 ")


def test_nist_reliable_j_zero() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.receive_request(req, TCP, 0.0)
    [event] = drain(layer)
    layer.send_response(event.transaction_id, make_response(req, 200, to_tag="x"), 3.0)
    assert layer.get_timer() == 3.0


def test_ist_timer_g_h_schedule_and_custom_t2() -> None:
    from sipstack.timers import TimerSettings

    layer = TransactionLayer(TimerSettings(t1_seconds=0.5, t2_seconds=2.0))
    req = request("INVITE")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    layer.send_response(event.transaction_id, make_response(req, 486, to_tag="x"), 0.0)
    layer.datagrams_to_send()
    sent = run_until(layer, 40.0)
    times = [t for t, _ in sent]
    assert times[:5] == [0.5, 1.5, 3.5, 5.5, 7.5]  # G capped at T2 = 2 s
    assert times[-1] == 31.5
    [timeout] = drain(layer)
    assert isinstance(timeout, TransactionTimedOut) and timeout.reason == "Timer H"


def test_ist_ack_for_error_confirms_then_timer_i() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    tid = event.transaction_id  # type: ignore[attr-defined]
    layer.send_response(tid, make_response(req, 486, to_tag="x"), 0.0)
    layer.datagrams_to_send()
    ack = request("ACK", to_tag="x", cseq_method="ACK")
    layer.receive_request(ack, UDP, 0.3)
    layer.receive_request(ack, UDP, 0.4)  # retransmitted ACK absorbed in Confirmed
    assert drain(layer) == [] and layer.datagrams_to_send() == []
    assert layer.get(tid).state is State.CONFIRMED  # type: ignore[union-attr]
    assert layer.get_timer() == pytest.approx(5.3)  # Timer I = T4
    run_until(layer, 6.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


def test_ist_accepted_timer_l() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    tid = event.transaction_id  # type: ignore[attr-defined]
    layer.send_response(tid, make_response(req, 200, to_tag="x"), 1.0)
    layer.datagrams_to_send()
    assert layer.get(tid).state is State.ACCEPTED  # type: ignore[union-attr]
    layer.receive_request(request("INVITE"), UDP, 2.0)
    assert layer.datagrams_to_send() == [] and drain(layer) == []  # absorbed (RFC 6026)
    # A 2xx ACK has its own branch: passed up as AckReceived.
    layer.receive_request(
        request("ACK", branch="z9hG4bKack", to_tag="x", cseq_method="ACK"), UDP, 2.5
    )
    [ack] = drain(layer)
    assert isinstance(ack, AckReceived) and ack.request.method == "ACK"
    assert layer.get_timer() == 33.0  # Timer L = 64*T1 from the 2xx
    run_until(layer, 33.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]


def test_rfc2543_ack_for_2xx_matching_the_invite_is_passed_up_as_the_ack() -> None:
    """§17.2.3 fallback (no magic cookie): the ACK for a 2xx matches the INVITE server
    transaction in Accepted; the TU must get the ACK itself (with its To tag), not the
    INVITE."""
    layer = TransactionLayer()
    req = request("INVITE", branch="old2543")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    layer.send_response(event.transaction_id, make_response(req, 200, to_tag="x"), 0.0)
    ack = request("ACK", branch="old2543", to_tag="x", cseq_method="ACK")
    layer.receive_request(ack, UDP, 0.1)
    [got] = drain(layer)
    assert isinstance(got, AckReceived)
    assert got.request.method == "ACK" and got.request.to.tag == "x"


def test_ict_2xx_then_retransmissions_timer_m() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    tid = layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    ok = make_response(req, 200, to_tag="x")
    layer.receive_response(ok, UDP, 0.1)
    layer.receive_response(ok, UDP, 0.6)  # RFC 6026: passed up again for the TU to re-ACK
    assert [e.transaction_id for e in drain(layer)] == [tid, tid]  # type: ignore[attr-defined]
    assert layer.datagrams_to_send() == []  # the TU, not the transaction, ACKs a 2xx
    run_until(layer, 40.0)
    assert [type(e) for e in drain(layer)] == [TransactionTerminated]  # Timer M
    layer.receive_response(ok, UDP, 50.0)
    [late] = drain(layer)
    assert isinstance(late, ResponseReceived) and late.transaction_id is None


def test_ict_failure_acked_by_transaction_and_timer_d() -> None:
    layer = TransactionLayer()
    req = request("INVITE")
    layer.send_request(req, UDP, 0.0)
    layer.datagrams_to_send()
    busy = make_response(req, 486, to_tag="x")
    layer.receive_response(busy, UDP, 0.1)
    [ack] = layer.datagrams_to_send()
    ack_msg = parse_message(ack.data)
    assert isinstance(ack_msg, Request) and ack_msg.method == "ACK"
    assert ack_msg.cseq.number == 1 and ack_msg.to.tag == "x"
    layer.receive_response(busy, UDP, 2.0)
    [again] = layer.datagrams_to_send()
    assert again.data == ack.data
    assert [type(e) for e in drain(layer)] == [ResponseReceived]
    assert layer.get_timer() == pytest.approx(32.1)  # Timer D = 32 s
    run_until(layer, 33.0)
    assert len(layer) == 0


def test_send_request_rejects_bad_branch_and_ack() -> None:
    layer = TransactionLayer()
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS", branch="nocookie"), UDP, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("ACK", cseq_method="ACK"), UDP, 0.0)
    layer.send_request(request("OPTIONS"), UDP, 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request("OPTIONS"), UDP, 0.0)


def test_send_response_twice_final_is_local_error() -> None:
    layer = TransactionLayer()
    req = request("OPTIONS")
    layer.receive_request(req, UDP, 0.0)
    [event] = drain(layer)
    tid = event.transaction_id  # type: ignore[attr-defined]
    layer.send_response(tid, make_response(req, 200, to_tag="x"), 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_response(tid, make_response(req, 500, to_tag="x"), 0.0)


def test_server_key_rfc3261_and_2543() -> None:
    a = request("INVITE")
    ack = request("ACK", to_tag="x", cseq_method="ACK")
    assert server_key(a) == server_key(ack)  # ACK matches the INVITE (§17.2.3)
    assert server_key(request("CANCEL"))[-1] == "CANCEL"
    assert server_key(request("INVITE", branch="abc"))[0] == "2543"


def test_stamp_via_keeps_via_first_and_order() -> None:
    data = (
        b"INVITE sip:b@192.0.2.2 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKa;rport\r\n"
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKb\r\n"
        b"Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@y>\r\nCall-ID: c\r\n"
        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    req = parse_message(data)
    assert isinstance(req, Request)
    stamp_via(req, Flow("UDP", ("203.0.113.7", 40000)))
    names = [n for n, _ in req.headers]
    assert names[:2] == ["Via", "Via"]
    vias = req.vias
    assert vias[0].param("received") == "203.0.113.7" and vias[0].param("rport") == "40000"
    assert vias[1].host == "proxy.example.com"
    response = make_response(req, 200, to_tag="t")
    assert isinstance(response, Response)
    assert bytes(response).split(b"\r\n")[1].startswith(b"Via: SIP/2.0/UDP 10.0.0.1:5060;")


def test_completed_server_transaction_keeps_only_bytes_and_destination() -> None:
    """While it lingers for 64*T1 (Timer J) a completed transaction still answers
    retransmissions, from the response bytes alone: the parsed request is released."""
    from sipstack.message import make_response, parse_message
    from sipstack.transaction import Flow, TransactionLayer, stamp_via

    layer = TransactionLayer()
    data = (
        b"BYE sip:x@192.0.2.2 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5062;branch=z9hG4bKrel;"
        b"rport\r\nFrom: <sip:a@192.0.2.1>;tag=a\r\nTo: <sip:x@192.0.2.2>;tag=b\r\n"
        b"Call-ID: rel\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    flow = Flow("UDP", ("192.0.2.1", 40000), None, ("192.0.2.2", 5060))
    request = parse_message(data)
    stamp_via(request, flow)
    layer.receive_request(request, flow, 0.0)
    event = layer.next_event()
    tid = event.transaction_id  # type: ignore[union-attr]
    layer.send_response(tid, make_response(request, 200, to_tag="b"), 0.0)
    first = layer.datagrams_to_send()
    txn = layer.get(tid)
    assert txn is not None and txn.request is None and txn.method == "BYE"
    again = parse_message(data)
    stamp_via(again, flow)
    layer.receive_request(again, flow, 1.0)
    resent = layer.datagrams_to_send()
    assert [o.data for o in resent] == [o.data for o in first]
    assert resent[0].flow.remote == ("192.0.2.1", 40000), "rport destination kept"
    layer.handle_timer(32.0)
    assert layer.get(tid) is None
