"""Users, roles and permissions for supervisors' actions (monitoring, ending calls, views).

Pure: config models (``users:`` and ``roles:`` sections), secret hashing and the
authorisation decisions (:class:`Directory`). Nothing here opens a socket or reads a clock.

Secrets are hashed at rest: API tokens as SHA-256 (they are 256-bit random values, so a fast
hash is enough and lets a request find its user in O(1)), PINs with scrypt (low entropy:
slow and salted), SIP phone credentials as digest HA1 values (RFC 7616 §3.4.2), which is all
a digest server needs. ``switchhook hash-secret`` produces every form.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sipstack.auth import ha1 as digest_ha1

__all__ = [
    "BUILTIN_ROLES",
    "Directory",
    "Permission",
    "Role",
    "RoleConfig",
    "User",
    "UserConfig",
    "UserSip",
    "check_access",
    "hash_pin",
    "hash_token",
    "new_token",
    "sip_ha1",
    "verify_pin",
]


class Permission(enum.Enum):
    """What a role may do. ``calls.view`` lists calls, agents and queues."""

    CALLS_VIEW = "calls.view"
    MONITOR_LISTEN = "monitor.listen"
    MONITOR_COACH = "monitor.coach"
    MONITOR_BARGE = "monitor.barge"
    CALLS_END = "calls.end"


PermissionName = Literal[
    "calls.view", "monitor.listen", "monitor.coach", "monitor.barge", "calls.end"
]
Scope = Literal["all", "teams"]

# The monitor mode a permission grants (mode names are media.mixer.TapMode values).
MODE_PERMISSION = {
    "listen": Permission.MONITOR_LISTEN,
    "coach": Permission.MONITOR_COACH,
    "barge": Permission.MONITOR_BARGE,
}


@dataclass(frozen=True, slots=True)
class Role:
    name: str
    permissions: frozenset[Permission]
    scope: Scope  # "teams": only calls of the user's teams


_ALL = frozenset(Permission)
_MONITOR = frozenset(
    {
        Permission.CALLS_VIEW,
        Permission.MONITOR_LISTEN,
        Permission.MONITOR_COACH,
        Permission.MONITOR_BARGE,
    }
)

# calls.end goes by default to admins, and to managers for their own teams only.
BUILTIN_ROLES: Mapping[str, Role] = {
    "admin": Role("admin", _ALL, "all"),
    "manager": Role("manager", _ALL, "teams"),
    "supervisor": Role("supervisor", _MONITOR, "all"),
    "agent": Role("agent", frozenset(), "teams"),
}

_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
Name = Annotated[str, Field(pattern=_NAME)]
TokenHash = Annotated[str, Field(pattern=r"^sha256\$[0-9a-f]{64}$")]
_PIN_HASH = r"^scrypt\$\d+\$\d+\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$"
PinHash = Annotated[str, Field(pattern=_PIN_HASH)]
Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{32}([0-9a-f]{32})?$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RoleConfig(_Model):
    """A custom role: any combination of permissions, over all calls or the user's teams."""

    permissions: tuple[PermissionName, ...] = ()
    scope: Scope = "teams"


class UserSip(_Model):
    """The user's phone credentials (digest, like agents' phones): HA1 per algorithm."""

    username: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.!~*'()&=+$,;?/-]{1,64}$")]
    ha1_md5: Hex | None = None
    ha1_sha256: Hex | None = None


class UserConfig(_Model):
    name: Name
    display_name: str | None = None
    role: Name
    teams: tuple[Name, ...] = ()
    tokens: tuple[TokenHash, ...] = ()  # hashed API tokens
    sip: UserSip | None = None  # a phone that registers to the engine
    phone: Annotated[str, Field(pattern=r"^sips?:\S+$")] | None = None  # fixed URI to call
    extension: Annotated[str, Field(pattern=r"^[0-9]{2,10}$")] | None = None  # PIN dial-in
    pin: PinHash | None = None


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: Role
    teams: frozenset[str]
    config: UserConfig

    def can(self, permission: Permission) -> bool:
        return permission in self.role.permissions

    def covers(self, teams: Iterable[str]) -> bool:
        """Whether the user's scope includes a call belonging to ``teams``."""
        if self.role.scope == "all":
            return True
        return bool(self.teams & set(teams))

    def allowed(self, permission: Permission, teams: Iterable[str]) -> bool:
        return self.can(permission) and self.covers(teams)

    @property
    def display(self) -> str:
        return self.config.display_name or self.name


# --------------------------------------------------------------------------------------------
# Secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def new_token() -> str:
    """A fresh API token (shown once; only its hash goes into the config)."""
    return "shk_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def hash_pin(pin: str, *, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return (
        f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$"
        f"{base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    )


