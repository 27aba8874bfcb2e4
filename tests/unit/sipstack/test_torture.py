"""RFC 4475 torture messages (tests/golden/sip/torture/*.sip, CRLF, byte-exact).

Transcribed from RFC 4475 §3.1.1 (valid), §3.1.2 (invalid) and §3.3 (application-layer
semantics), with the RFC's <allOneLine>/<hex>/<repeat> conventions expanded. ``mpart01``
(§3.1.1.11, binary S/MIME body) is not included: its bytes could not be transcribed exactly.
``longreq`` is the RFC message in full (it fits the default limits).
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sipstack.errors import ParseError
from sipstack.message import Request, Response, parse_message
from sipstack.transaction import Flow
from sipstack.ua import MessageRejected, RequestReceived, UserAgent

TORTURE = Path(__file__).parents[2] / "golden" / "sip" / "torture"
FLOW = Flow("UDP", ("192.0.2.77", 5060), None, ("192.0.2.2", 5060))


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.sip").read_bytes()


# ---------------------------------------------------------------------------------------------
# §3.1.1 valid messages: parse, and the fields the RFC calls out are right
# ---------------------------------------------------------------------------------------------


def test_wsinv() -> None:
    msg = parse_message(load("wsinv"))
    assert isinstance(msg, Request) and msg.method == "INVITE"
    assert msg.request_uri.user == "vivekg" and msg.request_uri.param("unknownparam") == ""
    assert msg.to.tag == "1918181833n" and msg.to.uri.host == "chair-dnrc.example.com"
    assert msg.from_.tag == "98asjd8"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.headers.get("Max-Forwards") == "0068"
    assert msg.cseq.number == 9 and msg.cseq.method == "INVITE"
    vias = msg.vias
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    [contact] = msg.contacts
    assert contact.display_name == 'Quoted string ""'
    assert dict(contact.params) == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150 and msg.content_type == "application/sdp"


def test_intmeth() -> None:
    msg = parse_message(load("intmeth"))
    assert isinstance(msg, Request)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    uri = msg.request_uri
    assert uri.host == "example.com"
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert msg.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert msg.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert msg.to.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert msg.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert msg.from_.tag == "_token~1'+`*%!-."
    assert msg.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert msg.cseq.method == msg.method
    assert msg.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def test_esc01() -> None:
    msg = parse_message(load("esc01"))
    assert isinstance(msg, Request)
    assert msg.request_uri.user == "sips%3Auser%40example.com"
    assert msg.request_uri.host == "example.net"
    assert msg.to.uri.user == "%75se%72"
    assert msg.call_id == "esc01.239409asdfakjkn23onasd0-3234"
    assert msg.content_type == "application/sdp"
    [contact] = msg.contacts
    assert contact.uri.user == "cal%6Cer"
    assert contact.uri.param("%6c%72") == ""  # parameter names compare case-insensitively


def test_escnull() -> None:
    msg = parse_message(load("escnull"))
    assert isinstance(msg, Request) and msg.method == "REGISTER"
    assert msg.to.uri.user == "null-%00-null"
    assert [c.uri.user for c in msg.contacts] == ["%00", "%00%00"]
    assert msg.body == b""


def test_esc02() -> None:
    msg = parse_message(load("esc02"))
    assert isinstance(msg, Request)
    assert msg.method == "RE%47IST%45R"  # % is not an escape in a method: unknown method
    assert msg.to.display_name == "%Z%45"
    assert msg.top_via.branch == "z9hG4bK209%fzsnel234"
    # C%6Fntact is an unknown header, not a Contact.
    assert [c.uri.host for c in msg.contacts] == ["host1.example.com", "host3.example.com"]
    assert msg.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp() -> None:
    msg = parse_message(load("lwsdisp"))
    assert msg.from_.display_name == "caller" and msg.from_.tag == "323"


def test_longreq() -> None:
    data = load("longreq")
    msg = parse_message(data)
    assert isinstance(msg, Request)
    assert len(msg.vias) == 34
    assert [v.host for v in msg.vias[:3]] == [
        "sip33.example.com",
        "sip32.example.com",
        "sip31.example.com",
    ]
    assert msg.vias[-1].param("received") == "192.0.2.5"
    assert msg.to.uri.port == 6000
    assert msg.from_.tag is not None and msg.from_.tag.startswith("12982")
    assert msg.call_id.startswith("longreq.onereally")
    assert len(msg.body) == 150


def test_dblreq_second_message_is_ignored_on_a_datagram() -> None:
    msg = parse_message(load("dblreq"))
    assert isinstance(msg, Request) and msg.method == "REGISTER"
    assert msg.body == b""  # Content-Length 0: the trailing INVITE is discarded (§18.3)


def test_semiuri() -> None:
    msg = parse_message(load("semiuri"))
    assert isinstance(msg, Request)
    uri = msg.request_uri
    assert uri.user == "user;par=u%40example.net" and uri.host == "example.com"
    assert uri.params == ()
    assert msg.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def test_transports() -> None:
    msg = parse_message(load("transports"))
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    assert msg.call_id == "transports.kijh4akdnaqjkwendsasfdj"


def test_unreason() -> None:
    msg = parse_message(load("unreason"))
    assert isinstance(msg, Response) and msg.status_code == 200
    assert msg.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    assert len(msg.body) == 154


def test_noreason() -> None:
    msg = parse_message(load("noreason"))
    assert isinstance(msg, Response) and msg.status_code == 100 and msg.reason == ""


VALID = [
    "wsinv",
    "intmeth",
    "esc01",
    "escnull",
    "esc02",
    "lwsdisp",
    "longreq",
    "dblreq",
    "semiuri",
    "transports",
    "unreason",
    "noreason",
    "zeromf",
    "bext01",
    "badbranch",
    "baddate",
    "novelsc",
    "unkscm",
    "unksm2",
    "regbadct",
    "escruri",
]


@pytest.mark.parametrize("name", VALID)
def test_valid_round_trip_is_stable(name: str) -> None:
    """bytes(parse(x)) re-parses to the same serialisation (canonical form is a fixpoint)."""
    once = bytes(parse_message(load(name)))
    assert bytes(parse_message(once)) == once


# ---------------------------------------------------------------------------------------------
# §3.1.2 invalid messages: ParseError with the status to answer
# ---------------------------------------------------------------------------------------------

INVALID = {
    "badinv01": 400,  # §3.1.2.1 extraneous ; and , in Via and Contact
    "clerr": 400,  # §3.1.2.2 Content-Length larger than the datagram
    "ncl": 400,  # §3.1.2.3 negative Content-Length
    "scalar02": 400,  # §3.1.2.4 CSeq and Max-Forwards out of range
    "quotbal": 400,  # §3.1.2.6 unterminated quoted string
    "ltgtruri": 400,  # §3.1.2.7 <> around the Request-URI
    "lwsruri": 400,  # §3.1.2.8 LWS inside the Request-URI
    "lwsstart": 400,  # §3.1.2.9 several SP in the request line
    "trws": 400,  # §3.1.2.10 trailing SP after SIP-Version
    "badaspec": 400,  # §3.1.2.12 LWS inside <> of name-addr
    "baddn": 400,  # §3.1.2.13 unquoted display name with a comma
    "badvers": 505,  # §3.1.2.14 SIP/7.0
    "mismatch01": 400,  # §3.1.2.15 CSeq method differs from the request method
    "mismatch02": 400,  # §3.1.2.16 (RFC: 400, or 501 for the unknown method)
    "bigcode": 400,  # §3.1.2.17 status code out of range (a response: dropped, never answered)
    "insuf": 400,  # §3.3.1 missing To/From/Call-ID/Max-Forwards
    "multi01": 400,  # §3.3.8 several values in single-valued headers
    "mcl01": 400,  # §3.3.9 two Content-Length headers
}


@pytest.mark.parametrize(("name", "status"), sorted(INVALID.items()))
def test_invalid_raises_parse_error_with_status(name: str, status: int) -> None:
    with pytest.raises(ParseError) as info:
        parse_message(load(name))
    assert info.value.status_code == status


# Messages the parser accepts and a higher layer rejects, or the RFC lets an element accept.
def test_escruri_request_uri_headers_rejected_by_ua() -> None:
    """§3.1.2.11: escaped headers in a Request-URI; the UA answers 400 (§19.1.1 Table 1)."""
    assert parse_message(load("escruri")).request_uri.headers  # type: ignore[union-attr]
    assert answer("escruri") == 400


def test_baddate_is_accepted() -> None:
    """§3.1.2.11 baddate: a non-GMT Date; RFC: an element SHOULD accept it (only proxies /
    UAs that use Date care). We never interpret Date."""
    msg = parse_message(load("baddate"))
    assert msg.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct_contact_rejected_when_used() -> None:
    """§3.1.2.12 regbadct: addr-spec Contact with '?' must be in <>. Contact is not parsed by
    parse_message; the registrar's use of ``contacts`` raises ParseError(400)."""
    msg = parse_message(load("regbadct"))
    with pytest.raises(ParseError) as info:
        msg.contacts  # noqa: B018
    assert info.value.status_code == 400


