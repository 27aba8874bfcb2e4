"""URIs and name-addr values (RFC 3261 §19.1, §20.10, §25.1)."""

from __future__ import annotations

import pytest

from sipstack.uri import NameAddr, Uri, UriError, parse_params


@pytest.mark.parametrize(
    ("text", "user", "host", "port"),
    [
        ("sip:alice@atlanta.com", "alice", "atlanta.com", None),
        ("sip:alice:secretword@atlanta.com;transport=tcp", "alice", "atlanta.com", None),
        (
            "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
            "alice",
            "atlanta.com",
            None,
        ),
        ("sip:+1-212-555-1212:1234@gateway.com;user=phone", "+1-212-555-1212", "gateway.com", None),
        ("sip:alice@192.0.2.4:5070", "alice", "192.0.2.4", 5070),
        ("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", None, "atlanta.com", None),
        ("sip:alice;day=tuesday@atlanta.com", "alice;day=tuesday", "atlanta.com", None),
        ("sip:[2001:db8::10]:5060", None, "[2001:db8::10]", 5060),
    ],
)
def test_rfc3261_19_1_3_examples(text: str, user: str | None, host: str, port: int | None) -> None:
    uri = Uri.parse(text)
    assert (uri.user, uri.host, uri.port) == (user, host, port)
    assert str(uri) == text


def test_params_and_headers() -> None:
    uri = Uri.parse("sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com")
    assert uri.param("method") == "REGISTER" and uri.headers == "to=alice%40atlanta.com"
    assert Uri.parse("sip:a@b;LR").param("lr") == ""
    assert str(Uri.parse("sip:a@b").with_params(lr=None)) == "sip:a@b;lr"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("xmpp:alice@example.com", 416),
        ("nobodyKnowsThisScheme:totallyopaquecontent", 416),
        ('"Mr. J. User <sip', 400),
        ("<sip:a@b>", 400),
        ("sip:a@b c", 400),
        ("sip:a@", 400),
        ("sip:a@host:99999", 400),
        ("sip:@host", 400),
        ("sip:a@b;;lr", 400),
    ],
)
def test_bad_uris(text: str, status: int) -> None:
    with pytest.raises(UriError) as info:
        Uri.parse(text)
    assert info.value.status_code == status


def test_tel_uri() -> None:
    uri = Uri.parse("tel:+15551230000;phone-context=example.com")
    assert uri.scheme == "tel" and uri.user == "+15551230000"
    assert str(uri) == "tel:+15551230000;phone-context=example.com"


@pytest.mark.parametrize(
    ("text", "display", "tag"),
    [
        ('"Bob" <sip:bob@biloxi.com>;tag=a6c85cf', "Bob", "a6c85cf"),
        ("Bob <sip:bob@biloxi.com>;tag=a6c85cf", "Bob", "a6c85cf"),
        ("<sip:bob@biloxi.com>", None, None),
        ("sip:bob@biloxi.com;tag=x1", None, "x1"),  # addr-spec: ;tag belongs to the header
        ('"A \\"quoted\\" name" <sip:a@b>', 'A "quoted" name', None),
        ("caller<sip:caller@example.com>;tag=323", "caller", "323"),
    ],
)
def test_name_addr(text: str, display: str | None, tag: str | None) -> None:
    addr = NameAddr.parse(text)
    assert addr.display_name == display and addr.tag == tag
    assert NameAddr.parse(str(addr)) == addr


@pytest.mark.parametrize(
    "text",
    [
        "Bell, Alexander <sip:a.g.bell@example.com>",  # RFC 4475 baddn
        '"Watson, Thomas" < sip:t.watson@example.org >',  # badaspec
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # regbadct
        '"Joe" <sip:joe@example.org>;;;;',  # badinv01
        '"unterminated <sip:a@b>',
        "<sip:a@b",
    ],
)
def test_bad_name_addr(text: str) -> None:
    with pytest.raises(UriError) as info:
        NameAddr.parse(text)
    assert info.value.status_code == 400


def test_with_tag_and_params_order() -> None:
    addr = NameAddr.parse("<sip:a@b>;x=1;y")
    assert str(addr.with_tag("t")) == "<sip:a@b>;x=1;y;tag=t"
    assert parse_params(";a=1; B = 2 ;c") == (("a", "1"), ("b", "2"), ("c", None))
