"""Reserved caller data: the initial INVITE's headers become the call's profile.

Carriers and upstream screening systems tag calls with ``X-Reserved-Verified-Customer``,
``X-Reserved-Bad-Actor`` and ``X-Reserved-Repeat-Customer`` (true/false/yes/no/1/0, any case),
further headers mapped by configuration, and ``User-to-User`` (RFC 7433) key=value data. Flows
read the result as ``profile.<field>``. Nothing here may fail a call: an invalid value is
ignored and reported in the returned warnings, for the runtime to log.

Input is a plain mapping of header name -> list of values, so this module does not depend on
the SIP stack's types.
"""

from __future__ import annotations

import binascii
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

__all__ = [
    "FLAG_FIELDS",
    "FLAG_HEADERS",
    "CallerProfile",
    "ProfileConfig",
    "headers_from_pairs",
    "parse_bool",
    "parse_profile",
]

FLAG_HEADERS: Mapping[str, str] = types.MappingProxyType(
    {
        "X-Reserved-Verified-Customer": "verified_customer",
        "X-Reserved-Bad-Actor": "bad_actor",
        "X-Reserved-Repeat-Customer": "repeat_customer",
    }
)
"""The reserved headers and the boolean profile flag each one sets."""

FLAG_FIELDS = frozenset(FLAG_HEADERS.values())

USER_TO_USER = "User-to-User"
MAX_VALUE_CHARS = 256
"""Longer values are ignored: profile data are flags and short identifiers."""

_TRUE = frozenset({"true", "yes", "1"})
_FALSE = frozenset({"false", "no", "0"})
_FIELD_NAME = r"^[a-z][a-z0-9_]{0,62}$"
_HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$"
# RFC 7433 §4.1 header parameters; anything else after ';' in unencoded data is payload.
_UUI_PARAMETERS = frozenset({"encoding", "purpose", "content"})


def parse_bool(value: str) -> bool | None:
    """true/yes/1 -> True, false/no/0 -> False (case-insensitive, trimmed), else None."""
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return None


def _not_reserved(value: dict[str, str]) -> dict[str, str]:
    for header in value:
        if header.lower() in {h.lower() for h in FLAG_HEADERS} | {USER_TO_USER.lower()}:
            raise ValueError(f"{header!r} is a reserved header; it is always read")
    return value