def test_badbranch_is_accepted() -> None:
    """§3.1.2.15 badbranch: the bare magic cookie is a valid token; RFC lets elements accept
    it. It is handled as an RFC 3261 branch."""
    msg = parse_message(load("badbranch"))
    assert msg.top_via.branch == "z9hG4bK"
    assert answer("badbranch") == 200


def test_scalarlg_response_is_parsed_and_dropped() -> None:
    """§3.1.2.5 scalarlg: a response with huge scalars: "simply discard". The CSeq accessor
    rejects it; the UA drops it silently (never answers a response)."""
    msg = parse_message_or_error("scalarlg")
    assert isinstance(msg, ParseError) and msg.answerable is None
    _ua, sent, _events = feed("scalarlg")
    assert sent == []


def test_unkscm_and_novelsc_answered_416_by_ua() -> None:
    """§3.3.2 / §3.3.3: unknown or atypical Request-URI scheme -> 416 (§8.2.2.1)."""
    assert answer("unkscm") == 416
    assert answer("novelsc") == 416


def test_unksm2_parses() -> None:
    """§3.3.4: registered but unknown schemes in To/From/Contact: "parsers MUST NOT fail".
    Using those URIs raises 416 at the layer that needs a SIP URI."""
    msg = parse_message(load("unksm2"))
    assert isinstance(msg, Request) and msg.call_id.startswith("unksm2.")
    with pytest.raises(ParseError) as info:
        msg.to  # noqa: B018
    assert info.value.status_code == 416