def verify_pin(pin: str, hashed: str) -> bool:
    try:
        _, n, r, p, salt, digest = hashed.split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            pin.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


def sip_ha1(username: str, password: str, realm: str) -> dict[str, str]:
    """The ``sip:`` block of a user: HA1 for MD5 and SHA-256 (RFC 8760)."""
    return {
        "username": username,
        "ha1_md5": digest_ha1(username, realm, password, "MD5"),
        "ha1_sha256": digest_ha1(username, realm, password, "SHA-256"),
    }


# --------------------------------------------------------------------------------------------
# Directory: who is who


class Directory:
    """Users resolved against built-in and custom roles, indexed by name, token hash, SIP
    username and extension."""

    def __init__(self, users: Sequence[UserConfig], roles: Mapping[str, RoleConfig]) -> None:
        self.roles: dict[str, Role] = dict(BUILTIN_ROLES)
        for name, custom in roles.items():
            self.roles[name] = Role(
                name, frozenset(Permission(p) for p in custom.permissions), custom.scope
            )
        self.users: dict[str, User] = {}
        self._by_token: dict[str, User] = {}
        self._by_sip: dict[str, User] = {}
        self._by_extension: dict[str, User] = {}
        for config in users:
            role = self.roles.get(config.role)
            if role is None:
                continue  # reported by check_access at load time
            user = User(config.name, role, frozenset(config.teams), config)
            self.users[user.name] = user
            for token in config.tokens:
                self._by_token[token] = user
            if config.sip is not None:
                self._by_sip[config.sip.username] = user
            if config.extension is not None:
                self._by_extension[config.extension] = user

    def by_token(self, token: str) -> User | None:
        return self._by_token.get(hash_token(token))

    def by_sip_username(self, username: str) -> User | None:
        return self._by_sip.get(username)

    def by_extension(self, extension: str) -> User | None:
        return self._by_extension.get(extension)

    def sip_ha1(self, username: str, realm: str, algorithm: str) -> str | None:
        """``lookup_ha1`` for :meth:`sipstack.auth.DigestServer.verify`."""
        user = self._by_sip.get(username)
        if user is None or user.config.sip is None:
            return None
        sip = user.config.sip
        return sip.ha1_sha256 if algorithm.upper().startswith("SHA-256") else sip.ha1_md5


def check_access(
    users: Sequence[UserConfig], roles: Mapping[str, RoleConfig]
) -> list[tuple[tuple[Any, ...], str]]:
    """Cross checks of ``users:`` against ``roles:``: (document path, message) pairs."""
    found: list[tuple[tuple[Any, ...], str]] = []
    for name in roles:
        if name in BUILTIN_ROLES:
            found.append((("roles", name), f"role {name!r} is built in and cannot be redefined"))
    known = set(BUILTIN_ROLES) | set(roles)
    seen: dict[str, int] = {}
    sip_seen: dict[str, int] = {}
    ext_seen: dict[str, int] = {}
    token_seen: dict[str, int] = {}
    for index, user in enumerate(users):
        if user.role not in known:
            found.append(
                (
                    ("users", index, "role"),
                    f"unknown role {user.role!r} (known: {', '.join(sorted(known))})",
                )
            )
        if user.name in seen:
            found.append(
                (
                    ("users", index, "name"),
                    f"duplicate user {user.name!r} (first: users[{seen[user.name]}])",
                )
            )
        seen.setdefault(user.name, index)
        if user.sip is not None:
            if user.sip.username in sip_seen:
                found.append(
                    (
                        ("users", index, "sip", "username"),
                        f"SIP username {user.sip.username!r} is already users"
                        f"[{sip_seen[user.sip.username]}]'s",
                    )
                )
            sip_seen.setdefault(user.sip.username, index)
            if user.sip.ha1_md5 is None and user.sip.ha1_sha256 is None:
                found.append(
                    (
                        ("users", index, "sip"),
                        "give ha1_md5 and/or ha1_sha256 (switchhook hash-secret --sip)",
                    )
                )
        if user.extension is not None:
            if user.extension in ext_seen:
                found.append(
                    (
                        ("users", index, "extension"),
                        f"extension {user.extension} is already users"
                        f"[{ext_seen[user.extension]}]'s",
                    )
                )
            ext_seen.setdefault(user.extension, index)
            if user.pin is None:
                found.append((("users", index, "pin"), "an extension needs a pin"))
        for t_index, token in enumerate(user.tokens):
            if token in token_seen:
                found.append(
                    (
                        ("users", index, "tokens", t_index),
                        f"token already belongs to users[{token_seen[token]}]",
                    )
                )
            token_seen.setdefault(token, index)
    return found
