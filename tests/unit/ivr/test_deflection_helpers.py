"""Pure helpers of the deflection/voicemail engine side: URI headers for 302/REFER
(RFC 3261 §19.1.1), withheld caller detection (RFC 3323/3325), callback number validation,
prompt language choice, NOTIFY sipfrag status (RFC 3515)."""

from __future__ import annotations

import pytest

from ivr.deflection import redirect_uri, sipfrag_status
from ivr.messages import DEFAULT_TEXTS, pick_language
from ivr.voicemail import caller_withheld, valid_callback_number
from sipstack.message import Request, parse_message


def invite(from_header: str, *extra: str) -> Request:
    lines = [
        "INVITE sip:100@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1",
        f"From: {from_header};tag=1",
        "To: <sip:100@127.0.0.1>",
        "Call-ID: c1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    message = parse_message("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


def test_redirect_uri_escapes_header_values() -> None:
    assert redirect_uri(
        "sip:night@192.0.2.1", [("X-Origin", "night desk"), ("X-Acct", "A&B=1"), ("X-N", "+331")]
    ) == ("sip:night@192.0.2.1?X-Origin=night%20desk&X-Acct=A%26B%3D1&X-N=+331")


def test_redirect_uri_without_headers_and_with_existing_ones() -> None:
    assert redirect_uri("sip:a@b", []) == "sip:a@b"
    assert redirect_uri("sip:a@b?X-A=1", [("X-B", "2")]) == "sip:a@b?X-A=1&X-B=2"


def test_redirect_uri_never_lets_a_delimiter_through() -> None:
    uri = redirect_uri("sip:a@b", [("X-A", '<x>;y,"z"')])
    assert not set(uri.split("?", 1)[1]) & set('<>;,"')


@pytest.mark.parametrize(
    ("from_header", "extra", "withheld"),
    [
        ("<sip:anonymous@anonymous.invalid>", (), True),
        ('"Anonymous" <sip:+15550001111@192.0.2.1>', (), True),
        ("<sip:+15550001111@192.0.2.1>", ("Privacy: id",), True),
        ("<sip:+15550001111@192.0.2.1>", ("Privacy: header;user",), True),
        ("<sip:restricted@192.0.2.1>", (), True),
        ("<sip:+15550001111@192.0.2.1>", (), False),
        ('"Alice" <sip:+15550001111@192.0.2.1>', ("Privacy: none",), False),
    ],
)
def test_caller_withheld(from_header: str, extra: tuple[str, ...], withheld: bool) -> None:
    assert caller_withheld(invite(from_header, *extra)) is withheld


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("0612345678", True),
        ("33123456789", True),
        ("123456", True),
        ("12345", False),
        ("1234567890123456", False),
        ("", False),
        ("12345*6", False),
    ],
)
def test_callback_number_validation(digits: str, valid: bool) -> None:
    assert valid_callback_number(digits) is valid


def test_pick_language_prefers_exact_then_primary_then_english() -> None:
    messages = {"en": "hello", "fr": "bonjour", "pt-BR": "olá"}
    assert pick_language(messages, "fr") == ("fr", "bonjour")
    assert pick_language(messages, "fr-CA") == ("fr", "bonjour")
    assert pick_language(messages, "pt") == ("pt-BR", "olá")
    assert pick_language(messages, "de") == ("en", "hello")
    assert pick_language({"de": "hallo"}, "fr") == ("de", "hallo")


def test_every_built_in_message_has_english() -> None:
    assert all("en" in texts for texts in DEFAULT_TEXTS.values())


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"SIP/2.0 200 OK\r\n", 200),
        (b"SIP/2.0 100 Trying", 100),
        (b"SIP/2.0 486 Busy", 486),
        (b"", None),
        (b"garbage", None),
    ],
)
def test_sipfrag_status(body: bytes, status: int | None) -> None:
    assert sipfrag_status(body) == status
