"""Reserved caller data from the initial INVITE's headers (and RFC 7433 User-to-User)."""

from __future__ import annotations

import binascii

import pytest

from ivr.flows.profile import CallerProfile, ProfileConfig, parse_bool, parse_profile


@pytest.mark.parametrize(
    ("header", "flag"),
    [
        ("X-Reserved-Verified-Customer", "verified_customer"),
        ("X-Reserved-Bad-Actor", "bad_actor"),
        ("X-Reserved-Repeat-Customer", "repeat_customer"),
    ],
)
@pytest.mark.parametrize("value", ["true", "TRUE", "Yes", "1", " yes "])
def test_each_reserved_header_sets_its_flag(header: str, flag: str, value: str) -> None:
    profile, warnings = parse_profile({header.lower(): [value]})
    assert profile.get(flag) is True
    assert warnings == []
    others = {"verified_customer", "bad_actor", "repeat_customer"} - {flag}
    assert not any(profile.get(name) for name in others)


@pytest.mark.parametrize("value", ["false", "No", "0", "FALSE"])
def test_false_values(value: str) -> None:
    profile, warnings = parse_profile({"X-RESERVED-BAD-ACTOR": [value]})
    assert profile.bad_actor is False and warnings == []


def test_invalid_value_is_ignored_with_a_warning() -> None:
    profile, warnings = parse_profile(
        {"X-Reserved-Bad-Actor": ["maybe"], "X-Reserved-Verified-Customer": ["yes"]}
    )
    assert profile == CallerProfile(verified_customer=True)
    assert warnings == [
        "X-Reserved-Bad-Actor: invalid value 'maybe' ignored (expected true/false/yes/no/1/0)"
    ]


def test_repeated_header_uses_the_first_value() -> None:
    profile, warnings = parse_profile({"X-Reserved-Repeat-Customer": ["1", "0"]})
    assert profile.repeat_customer is True
    assert warnings == [
        "X-Reserved-Repeat-Customer: repeated with different values; using the first"
    ]


def test_configured_extra_headers() -> None:
    config = ProfileConfig(headers={"X-Account-Tier": "tier", "X-Carrier-Vip": "verified_customer"})
    profile, warnings = parse_profile(
        {"x-account-tier": [" gold "], "X-Carrier-VIP": ["yes"]}, config
    )
    assert profile.extra == {"tier": "gold"}
    assert profile.verified_customer is True
    assert profile.get("tier") == "gold" and profile.get("unset") == ""
    assert warnings == []
    assert config.fields == frozenset({"verified_customer", "bad_actor", "repeat_customer", "tier"})


def test_extra_value_with_control_characters_is_ignored() -> None:
    config = ProfileConfig(headers={"X-Tier": "tier"})
    profile, warnings = parse_profile({"X-Tier": ["go\x00ld"]}, config)
    assert profile.extra == {} and warnings == ["X-Tier: value with control characters ignored"]


def test_profile_config_is_validated() -> None:
    with pytest.raises(ValueError, match="reserved header"):
        ProfileConfig(headers={"X-Reserved-Bad-Actor": "other"})
    with pytest.raises(ValueError):
        ProfileConfig(headers={"X-Tier": "Not A Field"})
    with pytest.raises(ValueError):
        ProfileConfig.model_validate({"header": {}})


def _hex(text: bytes) -> str:
    return binascii.hexlify(text).decode()


@pytest.mark.parametrize(
    "value",
    [
        _hex(b"repeat_customer=1;tier=gold") + ";encoding=hex",
        _hex(b"repeat_customer=1&tier=gold") + ";encoding=hex;purpose=isdn-uui",
        _hex(b"\x04repeat_customer=1&tier=gold"),  # ISDN IA5 protocol discriminator, no param
        "repeat_customer=1&tier=gold",
        "repeat_customer=1;tier=gold;purpose=call-center",
        '"repeat-customer=yes&Tier=gold"',
    ],
)
def test_user_to_user_forms(value: str) -> None:
    config = ProfileConfig(headers={"X-Tier": "tier"})
    profile, warnings = parse_profile({"User-to-User": [value]}, config)
    assert (profile.repeat_customer, dict(profile.extra), warnings) == (True, {"tier": "gold"}, [])


def test_dedicated_header_wins_over_user_to_user() -> None:
    profile, _ = parse_profile(
        {
            "X-Reserved-Bad-Actor": ["no"],
            "User-to-User": ["bad_actor=yes&verified_customer=yes&unknown=1"],
        }
    )
    assert profile == CallerProfile(verified_customer=True)


@pytest.mark.parametrize(
    ("value", "warning"),
    [
        ("zz;encoding=hex", "User-to-User: data is not valid hex; ignored"),
        ("abcd;encoding=base64", "User-to-User: unsupported encoding 'base64' ignored"),
        (_hex(b"\xff\xfe"), "User-to-User: hex data is not UTF-8 text; ignored"),
        (
            "bad_actor=perhaps",
            "User-to-User bad_actor: invalid value 'perhaps' ignored "
            "(expected true/false/yes/no/1/0)",
        ),
        ("bad_actor", "User-to-User: item 'bad_actor' is not key=value"),
    ],
)
def test_user_to_user_problems_are_warnings(value: str, warning: str) -> None:
    profile, warnings = parse_profile({"User-to-User": [value]})
    assert profile == CallerProfile()
    assert warnings == [warning]


def test_user_to_user_can_be_disabled() -> None:
    profile, warnings = parse_profile(
        {"User-to-User": ["bad_actor=1"]}, ProfileConfig(user_to_user=False)
    )
    assert profile == CallerProfile() and warnings == []


def test_parse_bool() -> None:
    assert [parse_bool(v) for v in ("Yes", "0", "", "2")] == [True, False, None, None]


def test_overlong_values_are_ignored() -> None:
    profile, warnings = parse_profile({"X-Reserved-Bad-Actor": ["1" * 300]})
    assert profile == CallerProfile()
    assert warnings == ["X-Reserved-Bad-Actor: value longer than 256 characters ignored"]
