"""Digest access authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760: SHA-256 and MD5).

:class:`DigestServer` issues stateless, expiring nonces and verifies ``Authorization`` /
``Proxy-Authorization`` values; :func:`build_authorization` answers a challenge as a client.
Pure: ``now`` is passed in, randomness is injected, and hostile header values only ever raise
:class:`AuthError` (or yield :attr:`AuthResultKind.MALFORMED`).
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "ALGORITHMS",
    "AuthError",
    "AuthResult",
    "AuthResultKind",
    "DigestChallenge",
    "DigestCredentials",
    "DigestServer",
    "build_authorization",
    "digest_response",
    "ha1",
    "parse_auth_params",
    "parse_challenge",
    "parse_credentials",
    "select_challenge",
]


class AuthError(ValueError):
    """A digest header value is malformed or uses something we do not support."""


class _UnsupportedAlgorithm(AuthError):
    """Well-formed, but an algorithm we do not implement (INVALID rather than MALFORMED)."""


MAX_HEADER_LENGTH = 4096
MAX_PARAMS = 32

_HASHES: dict[str, Callable[[bytes], str]] = {
    "MD5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "SHA-256": lambda data: hashlib.sha256(data).hexdigest(),
}
# RFC 7616 §3.7 / RFC 8760 §2.4: strongest first; the "-sess" variants hash HA1 once more.
ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")
_ALL_ALGORITHMS = {name.upper(): name for base in ALGORITHMS for name in (base, f"{base}-sess")}

# RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_HEX = frozenset("0123456789abcdefABCDEF")


# ---- parsing --------------------------------------------------------------------------------


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """Split ``<scheme> name=value, name="quoted value", ...`` into the scheme and a dict.

    Grammar of RFC 3261 §25.1 (``challenge``/``credentials``, ``auth-param``): names are
    tokens (returned lower-cased), values tokens or quoted-strings with ``\\`` quoted-pairs.
    Duplicate names, control characters, more than :data:`MAX_PARAMS` parameters or more than
    :data:`MAX_HEADER_LENGTH` characters raise :class:`AuthError`.
    """
    if not isinstance(value, str):
        raise AuthError("header value must be a string")
    if len(value) > MAX_HEADER_LENGTH:
        raise AuthError(f"header value longer than {MAX_HEADER_LENGTH} characters")
    text = value.strip(" \t")
    i, n = 0, len(text)
    while i < n and text[i] in _TOKEN_CHARS:
        i += 1
    scheme = text[:i]
    if not scheme:
        raise AuthError("missing authentication scheme")
    params: dict[str, str] = {}
    if i < n and text[i] not in " \t":
        raise AuthError(f"unexpected {text[i]!r} after the scheme")
    while True:
        # Skip LWS and empty list elements (RFC 7230 §7: "#rule" tolerates ", ,").
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise AuthError(f"expected a parameter name at offset {start}")
        while i < n and text[i] in " \t":
            i += 1
        if i >= n or text[i] != "=":
            raise AuthError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == '"':
            i, param = _quoted_string(text, i + 1)
        else:
            start = i
            # Tolerate unquoted values beyond tokens (base64 nonces, URIs) up to , or space.
            while i < n and text[i] not in ' \t,"':
                i += 1
            param = text[start:i]
            if not param:
                raise AuthError(f"parameter {name!r} has an empty value")
        _check_text(param, name)
        if name in params:
            raise AuthError(f"parameter {name!r} given twice")
        if len(params) >= MAX_PARAMS:
            raise AuthError(f"more than {MAX_PARAMS} parameters")
        params[name] = param
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] != ",":
            raise AuthError(f"expected ',' after parameter {name!r}")
    return scheme, params


def _quoted_string(text: str, i: int) -> tuple[int, str]:
    # RFC 3261 §25.1: quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE;
    # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
    out: list[str] = []
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1, "".join(out)
        if c == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    raise AuthError("unterminated quoted-string")


def _check_text(value: str, name: str) -> None:
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
        raise AuthError(f"control character in parameter {name!r}")


def _digest_params(value: str) -> dict[str, str]:
    scheme, params = parse_auth_params(value)
    if scheme.lower() != "digest":
        raise AuthError(f"unsupported scheme {scheme[:32]!r} (only Digest)")
    return params


def _algorithm(name: str | None) -> str:
    # RFC 7616 §3.3: "If this is not present, it is assumed to be "MD5"."
    if name is None:
        return "MD5"
    canonical = _ALL_ALGORITHMS.get(name.upper())
    if canonical is None:
        raise _UnsupportedAlgorithm(f"unsupported algorithm {name[:32]!r}")
    return canonical


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A parsed ``WWW-Authenticate``/``Proxy-Authenticate`` Digest value (RFC 7616 §3.3)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False
    userhash: bool = False

    @classmethod
    def parse(cls, value: str) -> DigestChallenge:
        params = _digest_params(value)
        if "realm" not in params or "nonce" not in params:
            raise AuthError("challenge without realm or nonce")
        qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
        return cls(
            realm=params["realm"],
            nonce=params["nonce"],
            algorithm=_algorithm(params.get("algorithm")),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "").lower() == "true",
            userhash=params.get("userhash", "").lower() == "true",
        )


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """A parsed ``Authorization``/``Proxy-Authorization`` Digest value (RFC 7616 §3.4).

    ``nc`` is kept as sent (8 hex digits); ``qop``, ``nc`` and ``cnonce`` are None for
    RFC 2069-style credentials.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    userhash: bool = False

    @classmethod
    def parse(cls, value: str) -> DigestCredentials:
        params = _digest_params(value)
        missing = [k for k in ("username", "realm", "nonce", "uri", "response") if k not in params]
        if missing:
            raise AuthError(f"credentials without {', '.join(missing)}")
        qop = params.get("qop")
        nc, cnonce = params.get("nc"), params.get("cnonce")
        if qop is not None:
            # RFC 7616 §3.4: with qop, "cnonce" and "nc" MUST be sent; nc-value = 8LHEX.
            if nc is None or cnonce is None:
                raise AuthError("qop given without nc and cnonce")
            if len(nc) != 8 or not set(nc) <= _HEX:
                raise AuthError("nc is not 8 hex digits")
            if not cnonce:
                raise AuthError("empty cnonce")
        return cls(
            username=params["username"],
            realm=params["realm"],
            nonce=params["nonce"],
            uri=params["uri"],
            response=params["response"],
            algorithm=_algorithm(params.get("algorithm")),
            qop=qop.lower() if qop else None,
            nc=nc,
            cnonce=cnonce,
            opaque=params.get("opaque"),
            userhash=params.get("userhash", "").lower() == "true",
        )


