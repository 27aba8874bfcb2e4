"""Tests for sipstack.auth: digest authentication (RFC 3261 §22, RFC 7616, RFC 8760)."""

from __future__ import annotations

import base64
import random

import pytest

from sipstack.auth import (
    AuthError,
    AuthResultKind,
    DigestChallenge,
    DigestCredentials,
    DigestServer,
    build_authorization,
    digest_response,
    ha1,
    parse_auth_params,
    parse_challenge,
    parse_credentials,
    select_challenge,
)

SECRET = b"0123456789abcdef-test-secret"
REALM = "switchhook.example"
PASSWORDS = {"alice": "s3cret", "bob": "hunter2"}


def fixed_random(seed: int = 1) -> random.Random:
    return random.Random(seed)


def server(**kwargs: object) -> DigestServer:
    rng = fixed_random()
    params: dict[str, object] = {"random_bytes": rng.randbytes}
    params.update(kwargs)
    return DigestServer(REALM, SECRET, **params)  # type: ignore[arg-type]


def answer(
    challenge: str,
    *,
    user: str = "alice",
    password: str | None = None,
    method: str = "INVITE",
    nc: int = 1,
    cnonce: str = "0a4f113b",
) -> str:
    return build_authorization(
        challenge,
        method=method,
        uri="sip:+15550001111@switchhook.example",
        username=user,
        password=PASSWORDS[user] if password is None else password,
        cnonce=cnonce,
        nc=nc,
    )


def verify(
    srv: DigestServer, credentials: str, *, now: float = 1000.0, method: str = "INVITE"
) -> AuthResultKind:
    return srv.verify(credentials, method=method, now=now, lookup_password=PASSWORDS.get).kind


# ---- RFC test vectors ---------------------------------------------------------------------

RFC7616_CHALLENGE = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={alg}, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "response"),
    [
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ],
)
def test_rfc7616_section_3_9_1(algorithm: str, response: str) -> None:
    value = build_authorization(
        RFC7616_CHALLENGE.format(alg=algorithm),
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle of Life",
        cnonce=RFC7616_CNONCE,
    )
    assert value == (
        f'Digest username="Mufasa", realm="http-auth@example.org", uri="/dir/index.html", '
        f'algorithm={algorithm}, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
        f'nc=00000001, cnonce="{RFC7616_CNONCE}", qop=auth, response="{response}", '
        f'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
    )
    secret = ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    assert (
        digest_response(
            algorithm=algorithm,
            ha1=secret,
            nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            method="GET",
            uri="/dir/index.html",
            qop="auth",
            nc="00000001",
            cnonce=RFC7616_CNONCE,
        )
        == response
    )


def test_rfc2617_section_3_5() -> None:
    # RFC 2617 §3.5 (no algorithm: MD5; qop="auth,auth-int": auth chosen).
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = build_authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password="Circle Of Life",
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert ha1("Mufasa", "testrealm@host.com", "Circle Of Life") == (
        "939e7578ed9e3c518a452acee763bce9"
    )


def test_rfc2069_compatibility_without_qop() -> None:
    # RFC 2617 §3.2.2.1: without qop, response = KD(HA1, nonce ":" HA2); no nc/cnonce sent.
    value = build_authorization(
        'Digest realm="r", nonce="n"',
        method="REGISTER",
        uri="sip:r",
        username="u",
        password="p",
        cnonce="c",
    )
    expected = digest_response(
        algorithm="MD5", ha1=ha1("u", "r", "p"), nonce="n", method="REGISTER", uri="sip:r", qop=None
    )
    assert value == (
        f'Digest username="u", realm="r", uri="sip:r", algorithm=MD5, '
        f'nonce="n", response="{expected}"'
    )


def test_auth_int_hashes_the_body() -> None:
    challenge = 'Digest realm="r", nonce="n", qop="auth-int", algorithm=SHA-256'
    one = build_authorization(
        challenge,
        method="INVITE",
        uri="sip:r",
        username="u",
        password="p",
        cnonce="c",
        body=b"v=0\r\n",
    )
    two = build_authorization(
        challenge,
        method="INVITE",
        uri="sip:r",
        username="u",
        password="p",
        cnonce="c",
        body=b"v=1\r\n",
    )
    assert "qop=auth-int" in one and one != two


def test_sess_and_userhash() -> None:
    challenge = 'Digest realm="r", nonce="n", qop="auth", algorithm=SHA-256-sess, userhash=true'
    value = build_authorization(
        challenge, method="INVITE", uri="sip:r", username="u", password="p", cnonce="c"
    )
    creds = DigestCredentials.parse(value)
    assert creds.algorithm == "SHA-256-sess" and creds.userhash
    assert creds.username != "u" and len(creds.username) == 64
    base = ha1("u", "r", "p", "SHA-256")
    assert creds.response == digest_response(
        algorithm="SHA-256-sess",
        ha1=base,
        nonce="n",
        method="INVITE",
        uri="sip:r",
        qop="auth",
        nc="00000001",
        cnonce="c",
    )


