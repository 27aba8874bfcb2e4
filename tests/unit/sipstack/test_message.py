"""SIP message parsing/serialisation: golden messages (tests/golden/sip/*.sip), limits,
hostile input (seeded random fuzzing, truncations at every offset) and stream framing."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from sipstack.errors import ParseError
from sipstack.message import (
    Limits,
    Request,
    Response,
    StreamFramer,
    make_response,
    parse_message,
)
from sipstack.transaction import Flow
from sipstack.ua import UserAgent

GOLDEN = Path(__file__).parents[2] / "golden" / "sip"
NAMES = sorted(p.stem for p in GOLDEN.glob("*.sip") if not p.stem.endswith(".canonical"))
FLOW = Flow("UDP", ("192.0.2.77", 5060), None, ("192.0.2.2", 5060))


def golden(name: str) -> bytes:
    return (GOLDEN / f"{name}.sip").read_bytes()


@pytest.mark.parametrize("name", NAMES)
def test_golden_round_trip_byte_exact(name: str) -> None:
    data = golden(name)
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    canonical = GOLDEN / f"{name}.canonical.sip"
    expected = canonical.read_bytes() if canonical.exists() else data
    assert bytes(parse_message(data)) == expected


def test_sipp_invite_accessors() -> None:
    msg = parse_message(golden("sipp_invite"))
    assert isinstance(msg, Request) and msg.method == "INVITE"
    assert msg.request_uri.user == "service" and msg.request_uri.port == 5060
    assert msg.from_.display_name == "sipp" and msg.from_.tag == "4711SIPpTag001"
    assert msg.to.tag is None and msg.call_id == "1-4711@127.0.1.1"
    assert (msg.cseq.number, msg.cseq.method) == (1, "INVITE")
    assert msg.top_via.branch == "z9hG4bK-4711-1-0" and msg.top_via.port == 5061
    [contact] = msg.contacts
    assert str(contact.uri) == "sip:sipp@127.0.1.1:5061"
    assert msg.content_type == "application/sdp" and msg.body.startswith(b"v=0\r\n")


def test_carrier_invite_accessors() -> None:
    msg = parse_message(golden("carrier_invite"))
    assert isinstance(msg, Request)
    assert msg.request_uri.param("user") == "phone"
    assert msg.from_.display_name == "+1 555 987 0000"
    assert msg.headers.get_all("Record-Route") == ["<sip:203.0.113.10;lr;ftag=8f1d2c>"]
    assert msg.headers.get("x-verified-customer") == "yes"
    assert msg.headers.get("P-Asserted-Identity", "").startswith("<sip:+15559870000@")
    assert msg.top_via.param("rport") == ""
    assert msg.headers.get_all("Allow") == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]


def test_register_contact_params_with_quoted_angle_brackets() -> None:
    msg = parse_message(golden("register"))
    [contact] = msg.contacts
    assert dict(contact.params)["expires"] == "3600"
    assert (
        dict(contact.params)["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    )
    assert contact.uri.param("transport") == "tcp"


def test_200_and_ack_and_cancel() -> None:
    ok = parse_message(golden("ok_200_invite"))
    assert isinstance(ok, Response) and ok.status_code == 200 and ok.reason == "OK"
    assert ok.to.tag == "9a8b7c" and ok.top_via.param("received") == "127.0.1.1"
    ack = parse_message(golden("sipp_ack"))
    assert isinstance(ack, Request) and ack.cseq.method == "ACK"
    cancel = parse_message(golden("cancel"))
    assert isinstance(cancel, Request) and cancel.cseq == type(cancel.cseq)(102, "CANCEL")


def test_make_response_copies_per_8_2_6_2() -> None:
    req = parse_message(golden("sipp_invite"))
    assert isinstance(req, Request)
    trying = make_response(req, 100, to_tag="abc")
    assert trying.to.tag is None  # 100 never carries a To tag
    ringing = make_response(req, 180, to_tag="abc")
    assert ringing.to.tag == "abc" and ringing.reason == "Ringing"
    assert [n for n, _ in ringing.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]


def test_compact_and_case_insensitive_lookup() -> None:
    msg = parse_message(golden("carrier_invite"))
    assert msg.headers.get("v") == msg.headers.get("VIA") == msg.headers.get("Via")
    assert msg.headers.get("l") == msg.headers.get("content-length")


def test_body_longer_than_content_length_is_truncated_on_datagrams() -> None:
    data = golden("sipp_bye") + b"garbage"
    assert parse_message(data).body == b""


def test_missing_content_length_on_datagram_takes_rest() -> None:
    data = golden("sipp_bye").replace(b"Content-Length: 0\r\n", b"") + b"hello"
    assert parse_message(data).body == b"hello"


def test_limits() -> None:
    data = golden("sipp_invite")
    with pytest.raises(ParseError) as info:
        parse_message(data, Limits(max_message_bytes=100))
    assert info.value.status_code == 513
    many = data.replace(b"Subject:", b"X-A: 1\r\n" * 200 + b"Subject:")
    with pytest.raises(ParseError) as info:
        parse_message(many)
    assert info.value.status_code == 400
    long_line = data.replace(b"Performance Test", b"x" * 9000)
    with pytest.raises(ParseError):
        parse_message(long_line)
    huge_cl = re.sub(rb"Content-Length: \d+", b"Content-Length: 99999999999999", data)
    with pytest.raises(ParseError):
        parse_message(huge_cl)


def test_non_utf8_headers_rejected() -> None:
    data = golden("sipp_bye").replace(b"Performance Test", b"\xff\xfe\xc3")
    with pytest.raises(ParseError):
        parse_message(data)


# ---------------------------------------------------------------------------------------------
# Hostile input: the UA never raises, whatever arrives
# ---------------------------------------------------------------------------------------------


def ua_survives(data: bytes) -> UserAgent:
    ua = UserAgent(rng=random.Random(3))
    ua.receive_datagram(data, FLOW, 0.0)
    while ua.next_event() is not None:
        pass
    ua.datagrams_to_send()
    ua.handle_timer(100.0)
    return ua


@pytest.mark.parametrize("name", NAMES)
def test_truncation_at_every_offset(name: str) -> None:
    data = golden(name)
    for cut in range(len(data)):
        try:
            parse_message(data[:cut])
        except ParseError:
            pass
        ua_survives(data[:cut])


def test_random_bytes_never_escape() -> None:
    rng = random.Random(4475)
    for _ in range(2000):
        data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 300)))
        ua_survives(data)


def test_random_mutations_of_golden_messages() -> None:
    rng = random.Random(3261)
    seeds = [golden(n) for n in NAMES]
    alphabet = b' \t\r\n:;,<>"@=?%\\/\x00\xff0123456789SIPsip'
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 6)):
            op = rng.randrange(3)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] = rng.choice(alphabet)
            elif op == 1:
                del data[pos : pos + rng.randrange(1, 10)]
            else:
                data[pos:pos] = bytes(rng.choice(alphabet) for _ in range(rng.randrange(1, 5)))
        ua_survives(bytes(data))


def test_giant_header_count_huge_content_length_and_non_utf8() -> None:
    base = golden("sipp_invite")
    ua_survives(base.replace(b"Subject:", b"X: y\r\n" * 5000 + b"Subject:"))
    ua_survives(re.sub(rb"Content-Length: \d+", b"Content-Length: 4294967296", base))
    ua_survives(re.sub(rb"Content-Length: \d+", b"Content-Length: -1", base))
    ua_survives(base.replace(b"sipp <", b"\xc3\x28 <"))
    ua_survives(b"\r\n" * 10000)
    ua_survives(b"INVITE " + b"a" * 70000)


def test_malformed_request_gets_400_datagram() -> None:
    data = golden("sipp_bye").replace(b"CSeq: 2 BYE", b"CSeq: two BYE")
    ua = UserAgent(rng=random.Random(3))
    ua.receive_datagram(data, FLOW, 0.0)
    [out] = ua.datagrams_to_send()
    assert out.data.startswith(b"SIP/2.0 400 ")
    # §18.2.2: no rport -> the received address (stamped, it differs from sent-by) and the
    # sent-by port.
    assert out.flow.remote == ("192.0.2.77", 5061)


def test_malformed_response_is_dropped_silently() -> None:
    data = golden("ok_200_invite").replace(b"CSeq: 1 INVITE", b"CSeq: x")
    ua = UserAgent(rng=random.Random(3))
    ua.receive_datagram(data, FLOW, 0.0)
    assert ua.datagrams_to_send() == []


# ---------------------------------------------------------------------------------------------
# StreamFramer (§18.3): byte-at-a-time, several messages per chunk, keep-alives
# ---------------------------------------------------------------------------------------------


def test_framer_byte_at_a_time() -> None:
    stream = golden("sipp_invite") + golden("sipp_ack") + golden("sipp_bye")
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
    assert out == [golden("sipp_invite"), golden("sipp_ack"), golden("sipp_bye")]


def test_framer_many_messages_one_chunk_with_keepalives() -> None:
    stream = (
        b"\r\n\r\n"
        + golden("sipp_invite")
        + b"\r\n"
        + golden("sipp_bye")
        + golden("carrier_invite")
    )
    out = StreamFramer().feed(stream)
    assert out == [golden("sipp_invite"), golden("sipp_bye"), golden("carrier_invite")]


def test_framer_compact_content_length_and_random_chunking() -> None:
    stream = golden("carrier_invite") * 5
    rng = random.Random(18)
    for _ in range(50):
        framer = StreamFramer()
        out: list[bytes] = []
        pos = 0
        while pos < len(stream):
            step = rng.randrange(1, 200)
            out += framer.feed(stream[pos : pos + step])
            pos += step
        assert out == [golden("carrier_invite")] * 5


def test_framer_rejects_oversized() -> None:
    framer = StreamFramer(Limits(max_message_bytes=1000))
    with pytest.raises(ParseError) as info:
        framer.feed(golden("sipp_bye").replace(b"Content-Length: 0", b"Content-Length: 5000"))
    assert info.value.status_code == 513
    framer = StreamFramer(Limits(max_message_bytes=1000))
    with pytest.raises(ParseError):
        for _ in range(200):
            framer.feed(b"X-Header: no end in sight\r\n")