def parse_challenge(value: str) -> DigestChallenge:
    """Parse a Digest challenge; raises :class:`AuthError`."""
    return DigestChallenge.parse(value)


def parse_credentials(value: str) -> Mapping[str, str] | None:
    """The parameters of a Digest credentials value (names lower-cased), or None when it is
    not well-formed Digest. For routing (which user, which realm) before :meth:`verify`."""
    try:
        return _digest_params(value)
    except AuthError:
        return None


def select_challenge(values: Sequence[str]) -> str:
    """The challenge a client should answer among several header values.

    RFC 8760 §2.4: the UAC "MUST use the topmost header field that contains an algorithm it
    supports" (servers list the preferred one first). Raises :class:`AuthError` if none fits.
    """
    for value in values:
        try:
            DigestChallenge.parse(value)
        except AuthError:
            continue
        return value
    raise AuthError("no Digest challenge with a supported algorithm")


# ---- computing digests -----------------------------------------------------------------------


def _hash(algorithm: str, data: str | bytes) -> str:
    base = algorithm.removesuffix("-sess")
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return _HASHES[base](raw)


def ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """HA1 = H(username ":" realm ":" password), lower-case hex (RFC 7616 §3.4.2).

    Store this instead of the password (one per algorithm); :class:`DigestServer` accepts it
    through ``lookup_ha1``. For "-sess" algorithms this is the base HA1 (§3.4.2 applies the
    nonce and cnonce at verification time).
    """
    return _hash(_algorithm(algorithm), f"{username}:{realm}:{password}")