# ---- parsing ------------------------------------------------------------------------------


def test_parse_challenge() -> None:
    challenge = parse_challenge(RFC7616_CHALLENGE.format(alg="sha-256") + ", stale=TRUE")
    assert challenge == DigestChallenge(
        realm="http-auth@example.org",
        nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        algorithm="SHA-256",
        qop=("auth", "auth-int"),
        opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS",
        stale=True,
    )


def test_quoted_string_escapes() -> None:
    scheme, params = parse_auth_params(
        'digest  Realm = "a \\"quoted\\" realm\\\\x" ,, nonce=abc/+=,qop="auth"'
    )
    assert scheme == "digest"
    assert params == {"realm": 'a "quoted" realm\\x', "nonce": "abc/+=", "qop": "auth"}


def test_quoting_round_trip_for_hostile_values() -> None:
    challenge = 'Digest realm="we \\"love\\" \\\\ slashes", nonce="n", qop="auth"'
    value = build_authorization(
        challenge, method="INVITE", uri="sip:x", username='a"b\\c', password="p", cnonce="c"
    )
    creds = DigestCredentials.parse(value)
    assert creds.username == 'a"b\\c' and creds.realm == 'we "love" \\ slashes'


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest",
        'Basic realm="x"',
        'Digest realm="unterminated',
        'Digest realm="x" nonce="y"',
        "Digest realm=",
        'Digest realm="x", realm="y"',
        "Digest =x",
        'Digest realm="a\r\nb"',
        'Digest realm="a\x00"',
        'Digest, realm="x"',
        "Digest " + ", ".join(f"p{i}=v" for i in range(40)),
        'Digest realm="' + "x" * 5000 + '"',
        'Digest realm="x", nonce="y", algorithm=SHA-1',
        'Digest realm="x", nonce="y", algorithm="\\',
    ],
)
def test_garbage_challenge_raises_auth_error_only(value: str) -> None:
    with pytest.raises(AuthError):
        parse_challenge(value)


def test_random_garbage_never_escapes_as_other_errors() -> None:
    rng = fixed_random(7)
    alphabet = 'Digest realm=nonce,"\\ \t\r\n\x00\xff=-/+abc'
    srv = server()
    for _ in range(2000):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 80)))
        try:
            parse_challenge(value)
        except AuthError:
            pass
        assert parse_credentials(value) is None or isinstance(parse_credentials(value), dict)
        kind = srv.verify(value, method="INVITE", now=0.0, lookup_password=PASSWORDS.get).kind
        assert kind in (AuthResultKind.MALFORMED, AuthResultKind.INVALID)


def test_parse_credentials_for_routing() -> None:
    parsed = parse_credentials('Digest username="alice", realm="r", nonce="n"')
    assert parsed is not None and parsed["username"] == "alice" and parsed.get("realm") == "r"
    assert parse_credentials("garbage here") is None
    assert parse_credentials('Basic realm="x"') is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('Digest username="a", realm="r", nonce="n", uri="u"', "without response"),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth',
            "without nc and cnonce",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, '
            'nc=1, cnonce="c"',
            "8 hex digits",
        ),
        (
            'Digest username="a", realm="r", nonce="n", uri="u", response="x", qop=auth, '
            'nc=0000000g, cnonce="c"',
            "8 hex digits",
        ),
    ],
)
def test_malformed_credentials(value: str, message: str) -> None:
    with pytest.raises(AuthError, match=message):
        DigestCredentials.parse(value)


def test_select_challenge_takes_topmost_supported() -> None:
    values = [
        'Digest realm="r", nonce="n", algorithm=SHA-512-256',
        'Digest realm="r", nonce="n", algorithm=SHA-256',
        'Digest realm="r", nonce="n", algorithm=MD5',
    ]
    assert select_challenge(values) == values[1]
    with pytest.raises(AuthError):
        select_challenge(values[:1])


# ---- server -------------------------------------------------------------------------------


def test_challenge_values() -> None:
    values = server().challenge(1000.0)
    assert len(values) == 2
    sha, md5 = (parse_challenge(v) for v in values)
    assert (sha.algorithm, md5.algorithm) == ("SHA-256", "MD5")
    assert sha.realm == REALM and sha.qop == ("auth",) and not sha.stale
    assert values[0] == (
        f'Digest realm="{REALM}", nonce="{sha.nonce}", algorithm=SHA-256, qop="auth"'
    )
    assert len(base64.b64decode(sha.nonce)) == 48
    stale = server().challenge(1000.0, stale=True)
    assert all(v.endswith(", stale=true") for v in stale)


