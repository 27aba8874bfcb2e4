"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr / addr-spec values (§20.10).

Values are immutable; ``str()`` gives the canonical wire form. Parsing is strict about
structure (scheme, host, port range) and keeps parameters in their original order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from .errors import RemoteProtocolError

Params = tuple[tuple[str, str | None], ...]

_SCHEMES = ("sip", "sips", "tel")
# RFC 3261 §25.1 hostname / IPv4 / [IPv6]; kept permissive on labels, strict on charset.
_HOST_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)$")
# RFC 3986 §3.1 / RFC 3261 §25.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
# RFC 3261 §25.1 token (an unquoted display-name is *(token LWS)).
_TOKENS_RE = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`'~]+)*$")
_LWS = frozenset(" \t\r\n")


class UriError(RemoteProtocolError):
    """A URI or name-addr could not be parsed."""


def split_quoted(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside quoted strings and angle brackets.

    RFC 3261 §7.3.1: commas inside quoted strings or ``<...>`` do not separate values;
    ``\\`` escapes inside quoted strings (§25.1 quoted-pair).
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)  # the common case: nothing can hide a separator
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    if quoted:
        raise UriError("unterminated quoted string")
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> Params:
    """Parse ``;name=value;flag`` (leading ``;`` optional) into ordered pairs.

    Names are compared case-insensitively (§19.1.4), so they are lower-cased; values keep
    their case (a tag or branch is case-sensitive in practice).
    """
    out: list[tuple[str, str | None]] = []
    items = split_quoted(text, ";")
    if not items[0].strip():
        items = items[1:]  # the optional leading ';' (or nothing at all)
    for raw in items:
        item = raw.strip()
        if not item:
            # RFC 4475 §3.1.2.1 (badinv01): ";;" is not a generic-param.
            raise UriError(f"empty parameter in {text[:80]!r}")
        name, eq, value = item.partition("=")
        name = name.strip().lower()
        if not name:
            raise UriError(f"empty parameter name in {text!r}")
        out.append((name, value.strip() if eq else None))
    return tuple(out)


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def get_param(params: Params, name: str) -> str | None:
    for key, value in params:
        if key == name:
            return value if value is not None else ""
    return None


def has_param(params: Params, name: str) -> bool:
    return any(key == name for key, _ in params)


def set_param(params: Params, name: str, value: str | None) -> Params:
    """Return ``params`` with ``name`` set (replaced in place, or appended)."""
    if has_param(params, name):
        return tuple((k, value) if k == name else (k, v) for k, v in params)
    return (*params, (name, value))


@dataclass(frozen=True, slots=True)
class Uri:
    """A ``sip:``/``sips:`` URI (RFC 3261 §19.1.1) or ``tel:`` URI (RFC 3966)."""

    scheme: str
    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: str | None = None

    @classmethod
    def parse(cls, text: str) -> Uri:
        text = text.strip()
        scheme, colon, rest = text.partition(":")
        if not colon or not _SCHEME_RE.match(scheme):
            raise UriError(f"malformed URI {text[:80]!r}")
        if any(c in _LWS for c in text):
            raise UriError(f"whitespace in URI {text[:80]!r}")
        scheme = scheme.lower()
        if scheme not in _SCHEMES:
            raise UriError(
                f"unsupported URI scheme in {text[:80]!r}",
                status_code=416,
                reason="Unsupported URI Scheme",
            )
        if scheme == "tel":
            number, _, params = rest.partition(";")
            if not number:
                raise UriError("empty tel URI")
            return cls(scheme="tel", host="", user=number, params=parse_params(params))
        # userinfo ends at the last '@' (it may contain '?', ';' and ',', RFC 4475
        # intmeth/semiuri); '@' cannot appear unescaped in params or headers (§25.1).
        userinfo, at, hostpart = rest.rpartition("@")
        if not at:
            userinfo, hostpart = "", rest
        hostpart, _, headers = hostpart.partition("?")
        hostport, semicolon, params = hostpart.partition(";")
        params = semicolon + params  # keep the ';' so that "host;;lr" is seen as empty
        user: str | None = None
        password: str | None = None
        if at:
            user, _, pw = userinfo.partition(":")
            password = pw if _ else None
            if not user:
                raise UriError(f"empty user part in {text[:80]!r}")
        host, port = split_hostport(hostport)
        return cls(
            scheme=scheme,
            host=host,
            user=user,
            password=password,
            port=port,
            params=parse_params(params),
            headers=headers or None,
        )

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{headers}"

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_params(self, **values: str | None) -> Uri:
        params = self.params
        for name, value in values.items():
            params = set_param(params, name, value)
        return replace(self, params=params)


def split_hostport(hostport: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` with IPv6 references in brackets (RFC 3261 §25.1 hostport)."""
    hostport = hostport.strip()
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise UriError(f"unterminated IPv6 reference {hostport[:80]!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        if rest and not rest.startswith(":"):
            raise UriError(f"garbage after IPv6 reference {hostport[:80]!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = hostport.partition(":")
    if not host or not _HOST_RE.match(host):
        raise UriError(f"invalid host {hostport[:80]!r}")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise UriError(f"invalid port {port_text[:20]!r}")
        port = int(port_text)
    return host, port


@dataclass(frozen=True, slots=True)
class NameAddr:
    """``[display-name] <uri> *(;param)`` or bare addr-spec (RFC 3261 §20.10, §20.20, §20.39).

    For a bare addr-spec, parameters after the URI belong to the header (e.g. ``;tag=``),
    as §20.10 specifies; URIs with ``,``, ``;`` or ``?`` must then be in angle brackets.
    """

    uri: Uri
    display_name: str | None = None
    params: Params = field(default=())
    raw_uri: str | None = None

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        text = text.strip()
        lt = _find_unquoted(text, "<")
        if lt >= 0:
            gt = text.find(">", lt)
            if gt < 0:
                raise UriError(f"missing '>' in {text[:80]!r}")
            display = text[:lt].strip()
            if display.startswith('"'):
                if not display.endswith('"') or len(display) < 2:
                    raise UriError(f"bad display name {display[:80]!r}")
                display = _unquote(display)
            elif display and not _TOKENS_RE.match(display):
                # RFC 4475 §3.1.2.13 (baddn): an unquoted display-name is tokens only.
                raise UriError(f"display name must be quoted: {display[:80]!r}")
            raw_uri = text[lt + 1 : gt]
            if raw_uri != raw_uri.strip():
                # §20.10 LAQUOT addr-spec RAQUOT: no LWS inside (RFC 4475 badaspec).
                raise UriError(f"whitespace inside <> in {text[:80]!r}")
            uri = Uri.parse(raw_uri)
            return cls(
                uri=uri,
                display_name=display or None,
                params=parse_params(text[gt + 1 :]),
                raw_uri=raw_uri,
            )
        # addr-spec: header params start at the first ';' (RFC 3261 §20.10).
        uri_text, _, params = text.partition(";")
        if "?" in uri_text or "," in uri_text:
            # §20.10: such a URI must be enclosed in <> (RFC 4475 §3.1.2.12 regbadct).
            raise UriError(f"URI with '?' or ',' must be in <>: {text[:80]!r}")
        return cls(uri=Uri.parse(uri_text), params=parse_params(params), raw_uri=uri_text)

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    def with_tag(self, tag: str) -> NameAddr:
        return replace(self, params=set_param(self.params, "tag", tag))

    def __str__(self) -> str:
        display = f'"{_quote(self.display_name)}" ' if self.display_name else ""
        uri = self.raw_uri if self.raw_uri is not None else str(self.uri)
        return f"{display}<{uri}>{format_params(self.params)}"


def _find_unquoted(text: str, ch: str) -> int:
    quoted = escaped = False
    for i, c in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if c == "\\":
                escaped = True
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ch:
            return i
    return -1


def _unquote(text: str) -> str:
    inner = text[1:-1]
    out: list[str] = []
    escaped = False
    for c in inner:
        if escaped:
            out.append(c)
            escaped = False
        elif c == "\\":
            escaped = True
        else:
            out.append(c)
    return "".join(out)


def _quote(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