def digest_response(
    *,
    algorithm: str,
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The ``response`` value (RFC 7616 §3.4.1; RFC 2617 §3.2.2 for qop absent).

    ::

        response = KD(HA1, nonce ":" nc ":" cnonce ":" qop ":" HA2)   with qop
                 = KD(HA1, nonce ":" HA2)                            RFC 2069 compatibility
        HA2      = H(method ":" uri)   or H(method ":" uri ":" H(body)) for qop=auth-int
    """
    algorithm = _algorithm(algorithm)
    if algorithm.endswith("-sess"):
        # RFC 7616 §3.4.2: A1 = H(user:realm:passwd) ":" nonce-prime ":" cnonce-prime
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce or ''}")
    if qop == "auth-int":
        ha2 = _hash(algorithm, f"{method}:{uri}:{_hash(algorithm, body)}")
    elif qop in (None, "auth"):
        ha2 = _hash(algorithm, f"{method}:{uri}")
    else:
        raise AuthError(f"unsupported qop {qop[:16]!r}")
    if qop is None:
        return _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    return _hash(algorithm, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _quote(value: str) -> str:
    _check_text(value, "value")  # no CR/LF: a value must not split the header
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_authorization(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str,
    nc: int = 1,
    body: bytes = b"",
) -> str:
    """The ``Authorization``/``Proxy-Authorization`` value answering ``challenge``
    (RFC 3261 §22.2/§22.3, RFC 7616 §3.4).

    ``cnonce`` comes from the caller (e.g. ``secrets.token_urlsafe(16)``) so that this stays
    deterministic; ``nc`` counts the requests made with this nonce, starting at 1. qop "auth"
    is preferred to "auth-int" (whose HA2 covers ``body``); without qop the RFC 2069 form is
    used. Raises :class:`AuthError` for unusable challenges.
    """
    parsed = DigestChallenge.parse(challenge)
    if not 1 <= nc <= 0xFFFFFFFF:
        raise AuthError(f"nc {nc} out of range")
    if parsed.qop and "auth" not in parsed.qop and "auth-int" not in parsed.qop:
        raise AuthError(f"no supported qop in {', '.join(parsed.qop)}")
    qop = ("auth" if "auth" in parsed.qop else "auth-int") if parsed.qop else None
    nc_value = f"{nc:08x}"
    response = digest_response(
        algorithm=parsed.algorithm,
        ha1=ha1(username, parsed.realm, password, parsed.algorithm),
        nonce=parsed.nonce,
        method=method,
        uri=uri,
        qop=qop,
        nc=nc_value,
        cnonce=cnonce,
        body=body,
    )
    # RFC 7616 §3.4.4: with userhash=true the username is H(username ":" realm).
    shown = _hash(parsed.algorithm, f"{username}:{parsed.realm}") if parsed.userhash else username
    parts = [
        f"username={_quote(shown)}",
        f"realm={_quote(parsed.realm)}",
        f"uri={_quote(uri)}",
        f"algorithm={parsed.algorithm}",
        f"nonce={_quote(parsed.nonce)}",
    ]
    if qop is not None:
        parts += [f"nc={nc_value}", f"cnonce={_quote(cnonce)}", f"qop={qop}"]
    parts.append(f"response={_quote(response)}")
    if parsed.opaque is not None:
        parts.append(f"opaque={_quote(parsed.opaque)}")
    if parsed.userhash:
        parts.append("userhash=true")
    return "Digest " + ", ".join(parts)


# ---- server ------------------------------------------------------------------------------------


class AuthResultKind(enum.Enum):
    """Outcome of :meth:`DigestServer.verify`."""

    OK = "ok"
    STALE = "stale"  # right password, old (or replayed) nonce: challenge again with stale=true
    INVALID = "invalid"  # wrong password, unknown user, other realm, forged nonce, bad policy
    MALFORMED = "malformed"  # not parseable as Digest credentials


@dataclass(frozen=True, slots=True)
class AuthResult:
    kind: AuthResultKind
    username: str | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.kind is AuthResultKind.OK


_UNKNOWN_USER_HA1 = "0" * 64
_NONCE_STAMP = struct.Struct(">q")
_NONCE_SALT_BYTES = 8
_NONCE_MAC_BYTES = 32
_NONCE_BYTES = _NONCE_STAMP.size + _NONCE_SALT_BYTES + _NONCE_MAC_BYTES


class DigestServer:
    """Challenges and verifies Digest credentials for one realm (RFC 3261 §22.1, §22.4).

    Nonces are stateless: ``base64(timestamp || salt || HMAC-SHA-256(secret, realm, timestamp,
    salt))``, so any node sharing ``secret`` validates them without storage, and one older than
    ``nonce_ttl_seconds`` is reported STALE (RFC 7616 §3.3: "stale ... the request from the
    client was rejected because the nonce value was stale"). ``now`` is any monotonic clock in
    seconds, the same one for challenge and verify.

    Replay: RFC 7616 §3.4 lets the server keep the nonce count "to detect request replays". With
    ``replay_cache_size > 0`` the last that many accepted (nonce, nc) pairs are remembered and a
    repeat is reported STALE, so a legitimate client recovers with a fresh challenge while a
    replayer without the password does not. The cache is per process (not shared between
    nodes) and only catches replays within its window; 0 disables it (fully stateless).
    """

    def __init__(
        self,
        realm: str,
        secret: bytes,
        nonce_ttl_seconds: float = 300.0,
        algorithms: Sequence[str] = ALGORITHMS,
        *,
        replay_cache_size: int = 1024,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(secret) < 16:
            raise AuthError("the nonce secret must be at least 16 bytes")
        if nonce_ttl_seconds <= 0:
            raise AuthError("nonce_ttl_seconds must be positive")
        chosen = {_algorithm(a) for a in algorithms}
        if not chosen or not chosen <= set(ALGORITHMS):
            raise AuthError(f"algorithms must be among {', '.join(ALGORITHMS)}")
        _quote(realm)
        self.realm = realm
        # RFC 8760 §2.4: challenges "in order of preference"; SHA-256 is preferred to MD5.
        self.algorithms = tuple(a for a in ALGORITHMS if a in chosen)
        self.nonce_ttl_seconds = nonce_ttl_seconds
        self._secret = secret
        self._random_bytes = random_bytes
        self._replay_cache_size = replay_cache_size
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()

    # ---- nonces -------------------------------------------------------------------------------

    def _mac(self, stamp_and_salt: bytes) -> bytes:
        message = b"switchhook digest nonce\x00" + self.realm.encode("utf-8") + b"\x00"
        return hmac.new(self._secret, message + stamp_and_salt, hashlib.sha256).digest()

    def new_nonce(self, now: float) -> str:
        salt = self._random_bytes(_NONCE_SALT_BYTES)
        if len(salt) != _NONCE_SALT_BYTES:
            raise AuthError("random_bytes returned the wrong length")
        head = _NONCE_STAMP.pack(round(now * 1000)) + salt
        return base64.b64encode(head + self._mac(head)).decode("ascii")

    def _nonce_age(self, nonce: str, now: float) -> float | None:
        """Seconds since ``nonce`` was issued, or None if we did not issue it."""
        if len(nonce) != (_NONCE_BYTES + 2) // 3 * 4:
            return None
        try:
            raw = base64.b64decode(nonce.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        head, mac = raw[:-_NONCE_MAC_BYTES], raw[-_NONCE_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(head)):
            return None
        stamp_ms = int(_NONCE_STAMP.unpack(head[: _NONCE_STAMP.size])[0])
        return now - stamp_ms / 1000

    # ---- challenge and verify -----------------------------------------------------------------

    def challenge(self, now: float, *, stale: bool = False) -> list[str]:
        """One ``WWW-Authenticate``/``Proxy-Authenticate`` value per algorithm, SHA-256 first,
        each with ``qop="auth"`` (RFC 8760 §2.4, RFC 7616 §3.3)."""
        nonce = self.new_nonce(now)
        tail = ", stale=true" if stale else ""
        return [
            f'Digest realm={_quote(self.realm)}, nonce="{nonce}", algorithm={algorithm}, '
            f'qop="auth"{tail}'
            for algorithm in self.algorithms
        ]

    def verify(
        self,
        credentials: str,
        *,
        method: str,
        now: float,
        lookup_ha1: Callable[[str, str, str], str | None] | None = None,
        lookup_password: Callable[[str], str | None] | None = None,
    ) -> AuthResult:
        """Check an ``Authorization``/``Proxy-Authorization`` value for a ``method`` request.

        Give exactly one of ``lookup_ha1(username, realm, algorithm)`` (hashed secrets at rest,
        see :func:`ha1`) or ``lookup_password(username)``; None means unknown user. Checks, in
        order: well-formed (MALFORMED), realm, algorithm we offered, ``qop=auth`` with nc and
        cnonce, nonce issued by us, response (INVALID), then nonce age and replay (STALE). The
        ``uri`` must be present; comparing it with the Request-URI (RFC 3261 §22.4) is left to
        the caller, which knows the request.
        """
        if (lookup_ha1 is None) == (lookup_password is None):
            raise TypeError("give exactly one of lookup_ha1 and lookup_password")
        try:
            creds = DigestCredentials.parse(credentials)
        except _UnsupportedAlgorithm as exc:
            return AuthResult(AuthResultKind.INVALID, reason=str(exc))
        except AuthError as exc:
            return AuthResult(AuthResultKind.MALFORMED, reason=str(exc))
        user = creds.username

        def invalid(reason: str) -> AuthResult:
            return AuthResult(AuthResultKind.INVALID, user, reason)

        if creds.realm != self.realm:
            return invalid(f"realm {creds.realm[:64]!r} is not ours")
        if creds.algorithm not in self.algorithms:
            return invalid(f"algorithm {creds.algorithm} not offered")
        # We always challenge with qop="auth"; RFC 7616 §3.4: the client "MUST" then use it.
        if creds.qop != "auth":
            return invalid(f"qop must be auth (got {creds.qop!r})")
        if creds.userhash:
            return invalid("userhash not offered")
        if not creds.uri:
            return invalid("empty uri")
        age = self._nonce_age(creds.nonce, now)
        if age is None:
            return invalid("nonce not issued by us")
        if lookup_ha1 is not None:
            secret_ha1 = lookup_ha1(user, creds.realm, creds.algorithm)
        else:
            assert lookup_password is not None
            password = lookup_password(user)
            secret_ha1 = (
                ha1(user, creds.realm, password, creds.algorithm) if password is not None else None
            )
        # Compute a response even for unknown users so timing does not reveal who exists.
        expected = digest_response(
            algorithm=creds.algorithm,
            ha1=(secret_ha1 or _UNKNOWN_USER_HA1).lower(),
            nonce=creds.nonce,
            method=method,
            uri=creds.uri,
            qop=creds.qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        matches = hmac.compare_digest(
            expected.encode("ascii"), creds.response.lower().encode("utf-8")
        )
        if secret_ha1 is None:
            return invalid("unknown user")
        if not matches:
            return invalid("wrong response")
        if not 0 <= age <= self.nonce_ttl_seconds:
            return AuthResult(AuthResultKind.STALE, user, "nonce expired")
        if self._replay_cache_size > 0:
            assert creds.nc is not None
            key = (creds.nonce, creds.nc.lower())
            if key in self._seen:
                return AuthResult(AuthResultKind.STALE, user, "nonce count reused")
            self._seen[key] = None
            while len(self._seen) > self._replay_cache_size:
                self._seen.popitem(last=False)
        return AuthResult(AuthResultKind.OK, user)
