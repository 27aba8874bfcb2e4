"""Tests for sipstack.sdp: RFC 8866 parsing/serialisation and RFC 3264 offer/answer."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sipstack import sdp
from sipstack.sdp import (
    Direction,
    Limits,
    NoCommonCodec,
    SdpError,
    SessionDescription,
    build_offer,
    negotiate,
    process_answer,
    renegotiate,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "sdp"
OFFERS = sorted(p for p in GOLDEN.glob("*.sdp") if not p.name.endswith(".answer.sdp"))
ANSWERS = sorted(GOLDEN.glob("*.answer.sdp"))


def golden(name: str) -> bytes:
    return (GOLDEN / name).read_bytes()


def answer_to(offer: bytes, **kwargs: object) -> sdp.NegotiationResult:
    params: dict[str, object] = {
        "local_address": "192.0.2.10",
        "local_port": 20000,
        "session_id": 42,
        "session_version": 1,
    }
    params.update(kwargs)
    return negotiate(SessionDescription.parse(offer), **params)  # type: ignore[arg-type]


# ---- parsing and serialisation ------------------------------------------------------------


@pytest.mark.parametrize("path", OFFERS + ANSWERS, ids=lambda p: p.name)
def test_golden_round_trip(path: Path) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\r\n") and b"\n" not in data.replace(b"\r\n", b"")
    assert bytes(SessionDescription.parse(data)) == data


def test_golden_fixtures_present() -> None:
    assert len(OFFERS) >= 7 and len(ANSWERS) >= 5


def test_parse_model() -> None:
    offer = SessionDescription.parse(golden("audio-video.sdp"))
    assert offer.origin == sdp.Origin("bob", 3724394400, 3724394405, "IN", "IP4", "198.51.100.7")
    assert offer.connection == sdp.Connection("IN", "IP4", "198.51.100.7")
    assert offer.bandwidths == ("AS:2048",)
    assert offer.timings == (sdp.Timing(0, 0),)
    assert offer.attributes == (sdp.Attribute("sendrecv"),)
    audio, video = offer.media
    assert (audio.media, audio.port, audio.proto, audio.formats) == (
        "audio",
        49170,
        "RTP/AVP",
        ("0", "8", "96"),
    )
    assert audio.connections == (sdp.Connection("IN", "IP4", "198.51.100.8"),)
    assert audio.rtpmap(96) == sdp.RtpMap(96, "telephone-event", 8000)
    assert video.rtpmap(99) == sdp.RtpMap(99, "H264", 90000)
    assert video.fmtp(99) == "profile-level-id=42e01f;packetization-mode=1"
    assert video.bandwidths == ("AS:1920",)


def test_static_payload_types_need_no_rtpmap() -> None:
    offer = SessionDescription.parse(golden("hold-rfc2543.sdp"))
    assert offer.media[0].rtpmap(0) == sdp.RtpMap(0, "PCMU", 8000)
    assert offer.media[0].rtpmap(8) == sdp.RtpMap(8, "PCMA", 8000)
    assert offer.media[0].rtpmap(18) is None


def test_media_helpers() -> None:
    offer = SessionDescription.parse(golden("linphone.sdp"))
    audio = offer.media[0]
    assert audio.rtpmap(96) == sdp.RtpMap(96, "opus", 48000, 2)
    assert audio.fmtp(96) == "useinbandfec=1"
    assert audio.fmtp(0) is None
    assert audio.ptime_ms is None
    assert audio.direction is None
    hold = SessionDescription.parse(golden("hold-sendonly.sdp")).media[0]
    assert hold.ptime_ms == 30 and hold.direction is Direction.SENDONLY


def test_lf_only_input_is_accepted_and_written_with_crlf() -> None:
    data = golden("sipp-pcma.sdp")
    parsed = SessionDescription.parse(data.replace(b"\r\n", b"\n"))
    assert bytes(parsed) == data


def test_str_input_and_missing_final_line_end() -> None:
    data = golden("sipp-pcma.sdp")
    assert bytes(SessionDescription.parse(data.decode().rstrip("\r\n"))) == data


def test_unknown_lines_and_attributes_round_trip() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"a=X-custom:hello world\r\ny=unknown session line\r\n"
        b"m=audio 5000 RTP/AVP 0\r\na=x-flag\r\ny=unknown media line\r\n"
    )
    parsed = SessionDescription.parse(data)
    assert parsed.extra_lines == (("y", "unknown session line"),)
    assert parsed.media[0].extra_lines == (("y", "unknown media line"),)
    assert parsed.media[0].attributes == (sdp.Attribute("x-flag"),)
    assert bytes(parsed) == data


def test_field_order_is_canonicalised() -> None:
    # c= after t= (seen in the wild) is accepted and written in RFC 8866 §5 order.
    data = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nc=IN IP4 10.0.0.1\r\n"
    assert bytes(SessionDescription.parse(data)) == (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
    )


def test_full_session_section_round_trips() -> None:
    data = (
        b"v=0\r\no=jdoe 2890844526 2890842807 IN IP4 10.47.16.5\r\ns=SDP Seminar\r\n"
        b"i=A Seminar on the session description protocol\r\n"
        b"u=http://www.example.com/seminars/sdp.pdf\r\ne=j.doe@example.com (Jane Doe)\r\n"
        b"p=+1 617 555-6011\r\nc=IN IP4 224.2.17.12/127\r\nb=CT:128\r\n"
        b"t=2873397496 2873404696\r\nr=7d 1h 0 25h\r\nz=2882844526 -1h 2898848070 0\r\n"
        b"k=prompt\r\na=recvonly\r\nm=audio 49170 RTP/AVP 0\r\ni=voice\r\n"
        b"c=IN IP4 224.2.17.12/127\r\nb=AS:64\r\nk=prompt\r\n"
        b"m=video 51372/2 RTP/AVP 99\r\na=rtpmap:99 h263-1998/90000\r\n"
    )
    parsed = SessionDescription.parse(data)
    assert parsed.timings[0].repeats == ("7d 1h 0 25h",)
    assert parsed.connection is not None and parsed.connection.host == "224.2.17.12"
    assert parsed.media[1].port_count == 2
    assert bytes(parsed) == data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty SDP"),
        (b"o=- 1 1 IN IP4 1.2.3.4\r\nv=0\r\n", "must start with v="),
        (b"v=1\r\n", "unsupported SDP version"),
        (b"v=0\r\ns=-\r\n", "no o= line"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\n", "no s= line"),
        (b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "o= needs 6 fields"),
        (b"v=0\r\no=- x 1 IN IP4 1.2.3.4\r\ns=-\r\n", "sess-id is not a number"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\ns=again\r\n", "more than one s="),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4\r\n", "c= needs 3 fields"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nt=0\r\n", "t= needs start and stop"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nr=1d 1h 0\r\n", "r= without t="),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 5000 RTP/AVP\r\n",
            "at least one format",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n",
            "port out of range",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio x RTP/AVP 0\r\n",
            "port is not a number",
        ),
        (
            b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\ns=late\r\n",
            "s= is not allowed after m=",
        ),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nV=0\r\n", "not <type>=<value>"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na =x\r\n", "not <type>=<value>"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=a\x00b\r\n", "control character"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=\xff\r\n", "not UTF-8"),
        (b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\na=:x\r\n", "bad attribute name"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=message):
        SessionDescription.parse(data)


def test_bounds() -> None:
    head = b"v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\n"
    with pytest.raises(SdpError, match="larger than"):
        SessionDescription.parse(head + b"a=x\r\n" * 5000)
    with pytest.raises(SdpError, match="more than 256 lines"):
        SessionDescription.parse(head + b"a=x\r\n" * 300)
    with pytest.raises(SdpError, match="longer than 1024"):
        SessionDescription.parse(head + b"a=" + b"x" * 2000 + b"\r\n")
    with pytest.raises(SdpError, match="more than 16 media"):
        SessionDescription.parse(head + b"m=audio 0 RTP/AVP 0\r\n" * 17)
    small = Limits(max_lines=4)
    with pytest.raises(SdpError, match="more than 4 lines"):
        SessionDescription.parse(head + b"t=0 0\r\nc=IN IP4 1.2.3.4\r\n", limits=small)


# ---- answering (RFC 3264 §6) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("offer", "kwargs"),
    [
        ("sipp-pcma", {}),
        ("linphone", {}),
        ("baresip", {"local_address": "2001:db8::10"}),
        ("hold-sendonly", {}),
        ("audio-video", {}),
    ],
)
def test_golden_answers(offer: str, kwargs: dict[str, object]) -> None:
    result = answer_to(golden(f"{offer}.sdp"), **kwargs)
    assert bytes(result.answer) == golden(f"{offer}.answer.sdp")


def test_sipp_offer_result() -> None:
    result = answer_to(golden("sipp-pcma.sdp"))
    assert (result.remote_address, result.remote_port) == ("127.0.0.1", 6000)
    assert (result.codec, result.payload_type, result.clock_rate) == ("PCMA", 8, 8000)
    # RFC 4733: answer with the offered payload type; events limited to 0-15 (16 dropped).
    assert (result.dtmf_payload_type, result.dtmf_events) == (101, "0-11")
    assert result.ptime_ms == 20
    assert result.remote_direction is Direction.SENDRECV
    assert result.local_direction is Direction.SENDRECV
    assert str(result.local_direction) == "sendrecv"
    assert not result.on_hold


def test_offerer_preference_order_wins() -> None:
    # Linphone lists opus, G722, PCMU, PCMA: PCMU is the first one we support even though
    # we would prefer PCMA.
    result = answer_to(golden("linphone.sdp"), supported=("PCMA", "PCMU"))
    assert (result.codec, result.payload_type) == ("PCMU", 0)
    # telephone-event/48000 at 101 does not match the 8 kHz codec; 97 is the 8 kHz one.
    assert result.dtmf_payload_type == 97


def test_supported_limits_the_choice() -> None:
    result = answer_to(golden("baresip.sdp"), local_address="2001:db8::10", supported=("PCMA",))
    assert (result.codec, result.payload_type) == ("PCMA", 8)
    assert result.remote_address == "2001:db8::20"
    assert result.answer.origin.addrtype == "IP6"


def test_no_common_codec() -> None:
    with pytest.raises(NoCommonCodec, match="none of PCMU, PCMA offered"):
        answer_to(golden("g729-only.sdp"))


def test_no_common_codec_is_an_sdp_error() -> None:
    assert issubclass(NoCommonCodec, SdpError) and issubclass(SdpError, ValueError)


def test_offer_without_audio_is_an_error() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=video 5000 RTP/AVP 99\r\na=rtpmap:99 H264/90000\r\n"
    )
    with pytest.raises(SdpError, match="no audio stream") as info:
        answer_to(data)
    assert not isinstance(info.value, NoCommonCodec)


def test_offer_with_only_rejected_audio_is_an_error() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0\r\n"
    )
    with pytest.raises(SdpError, match="no audio stream"):
        answer_to(data)


def test_srtp_only_offer_is_not_acceptable() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/SAVP 0\r\n"
    )
    with pytest.raises(NoCommonCodec, match="RTP/SAVP not supported"):
        answer_to(data)


def test_missing_connection_is_an_error() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n"
    with pytest.raises(SdpError, match="no c= line"):
        answer_to(data)


def test_media_level_connection_overrides_session_level() -> None:
    result = answer_to(golden("audio-video.sdp"))
    assert (result.remote_address, result.remote_port) == ("198.51.100.8", 49170)


def test_extra_audio_stream_is_rejected_and_keeps_formats() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 8\r\nm=audio 5000 RTP/AVP 0 8\r\nm=audio 5002 RTP/AVP 8 0\r\n"
    )
    result = answer_to(data)
    ports = [(m.port, m.formats) for m in result.answer.media]
    assert ports == [(0, ("8",)), (20000, ("0",)), (0, ("8", "0"))]
    assert result.media_index == 1 and result.remote_port == 5000


@pytest.mark.parametrize(
    ("offered", "local", "answered", "on_hold"),
    [
        ("sendrecv", Direction.SENDRECV, Direction.SENDRECV, False),
        ("sendonly", Direction.SENDRECV, Direction.RECVONLY, True),
        ("recvonly", Direction.SENDRECV, Direction.SENDONLY, False),
        ("inactive", Direction.SENDRECV, Direction.INACTIVE, True),
        ("sendrecv", Direction.SENDONLY, Direction.SENDONLY, False),
        ("sendrecv", Direction.RECVONLY, Direction.RECVONLY, False),
        ("sendrecv", Direction.INACTIVE, Direction.INACTIVE, False),
        ("sendonly", Direction.SENDONLY, Direction.INACTIVE, True),
        ("recvonly", Direction.RECVONLY, Direction.INACTIVE, False),
    ],
)
def test_direction_rules(
    offered: str, local: Direction, answered: Direction, on_hold: bool
) -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 0\r\na=" + offered.encode() + b"\r\n"
    )
    result = answer_to(data, local_direction=local)
    assert result.remote_direction is Direction(offered)
    assert result.local_direction is answered
    assert result.answer.media[0].direction is answered
    assert result.on_hold is on_hold


def test_session_level_direction_applies_to_media() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"a=sendonly\r\nm=audio 5000 RTP/AVP 0\r\n"
    )
    result = answer_to(data)
    assert result.remote_direction is Direction.SENDONLY
    assert result.local_direction is Direction.RECVONLY


def test_rfc2543_hold() -> None:
    result = answer_to(golden("hold-rfc2543.sdp"))
    assert result.on_hold and result.remote_address == "0.0.0.0"
    assert result.remote_direction is Direction.SENDRECV
    assert result.dtmf_payload_type is None
    assert [m.formats for m in result.answer.media] == [("0",)]


def test_ptime_echoed() -> None:
    assert answer_to(golden("hold-sendonly.sdp")).ptime_ms == 30
    assert answer_to(golden("linphone.sdp")).ptime_ms == 20


@pytest.mark.parametrize(
    ("fmtp", "expected"),
    [
        (None, "0-15"),
        ("0-16", "0-15"),
        ("0-11,16", "0-11"),
        ("0-9", "0-9"),
        ("1,3,5-7", "1,3,5-7"),
        ("16", None),
        ("garbage", None),
        ("15-3", None),
    ],
)
def test_dtmf_events(fmtp: str | None, expected: str | None) -> None:
    lines = b"a=fmtp:101 " + fmtp.encode() + b"\r\n" if fmtp else b""
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n" + lines
    )
    result = answer_to(data)
    assert result.dtmf_events == expected
    assert result.dtmf_payload_type == (101 if expected else None)
    assert result.answer.media[0].formats == (("0", "101") if expected else ("0",))
    if expected:
        assert result.answer.media[0].fmtp(101) == expected


def test_dynamic_payload_type_for_pcmu() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 98\r\na=rtpmap:98 pcmu/8000\r\n"
    )
    result = answer_to(data)
    assert (result.codec, result.payload_type) == ("PCMU", 98)
    assert result.answer.media[0].attribute_values("rtpmap") == ["98 pcmu/8000"]


def test_answer_copies_offer_timing() -> None:
    data = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\n"
        b"t=3034423619 3042462419\r\nm=audio 5000 RTP/AVP 0\r\n"
    )
    assert answer_to(data).answer.timings == (sdp.Timing(3034423619, 3042462419),)


def test_bad_local_parameters() -> None:
    with pytest.raises(SdpError, match="local port"):
        answer_to(golden("sipp-pcma.sdp"), local_port=0)
    with pytest.raises(SdpError, match="username"):
        answer_to(golden("sipp-pcma.sdp"), username="two words")


# ---- re-INVITE (RFC 3264 §8) -----------------------------------------------------------------


def test_reinvite_with_incremented_version() -> None:
    first = answer_to(golden("linphone.sdp"), session_version=1)
    hold = answer_to(golden("hold-sendonly.sdp"), session_version=2)
    assert first.answer.origin.session_version == 1
    assert hold.answer.origin.session_version == 2
    assert hold.answer.origin.session_id == first.answer.origin.session_id


def test_renegotiate_increments_only_on_change() -> None:
    first = answer_to(golden("linphone.sdp"))
    same = renegotiate(first.answer, SessionDescription.parse(golden("linphone.sdp")))
    assert same.answer == first.answer  # "MUST be identical" when the version stays
    held = renegotiate(first.answer, SessionDescription.parse(golden("hold-sendonly.sdp")))
    assert held.answer.origin == sdp.Origin("switchhook", 42, 2, "IN", "IP4", "192.0.2.10")
    assert held.local_direction is Direction.RECVONLY and held.on_hold
    assert held.answer.media[0].port == 20000
    resumed = renegotiate(held.answer, SessionDescription.parse(golden("linphone.sdp")))
    assert resumed.answer.origin.session_version == 3
    assert resumed.local_direction is Direction.SENDRECV and not resumed.on_hold


# ---- offering (RFC 3264 §5, §7) --------------------------------------------------------------


def test_build_offer_bytes() -> None:
    offer = build_offer("192.0.2.10", 20000, session_id=7, session_version=1)
    assert bytes(offer) == (
        b"v=0\r\no=switchhook 7 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\n"
        b"t=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
    )
    assert SessionDescription.parse(bytes(offer)) == offer


def test_build_offer_options() -> None:
    offer = build_offer(
        "::1",
        4000,
        codecs=("pcma",),
        dtmf_payload_type=None,
        session_id=1,
        session_version=5,
        direction=Direction.SENDONLY,
        ptime_ms=40,
    )
    assert bytes(offer) == (
        b"v=0\r\no=switchhook 1 5 IN IP6 ::1\r\ns=-\r\nc=IN IP6 ::1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=ptime:40\r\na=sendonly\r\n"
    )
    with pytest.raises(SdpError, match="unknown codec"):
        build_offer("::1", 4000, codecs=("G729",), session_id=1, session_version=1)
    with pytest.raises(SdpError, match="not dynamic"):
        build_offer("::1", 4000, dtmf_payload_type=13, session_id=1, session_version=1)


def test_offer_answer_between_two_sides() -> None:
    offer = build_offer(
        "192.0.2.1",
        30000,
        codecs=("PCMA", "PCMU"),
        dtmf_payload_type=100,
        session_id=1,
        session_version=1,
    )
    answered = negotiate(
        offer, local_address="192.0.2.2", local_port=40000, session_id=9, session_version=1
    )
    assert (answered.codec, answered.remote_port, answered.dtmf_payload_type) == (
        "PCMA",
        30000,
        100,
    )
    result = process_answer(offer, answered.answer)
    assert (result.remote_address, result.remote_port) == ("192.0.2.2", 40000)
    assert (result.codec, result.payload_type, result.dtmf_payload_type) == ("PCMA", 8, 100)
    assert result.local_direction is Direction.SENDRECV
    assert result.remote_direction is Direction.SENDRECV
    assert not result.on_hold


def test_process_answer_rejections() -> None:
    offer = build_offer("192.0.2.1", 30000, session_id=1, session_version=1)
    rejected = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
        b"m=audio 0 RTP/AVP 0\r\n"
    )
    with pytest.raises(NoCommonCodec, match="rejected"):
        process_answer(offer, rejected)
    foreign = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    with pytest.raises(NoCommonCodec, match="none of the codecs"):
        process_answer(offer, foreign)
    two = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\n"
        b"m=audio 5000 RTP/AVP 0\r\nm=video 0 RTP/AVP 99\r\n"
    )
    with pytest.raises(SdpError, match="2 m-lines"):
        process_answer(offer, two)


def test_hostile_formats_and_attributes_only_raise_sdp_error() -> None:
    rng = random.Random(3)
    pieces = ["0", "8", "101", "\u00b2", "\u0668", "-1", "999", "abc", "+8", "8_0", "", "/", " "]
    attrs = [
        "rtpmap:{} PCMU/{}",
        "rtpmap:{} telephone-event/{}",
        "fmtp:{} {}-{}",
        "ptime:{}",
        "ptime:inf",
        "ptime:nan",
        "ptime:1e400",
        "sendonly",
        "rtpmap:{}",
        "fmtp:{}",
    ]
    for _ in range(3000):
        fmts = " ".join(rng.choice(pieces[:10]) or "0" for _ in range(rng.randrange(1, 4)))
        lines = [
            f"a={rng.choice(attrs).format(*(rng.choice(pieces) for _ in range(3)))}"
            for _ in range(rng.randrange(0, 5))
        ]
        text = (
            "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
            f"m=audio 5000 RTP/AVP {fmts}\r\n" + "".join(f"{line}\r\n" for line in lines)
        )
        try:
            offer = SessionDescription.parse(text)
            result = negotiate(
                offer, local_address="10.0.0.2", local_port=4000, session_id=1, session_version=1
            )
        except SdpError:
            continue
        assert SessionDescription.parse(bytes(result.answer)) == result.answer