class ProfileConfig(BaseModel):
    """Extra header -> profile field mappings (embed in the engine settings).

    A header mapped to one of the flag fields (``verified_customer``...) is read as a
    boolean; any other field keeps the header's text. ``user_to_user: false`` ignores the
    ``User-to-User`` header.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    headers: Annotated[
        dict[
            Annotated[str, Field(pattern=_HEADER_NAME)],
            Annotated[str, Field(pattern=_FIELD_NAME)],
        ],
        AfterValidator(_not_reserved),
    ] = Field(default_factory=dict)
    user_to_user: bool = True

    @property
    def fields(self) -> frozenset[str]:
        """Every profile field a flow may read: the flags and the configured ones."""
        return FLAG_FIELDS | frozenset(self.headers.values())


@dataclass(frozen=True, slots=True)
class CallerProfile:
    """What we know about the caller; flags default to False, extra fields to ''."""

    verified_customer: bool = False
    bad_actor: bool = False
    repeat_customer: bool = False
    extra: Mapping[str, str] = field(default_factory=lambda: types.MappingProxyType({}))

    def get(self, name: str) -> bool | str:
        if name in FLAG_FIELDS:
            return bool(getattr(self, name))
        return self.extra.get(name, "")

    def as_namespace(self, fields: frozenset[str]) -> types.SimpleNamespace:
        """The object expressions see as ``profile`` (every field present)."""
        return types.SimpleNamespace(**{name: self.get(name) for name in sorted(fields)})


def _header_values(headers: Mapping[str, Sequence[str]], name: str) -> list[str]:
    wanted = name.lower()
    values: list[str] = []
    for key, found in headers.items():
        if key.lower() == wanted:
            values.extend(found)
    return values


def parse_profile(
    headers: Mapping[str, Sequence[str]], config: ProfileConfig | None = None
) -> tuple[CallerProfile, list[str]]:
    """Build the caller profile from the initial INVITE's headers.

    Precedence: a dedicated header (reserved or configured) wins over the same field in
    ``User-to-User``. When a header is repeated, the first value is used (a warning notes any
    different later value). Returns the profile and the warnings to log.
    """
    config = config or ProfileConfig()
    warnings: list[str] = []
    values: dict[str, bool | str] = {}

    mappings: dict[str, str] = dict(FLAG_HEADERS)
    mappings.update(config.headers)
    for header, name in mappings.items():
        found = _header_values(headers, header)
        if not found:
            continue
        if any(v.strip() != found[0].strip() for v in found[1:]):
            warnings.append(f"{header}: repeated with different values; using the first")
        value = _field_value(name, found[0], header, warnings)
        if value is not None:
            values[name] = value

    if config.user_to_user:
        for raw in _header_values(headers, USER_TO_USER)[:1]:
            for key, text in _user_to_user_pairs(raw, warnings):
                name = key.strip().lower().replace("-", "_")
                if name not in config.fields or name in values:
                    continue  # unknown keys belong to someone else; headers take precedence
                value = _field_value(name, text, f"{USER_TO_USER} {key}", warnings)
                if value is not None:
                    values[name] = value

    flags = {name: bool(values.pop(name)) for name in FLAG_FIELDS if name in values}
    extra = {name: str(value) for name, value in values.items()}
    profile = CallerProfile(**flags, extra=types.MappingProxyType(extra))
    return profile, warnings


def _field_value(name: str, raw: str, source: str, warnings: list[str]) -> bool | str | None:
    text = raw.strip()
    if len(text) > MAX_VALUE_CHARS:
        warnings.append(f"{source}: value longer than {MAX_VALUE_CHARS} characters ignored")
        return None
    if name in FLAG_FIELDS:
        flag = parse_bool(text)
        if flag is None:
            warnings.append(
                f"{source}: invalid value {text[:40]!r} ignored (expected true/false/yes/no/1/0)"
            )
        return flag
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        warnings.append(f"{source}: value with control characters ignored")
        return None
    return text


def _user_to_user_pairs(raw: str, warnings: list[str]) -> list[tuple[str, str]]:
    """Decode an RFC 7433 ``User-to-User`` value into key=value pairs.

    ``uui-value = uui-data *(SEMI uui-param)``; ``encoding=hex`` is the only encoding RFC 7433
    defines. Carriers also send the data unencoded; we accept both: data that is not valid hex
    (and has no ``encoding`` parameter) is taken as text.
    """
    parts = raw.split(";")
    data = parts[0].strip().strip('"')
    params: dict[str, str] = {}
    extra_pairs: list[str] = []
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if sep and key.strip().lower() in _UUI_PARAMETERS:
            params[key.strip().lower()] = value.strip().strip('"')
        elif part.strip():
            extra_pairs.append(part)
    encoding = params.get("encoding", "").lower()
    payload: str
    if encoding not in ("", "hex"):
        warnings.append(f"{USER_TO_USER}: unsupported encoding {encoding[:20]!r} ignored")
        return []
    is_hex = bool(re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", data))
    if encoding == "hex" and not is_hex:
        warnings.append(f"{USER_TO_USER}: data is not valid hex; ignored")
        return []
    if is_hex and not extra_pairs:
        octets = binascii.unhexlify(data)
        # ISDN UUI (RFC 7434) starts with a protocol discriminator octet (e.g. 0x04 IA5).
        if octets and octets[0] < 0x20:
            octets = octets[1:]
        try:
            payload = octets.decode("utf-8")
        except UnicodeDecodeError:
            warnings.append(f"{USER_TO_USER}: hex data is not UTF-8 text; ignored")
            return []
    else:
        payload = ";".join([data, *extra_pairs])
    pairs: list[tuple[str, str]] = []
    for item in re.split(r"[;&]", payload):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            warnings.append(f"{USER_TO_USER}: item {item.strip()[:40]!r} is not key=value")
            continue
        pairs.append((key.strip(), value.strip()))
    return pairs


def headers_from_pairs(pairs: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """Group ``(name, value)`` pairs into the mapping :func:`parse_profile` takes."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    return grouped
