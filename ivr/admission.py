"""Trunk admission: which requests may start a call (source ACL and/or digest auth).

Pure: given the request, its source address and ``now``, :meth:`TrunkAdmission.admit` says
admit (with the trunk), challenge (401 with WWW-Authenticate values, RFC 8760: SHA-256 first),
or forbid (403). The reason for a refusal goes to the log only; the peer learns nothing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from sipstack.auth import AuthResultKind, DigestServer, ha1, parse_credentials
from sipstack.message import Request

from .config import Trunk


@dataclass(frozen=True, slots=True)
class Admitted:
    trunk: str
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Challenge:
    """Answer 401 with these WWW-Authenticate values (RFC 3261 §22.2)."""

    trunk: str
    www_authenticate: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class Forbidden:
    reason: str


Decision = Admitted | Challenge | Forbidden


class TrunkAdmission:
    def __init__(
        self, trunks: tuple[Trunk, ...], *, secret: bytes, nonce_ttl_seconds: float = 300.0
    ) -> None:
        self._trunks = trunks
        self._networks = {t.name: [ipaddress.ip_network(str(n)) for n in t.sources] for t in trunks}
        self._servers: dict[str, DigestServer] = {}
        for trunk in trunks:
            if trunk.auth is not None:
                self._servers[trunk.name] = DigestServer(
                    trunk.auth.realm,
                    secret,
                    nonce_ttl_seconds=nonce_ttl_seconds,
                    algorithms=trunk.auth.algorithms,
                )

    def source_allowed(self, trunk: Trunk, source_ip: str) -> bool:
        try:
            address = ipaddress.ip_address(source_ip)
        except ValueError:
            return False
        if address.version == 6 and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in net for net in self._networks[trunk.name])

    def admit(self, request: Request, source_ip: str, now: float) -> Decision:
        credentials = request.headers.get("Authorization")
        sourced = [t for t in self._trunks if self.source_allowed(t, source_ip)]
        # 1. Trunks that need nothing but the source address.
        for trunk in sourced:
            if trunk.require in ("source", "source_or_auth"):
                return Admitted(trunk.name)
        # 2. Trunks that may admit this source with credentials.
        candidates = [
            t
            for t in self._trunks
            if t.auth is not None
            and (
                t.require in ("auth", "source_or_auth")
                or (t.require == "source_and_auth" and t in sourced)
            )
        ]
        if not candidates:
            return Forbidden(f"source {source_ip} is in no trunk")
        if credentials is None:
            return self._challenge(candidates[0], now, "no credentials", stale=False)
        parsed = parse_credentials(credentials)
        if parsed is None:
            return Forbidden("malformed Authorization header")
        username = parsed.get("username")
        for trunk in candidates:
            auth = trunk.auth
            assert auth is not None
            if username != auth.username or parsed.get("realm") != auth.realm:
                continue
            result = self._servers[trunk.name].verify(
                credentials,
                method=request.method,
                lookup_ha1=lambda user, realm, algorithm, a=auth: _ha1_of(a, algorithm),
                now=now,
            )
            if result.kind is AuthResultKind.OK:
                return Admitted(trunk.name, username)
            if result.kind is AuthResultKind.STALE:
                return self._challenge(trunk, now, "stale nonce", stale=True)
            return Forbidden(f"bad credentials for trunk {trunk.name} ({result.kind.value})")
        return Forbidden(f"unknown user {username!r} from {source_ip}")

    def _challenge(self, trunk: Trunk, now: float, reason: str, *, stale: bool) -> Challenge:
        values = self._servers[trunk.name].challenge(now, stale=stale)
        return Challenge(trunk.name, tuple(values), reason)


def _ha1_of(auth: object, algorithm: str) -> str | None:
    from .config import DigestAuth

    assert isinstance(auth, DigestAuth)
    if algorithm not in auth.algorithms:
        return None
    if auth.ha1 is not None:
        return auth.ha1.get_secret_value().strip().lower()
    assert auth.password is not None
    return ha1(auth.username, auth.realm, auth.password.get_secret_value(), algorithm)