def test_challenge_order_is_strongest_first_whatever_the_configuration() -> None:
    values = server(algorithms=("MD5", "SHA-256")).challenge(0.0)
    assert [parse_challenge(v).algorithm for v in values] == ["SHA-256", "MD5"]
    only_md5 = server(algorithms=("MD5",)).challenge(0.0)
    assert [parse_challenge(v).algorithm for v in only_md5] == ["MD5"]


def test_nonces_differ_per_challenge() -> None:
    srv = server()
    first = parse_challenge(srv.challenge(1000.0)[0]).nonce
    second = parse_challenge(srv.challenge(1000.0)[0]).nonce
    assert first != second


@pytest.mark.parametrize("index", [0, 1], ids=["SHA-256", "MD5"])
def test_round_trip_ok(index: int) -> None:
    srv = server()
    challenge = srv.challenge(1000.0)[index]
    result = srv.verify(
        answer(challenge), method="INVITE", now=1001.0, lookup_password=PASSWORDS.get
    )
    assert result.kind is AuthResultKind.OK and result.username == "alice" and result.ok


@pytest.mark.parametrize("algorithm", ["SHA-256", "MD5"])
def test_round_trip_with_stored_ha1(algorithm: str) -> None:
    srv = server()
    challenge = select_challenge(
        [v for v in srv.challenge(1000.0) if parse_challenge(v).algorithm == algorithm]
    )
    stored = {("bob", REALM, algorithm): ha1("bob", REALM, "hunter2", algorithm).upper()}
    calls: list[tuple[str, str, str]] = []

    def lookup(user: str, realm: str, alg: str) -> str | None:
        calls.append((user, realm, alg))
        return stored.get((user, realm, alg))

    result = srv.verify(
        answer(challenge, user="bob"), method="INVITE", now=1000.0, lookup_ha1=lookup
    )
    assert result.kind is AuthResultKind.OK and result.username == "bob"
    assert calls == [("bob", REALM, algorithm)]


def test_wrong_password_is_invalid() -> None:
    srv = server()
    challenge = srv.challenge(1000.0)[0]
    assert verify(srv, answer(challenge, password="wrong")) is AuthResultKind.INVALID


def test_unknown_user_is_invalid() -> None:
    srv = server()
    creds = build_authorization(
        srv.challenge(1000.0)[0],
        method="INVITE",
        uri="sip:x",
        username="mallory",
        password="x",
        cnonce="c",
    )
    result = srv.verify(creds, method="INVITE", now=1000.0, lookup_password=PASSWORDS.get)
    assert result.kind is AuthResultKind.INVALID and result.reason == "unknown user"


def test_wrong_method_is_invalid() -> None:
    srv = server()
    creds = answer(srv.challenge(1000.0)[0], method="REGISTER")
    assert verify(srv, creds, method="INVITE") is AuthResultKind.INVALID


def test_other_realm_is_invalid() -> None:
    srv = server()
    nonce = parse_challenge(srv.challenge(1000.0)[0]).nonce
    challenge = f'Digest realm="elsewhere", nonce="{nonce}", qop="auth", algorithm=SHA-256'
    assert verify(srv, answer(challenge)) is AuthResultKind.INVALID


def test_nonce_from_another_realm_or_secret_is_invalid() -> None:
    other_realm = DigestServer("other.example", SECRET, random_bytes=fixed_random().randbytes)
    other_secret = DigestServer(
        REALM, b"another-secret-of-16+", random_bytes=fixed_random().randbytes
    )
    srv = server()
    for foreign in (other_realm, other_secret):
        nonce = parse_challenge(foreign.challenge(1000.0)[0]).nonce
        challenge = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=SHA-256'
        result = srv.verify(
            answer(challenge), method="INVITE", now=1000.0, lookup_password=PASSWORDS.get
        )
        assert result.kind is AuthResultKind.INVALID
        assert result.reason == "nonce not issued by us"


@pytest.mark.parametrize("position", [0, 10, 20, 40, 63])
def test_tampered_nonce_is_invalid(position: int) -> None:
    srv = server()
    challenge = srv.challenge(1000.0)[0]
    nonce = parse_challenge(challenge).nonce
    flipped = "A" if nonce[position] != "A" else "B"
    tampered = challenge.replace(nonce, nonce[:position] + flipped + nonce[position + 1 :])
    assert verify(srv, answer(tampered)) is AuthResultKind.INVALID


def test_made_up_nonces_are_invalid() -> None:
    srv = server()
    for nonce in ("abc", "*" * 64, base64.b64encode(b"\x00" * 48).decode(), "é" * 64):
        challenge = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'
        assert verify(srv, answer(challenge)) is AuthResultKind.INVALID