def test_zeromf_and_bext01_answered_by_ua() -> None:
    """§3.3.6 bext01: Require with unknown options -> 420. zeromf: Max-Forwards 0 addressed
    to us is processed normally (only proxies answer 483)."""
    assert answer("bext01") == 420
    assert answer("zeromf") == 200


# ---------------------------------------------------------------------------------------------
# Whole-UA behaviour on the torture corpus: never raises, answers what must be answered
# ---------------------------------------------------------------------------------------------


def parse_message_or_error(name: str) -> Request | Response | ParseError:
    try:
        return parse_message(load(name))
    except ParseError as exc:
        return exc


def feed(name: str) -> tuple[UserAgent, list[bytes], list[object]]:
    ua = UserAgent(rng=random.Random(7))
    ua.receive_datagram(load(name), FLOW, 0.0)
    events: list[object] = []
    while (event := ua.next_event()) is not None:
        if isinstance(event, RequestReceived):
            ua.respond(event.transaction_id, 200, 0.0)
        events.append(event)
    return ua, [o.data for o in ua.datagrams_to_send()], events


def answer(name: str) -> int | None:
    _, sent, _ = feed(name)
    codes = [int(d.split(b" ", 2)[1]) for d in sent if d.startswith(b"SIP/2.0 ")]
    assert len(codes) <= 2  # 100 Trying may precede the final answer
    return codes[-1] if codes else None


@pytest.mark.parametrize("name", sorted(p.stem for p in TORTURE.glob("*.sip")))
def test_user_agent_never_raises_on_torture_corpus(name: str) -> None:
    feed(name)


@pytest.mark.parametrize(
    ("name", "status"), sorted((n, s) for n, s in INVALID.items() if n not in ("bigcode",))
)
def test_malformed_requests_are_answered(name: str, status: int) -> None:
    """§21.4.1 / RFC 4475: a malformed request gets a 4xx/5xx (not silence) when it can be
    answered at all."""
    _, sent, events = feed(name)
    assert [int(d.split(b" ", 2)[1]) for d in sent] == [status]
    [rejected] = [e for e in events if isinstance(e, MessageRejected)]
    assert rejected.answered and rejected.status_code == status
