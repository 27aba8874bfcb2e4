"""Trunk admission: source ACLs, digest auth (RFC 8760), and their combinations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ivr.admission import Admitted, Challenge, Forbidden, TrunkAdmission
from ivr.config import Settings
from ivr.yamlloc import validate
from sipstack.auth import build_authorization, ha1
from sipstack.message import Request


def settings_with(trunks: list[dict[str, Any]], tmp_path: Path) -> Settings:
    from ivr.yamlloc import LocatedDocument

    document = LocatedDocument(
        file=str(tmp_path / "t.yaml"), data={"trunks": trunks}, value_locations={}, key_locations={}
    )
    return validate(document, Settings, context={"base_dir": tmp_path})


def invite(authorization: str | None = None) -> Request:
    request = Request(method="INVITE", uri="sip:100@127.0.0.1")
    for name, value in (
        ("Via", "SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK1"),
        ("From", "<sip:a@203.0.113.5>;tag=1"),
        ("To", "<sip:100@127.0.0.1>"),
        ("Call-ID", "c1"),
        ("CSeq", "1 INVITE"),
    ):
        request.headers.add(name, value)
    if authorization:
        request.headers.add("Authorization", authorization)
    return request


def answer(
    challenge: Challenge, password: str, *, algorithm: str = "SHA-256", username: str = "pbx1"
) -> str:
    value = next(v for v in challenge.www_authenticate if f"algorithm={algorithm}" in v)
    return build_authorization(
        value,
        method="INVITE",
        uri="sip:100@127.0.0.1",
        username=username,
        password=password,
        cnonce="abc123",
    )


def admission(tmp_path: Path, trunks: list[dict[str, Any]]) -> TrunkAdmission:
    return TrunkAdmission(settings_with(trunks, tmp_path).trunks, secret=b"k" * 32)


def test_source_trunk_admits_inside_cidr_and_forbids_outside(tmp_path: Path) -> None:
    adm = admission(tmp_path, [{"name": "carrier", "sources": ["203.0.113.0/24", "2001:db8::/32"]}])
    assert adm.admit(invite(), "203.0.113.5", 0.0) == Admitted("carrier")
    assert adm.admit(invite(), "2001:db8::7", 0.0) == Admitted("carrier")
    assert adm.admit(invite(), "::ffff:203.0.113.9", 0.0) == Admitted("carrier")
    refused = adm.admit(invite(), "198.51.100.1", 0.0)
    assert isinstance(refused, Forbidden) and "198.51.100.1" in refused.reason
    assert isinstance(adm.admit(invite(), "not-an-ip", 0.0), Forbidden)


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_auth_trunk_challenges_then_admits(tmp_path: Path, algorithm: str) -> None:
    adm = admission(tmp_path, [{"name": "pbx", "auth": {"username": "pbx1", "password": "pw"}}])
    first = adm.admit(invite(), "198.51.100.1", 100.0)
    assert isinstance(first, Challenge)
    # RFC 8760 §2.4: SHA-256 listed before MD5.
    assert "SHA-256" in first.www_authenticate[0] and "MD5" in first.www_authenticate[1]
    second = adm.admit(invite(answer(first, "pw", algorithm=algorithm)), "198.51.100.1", 101.0)
    assert second == Admitted("pbx", "pbx1")


def test_wrong_password_and_unknown_user_are_forbidden(tmp_path: Path) -> None:
    adm = admission(tmp_path, [{"name": "pbx", "auth": {"username": "pbx1", "password": "pw"}}])
    challenge = adm.admit(invite(), "198.51.100.1", 0.0)
    assert isinstance(challenge, Challenge)
    wrong = adm.admit(invite(answer(challenge, "nope")), "198.51.100.1", 1.0)
    assert isinstance(wrong, Forbidden)
    stranger = adm.admit(invite(answer(challenge, "pw", username="eve")), "198.51.100.1", 1.0)
    assert isinstance(stranger, Forbidden)
    garbage = adm.admit(invite('Digest ,,,="unterminated'), "198.51.100.1", 1.0)
    assert isinstance(garbage, Forbidden)


def test_expired_nonce_is_rechallenged_as_stale(tmp_path: Path) -> None:
    adm = admission(tmp_path, [{"name": "pbx", "auth": {"username": "pbx1", "password": "pw"}}])
    challenge = adm.admit(invite(), "198.51.100.1", 0.0)
    assert isinstance(challenge, Challenge)
    late = adm.admit(invite(answer(challenge, "pw")), "198.51.100.1", 10_000.0)
    assert isinstance(late, Challenge)
    assert all("stale=true" in v.lower() for v in late.www_authenticate)


def test_source_and_auth_needs_both(tmp_path: Path) -> None:
    adm = admission(
        tmp_path,
        [
            {
                "name": "pbx",
                "sources": ["203.0.113.0/24"],
                "auth": {"username": "pbx1", "password": "pw"},
            }
        ],
    )
    outside = adm.admit(invite(), "198.51.100.1", 0.0)
    assert isinstance(outside, Forbidden), "wrong source is refused before any challenge"
    challenge = adm.admit(invite(), "203.0.113.5", 0.0)
    assert isinstance(challenge, Challenge)
    assert adm.admit(invite(answer(challenge, "pw")), "203.0.113.5", 1.0) == Admitted("pbx", "pbx1")


def test_source_or_auth_admits_either(tmp_path: Path) -> None:
    adm = admission(
        tmp_path,
        [
            {
                "name": "pbx",
                "sources": ["203.0.113.0/24"],
                "require": "source_or_auth",
                "auth": {"username": "pbx1", "password": "pw"},
            }
        ],
    )
    assert adm.admit(invite(), "203.0.113.5", 0.0) == Admitted("pbx")
    challenge = adm.admit(invite(), "198.51.100.1", 0.0)
    assert isinstance(challenge, Challenge)
    assert adm.admit(invite(answer(challenge, "pw")), "198.51.100.1", 1.0) == Admitted(
        "pbx", "pbx1"
    )


def test_stored_ha1_instead_of_password(tmp_path: Path) -> None:
    digest = ha1("pbx1", "switchhook", "pw", "MD5")
    adm = admission(tmp_path, [{"name": "pbx", "auth": {"username": "pbx1", "ha1": digest}}])
    challenge = adm.admit(invite(), "198.51.100.1", 0.0)
    assert isinstance(challenge, Challenge)
    assert len(challenge.www_authenticate) == 1, "an MD5 HA1 can only answer MD5"
    assert adm.admit(
        invite(answer(challenge, "pw", algorithm="MD5")), "198.51.100.1", 1.0
    ) == Admitted("pbx", "pbx1")


def test_source_trunk_listed_after_auth_trunk_still_admits_by_source(tmp_path: Path) -> None:
    adm = admission(
        tmp_path,
        [
            {"name": "pbx", "auth": {"username": "pbx1", "password": "pw"}},
            {"name": "carrier", "sources": ["203.0.113.0/24"]},
        ],
    )
    assert adm.admit(invite(), "203.0.113.5", 0.0) == Admitted("carrier")
    assert isinstance(adm.admit(invite(), "198.51.100.1", 0.0), Challenge)