def test_expired_nonce_with_right_password_is_stale() -> None:
    srv = server(nonce_ttl_seconds=30.0)
    challenge = srv.challenge(1000.0)[0]
    assert verify(srv, answer(challenge), now=1030.0) is AuthResultKind.OK
    assert verify(srv, answer(challenge, nc=2), now=1030.5) is AuthResultKind.STALE
    # A wrong password with an expired nonce is still INVALID: STALE means "retry".
    assert verify(srv, answer(challenge, password="x", nc=3), now=1031.0) is (
        AuthResultKind.INVALID
    )


def test_nonce_from_the_future_is_stale() -> None:
    srv = server()
    challenge = srv.challenge(5000.0)[0]
    assert verify(srv, answer(challenge), now=10.0) is AuthResultKind.STALE


def test_replayed_nonce_count_is_stale_and_next_count_ok() -> None:
    srv = server()
    challenge = srv.challenge(1000.0)[0]
    first = answer(challenge)
    assert verify(srv, first) is AuthResultKind.OK
    assert verify(srv, first) is AuthResultKind.STALE
    assert verify(srv, answer(challenge, nc=2)) is AuthResultKind.OK


def test_replay_cache_is_bounded_and_optional() -> None:
    srv = server(replay_cache_size=2)
    challenge = srv.challenge(1000.0)[0]
    creds = [answer(challenge, nc=n) for n in (1, 2, 3)]
    assert [verify(srv, c) for c in creds] == [AuthResultKind.OK] * 3
    assert verify(srv, creds[0]) is AuthResultKind.OK  # evicted: outside the window
    assert verify(srv, creds[2]) is AuthResultKind.STALE
    stateless = server(replay_cache_size=0)
    challenge = stateless.challenge(1000.0)[0]
    assert [verify(stateless, answer(challenge)) for _ in range(2)] == [AuthResultKind.OK] * 2


def test_garbage_header_is_malformed() -> None:
    srv = server()
    for value in ("garbage", "", 'Digest username="alice"', "Basic YWxhZGRpbjpvcGVuc2VzYW1l"):
        assert verify(srv, value) is AuthResultKind.MALFORMED


def test_policy_violations_are_invalid() -> None:
    srv = server(algorithms=("SHA-256",))
    nonce = parse_challenge(srv.challenge(1000.0)[0]).nonce
    base = f'Digest realm="{REALM}", nonce="{nonce}"'
    no_qop = answer(base + ", algorithm=SHA-256")
    md5 = answer(base + ', qop="auth", algorithm=MD5')
    sha1 = (
        f'Digest username="alice", realm="{REALM}", nonce="{nonce}", uri="sip:x", '
        f'response="00", algorithm=SHA-1'
    )
    reasons = [
        srv.verify(c, method="INVITE", now=1000.0, lookup_password=PASSWORDS.get)
        for c in (no_qop, md5, sha1)
    ]
    assert [r.kind for r in reasons] == [AuthResultKind.INVALID] * 3
    assert [r.reason for r in reasons] == [
        "qop must be auth (got None)",
        "algorithm MD5 not offered",
        "unsupported algorithm 'SHA-1'",
    ]


def test_verify_needs_exactly_one_lookup() -> None:
    srv = server()
    with pytest.raises(TypeError):
        srv.verify("Digest x=y", method="INVITE", now=0.0)
    with pytest.raises(TypeError):
        srv.verify(
            "Digest x=y",
            method="INVITE",
            now=0.0,
            lookup_password=PASSWORDS.get,
            lookup_ha1=lambda u, r, a: None,
        )


def test_server_configuration_errors() -> None:
    with pytest.raises(AuthError, match="16 bytes"):
        DigestServer(REALM, b"short")
    with pytest.raises(AuthError, match="algorithms"):
        DigestServer(REALM, SECRET, algorithms=("SHA-256-sess",))
    with pytest.raises(AuthError):
        DigestServer("bad\r\nrealm", SECRET)


def test_client_errors() -> None:
    with pytest.raises(AuthError, match="nc"):
        build_authorization(
            'Digest realm="r", nonce="n"',
            method="INVITE",
            uri="sip:x",
            username="u",
            password="p",
            cnonce="c",
            nc=0,
        )
    with pytest.raises(AuthError, match="qop"):
        build_authorization(
            'Digest realm="r", nonce="n", qop="auth-conf"',
            method="INVITE",
            uri="sip:x",
            username="u",
            password="p",
            cnonce="c",
        )
    with pytest.raises(AuthError):
        build_authorization(
            'Digest realm="r", nonce="n"',
            method="INVITE",
            uri="sip:x",
            username="u\r\nX-Injected: 1",
            password="p",
            cnonce="c",
        )
