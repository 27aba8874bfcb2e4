"""SIP messages: parsing and serialisation (RFC 3261 §7, §20, §25).

``parse_message`` turns one datagram (or one framed stream message) into a :class:`Request`
or :class:`Response`; ``bytes(message)`` serialises it with a recomputed Content-Length.
Parsing is bounded by :class:`Limits` and raises :class:`~sipstack.errors.ParseError` with a
status code and reason phrase; nothing else escapes. :class:`StreamFramer` splits a TCP/TLS
byte stream into messages by Content-Length (§18.3).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from .errors import ParseError, RemoteProtocolError
from .uri import (
    NameAddr,
    Params,
    Uri,
    UriError,
    format_params,
    get_param,
    parse_params,
    set_param,
    split_hostport,
    split_quoted,
)

SIP_VERSION = "SIP/2.0"


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while parsing; anything larger is rejected, never buffered."""

    max_message_bytes: int = 65535
    max_headers: int = 128
    max_line_bytes: int = 8192


DEFAULT_LIMITS = Limits()

# RFC 3261 §7.3.3 compact forms, plus the registered ones from later RFCs.
COMPACT_FORMS = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL = {
    name.lower(): name
    for name in (
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Allow",
        "Authorization",
        "Call-ID",
        "Call-Info",
        "Contact",
        "Content-Disposition",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "CSeq",
        "Date",
        "Error-Info",
        "Expires",
        "From",
        "In-Reply-To",
        "Max-Forwards",
        "Min-Expires",
        "MIME-Version",
        "Organization",
        "Priority",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "Proxy-Require",
        "Record-Route",
        "Reply-To",
        "Require",
        "Retry-After",
        "Route",
        "Server",
        "Subject",
        "Supported",
        "Timestamp",
        "To",
        "Unsupported",
        "User-Agent",
        "Via",
        "Warning",
        "WWW-Authenticate",
        "Event",
        "Refer-To",
        "Referred-By",
        "Session-Expires",
        "Allow-Events",
        "Reason",
        "RSeq",
        "RAck",
        "P-Asserted-Identity",
        "Privacy",
        "User-to-User",
        "Min-SE",
        "Replaces",
    )
}
_CANONICAL.update({k: v for k, v in COMPACT_FORMS.items()})

# Headers whose values are comma-separated lists (§7.3.1) and may be split into elements.
# Authentication headers, Date and friends contain commas that are not separators.
_LIST_HEADERS = frozenset(
    n.lower()
    for n in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Allow-Events",
        "Content-Encoding",
        "In-Reply-To",
        "Reason",
        "Warning",
    )
)

_VIA_PROTOCOL_RE = re.compile(r"\s*([^\s/]+)\s*/\s*([^\s/]+)\s*/\s*([^\s/;]+)\s+")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# §20: headers that appear at most once (RFC 4475 §3.3.8 multi01, §3.3.9 mcl01).
_SINGLE_HEADERS = (
    "From",
    "To",
    "Call-ID",
    "CSeq",
    "Max-Forwards",
    "Content-Length",
    "Content-Type",
)

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")


def canonical_name(name: str) -> str:
    """The canonical spelling of a header name; compact forms expand (§7.3.3)."""
    return _CANONICAL.get(name.lower(), name)


class Headers:
    """Ordered multi-map of header fields, looked up case-insensitively by canonical name.

    Each stored entry is one header *line* as received (a comma list stays one entry);
    :meth:`get_all` splits list headers into elements.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(n), v) for n, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def copy(self) -> Headers:
        new = Headers()
        new._items = list(self._items)
        return new

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of ``name`` (the whole line for list headers)."""
        key = canonical_name(name).lower()
        for n, v in self._items:
            if n.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, comma lists split into elements (§7.3.1)."""
        key = canonical_name(name).lower()
        out: list[str] = []
        split = key in _LIST_HEADERS
        for n, v in self._items:
            if n.lower() == key:
                if split:
                    try:
                        parts = split_quoted(v, ",")
                    except UriError as exc:  # only ParseError may leave the parser
                        raise ParseError(f"bad {n}: {exc}", reason=f"Bad {n}") from None
                    out.extend(p.strip() for p in parts if p.strip())
                else:
                    out.append(v)
        return out

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` line by one line with ``value`` (at the first one's place)."""
        canon = canonical_name(name)
        key = canon.lower()
        out: list[tuple[str, str]] = []
        placed = False
        for n, v in self._items:
            if n.lower() == key:
                if not placed:
                    out.append((canon, value))
                    placed = True
            else:
                out.append((n, v))
        if not placed:
            out.append((canon, value))
        self._items = out

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [(n, v) for n, v in self._items if n.lower() != key]


@dataclass(frozen=True, slots=True)
class Via:
    """One Via element (RFC 3261 §20.42, RFC 3581 rport/received)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    @classmethod
    def parse(cls, text: str) -> Via:
        # §20.42 / §25.1: LWS is allowed around the "/" of sent-protocol (RFC 4475 wsinv).
        match = _VIA_PROTOCOL_RE.match(text)
        if match is None:
            raise ParseError(f"bad Via protocol {text.strip()[:40]!r}", reason="Bad Via")
        name, version, transport = match.group(1, 2, 3)
        if name.upper() != "SIP" or version != "2.0" or not _is_token(transport):
            raise ParseError(f"bad Via protocol {text.strip()[:40]!r}", reason="Bad Via")
        rest = text[match.end() :].strip()
        parts = [name, version, transport]
        sent_by, semicolon, params = rest.partition(";")
        params = semicolon + params  # keep the ';' so that "host;;x" is seen as empty
        try:
            host, port = split_hostport(sent_by)
            parsed_params = parse_params(params)
        except UriError as exc:
            raise ParseError(f"bad Via: {exc}", reason="Bad Via") from None
        return cls(transport=parts[2].upper(), host=host, port=port, params=parsed_params)

    @property
    def branch(self) -> str | None:
        return get_param(self.params, "branch")

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def with_param(self, name: str, value: str | None) -> Via:
        return Via(self.transport, self.host, self.port, set_param(self.params, name, value))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


@dataclass(frozen=True, slots=True)
class CSeq:
    """``CSeq: <number> <method>`` (RFC 3261 §20.16): number < 2**31."""

    number: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        num, _, method = text.strip().partition(" ")
        method = method.strip()
        if not num.isdigit() or len(num) > 10 or int(num) >= 2**31 or not _is_token(method):
            raise ParseError(f"bad CSeq {text[:40]!r}", reason="Bad CSeq")
        return cls(int(num), method)

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def _is_token(text: str) -> bool:
    # issuperset walks the string in C: same test as all(c in _TOKEN_CHARS for c in text).
    return bool(text) and _TOKEN_CHARS.issuperset(text)


@dataclass(slots=True, eq=False)
class _Message:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    # --- typed accessors for the headers every message must carry (§8.1.1) ---
    @property
    def call_id(self) -> str:
        value = self.headers.get("Call-ID")
        if not value:
            raise ParseError("missing Call-ID", reason="Missing Call-ID")
        return value.strip()

    @property
    def cseq(self) -> CSeq:
        value = self.headers.get("CSeq")
        if value is None:
            raise ParseError("missing CSeq", reason="Missing CSeq")
        return CSeq.parse(value)

    @property
    def from_(self) -> NameAddr:
        return _name_addr(self.headers, "From")

    @property
    def to(self) -> NameAddr:
        return _name_addr(self.headers, "To")

    @property
    def vias(self) -> list[Via]:
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise ParseError("missing Via", reason="Missing Via")
        return Via.parse(values[0])

    @property
    def contacts(self) -> list[NameAddr]:
        out = []
        for value in self.headers.get_all("Contact"):
            if value.strip() == "*":
                continue
            out.append(_parse_name_addr(value, "Contact"))
        return out

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def _serialize(self, start_line: str) -> bytes:
        lines = [start_line]
        for name, value in self.headers:
            if name == "Content-Length":
                continue
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(self.body)}")
        head = "\r\n".join(lines) + "\r\n\r\n"
        return head.encode("utf-8") + self.body


def _name_addr(headers: Headers, name: str) -> NameAddr:
    value = headers.get(name)
    if value is None:
        raise ParseError(f"missing {name}", reason=f"Missing {name}")
    return _parse_name_addr(value, name)


def _parse_name_addr(value: str, name: str) -> NameAddr:
    try:
        return NameAddr.parse(value)
    except RemoteProtocolError as exc:
        raise ParseError(
            f"bad {name}: {exc}", status_code=exc.status_code, reason=f"Bad {name}"
        ) from None


@dataclass(slots=True, eq=False)
class Request(_Message):
    method: str = "OPTIONS"
    uri: str = ""

    @property
    def request_uri(self) -> Uri:
        return Uri.parse(self.uri)

    def __bytes__(self) -> bytes:
        return self._serialize(f"{self.method} {self.uri} {SIP_VERSION}")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


@dataclass(slots=True, eq=False)
class Response(_Message):
    status_code: int = 200
    reason: str = "OK"

    def __bytes__(self) -> bytes:
        return self._serialize(f"{SIP_VERSION} {self.status_code} {self.reason}")

    def __repr__(self) -> str:
        return f"<Response {self.status_code} {self.reason}>"


Message = Request | Response

REASON_PHRASES = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers a response copies from its request (RFC 3261 §8.2.6.2).
_COPIED_TO_RESPONSE = ("Via", "From", "To", "Call-ID", "CSeq")


def make_response(
    request: Request,
    status_code: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> Response:
    """Build a response to ``request`` per §8.2.6.2: Via/From/To/Call-ID/CSeq copied, To tag
    added when given and absent (a 100 Trying never carries one, §8.2.6.2)."""
    out = Headers()
    for name, value in request.headers:
        if name in _COPIED_TO_RESPONSE:
            if name == "To" and to_tag is not None and status_code > 100:
                to = NameAddr.parse(value)
                if to.tag is None:
                    value = str(to.with_tag(to_tag))
            out.add(name, value)
    if status_code == 100 and "Timestamp" in request.headers:
        out.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in headers:
        out.add(name, value)
    return Response(
        headers=out,
        body=body,
        status_code=status_code,
        reason=reason or REASON_PHRASES.get(status_code, "Unknown"),
    )


@dataclass(frozen=True, slots=True)
class Answerable:
    """What survives of a malformed request so that a 400 can still be built (§21.4.1)."""

    method: str
    headers: Headers


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Request | Response:
    """Parse one complete SIP message.

    Raises :class:`ParseError` (with ``status_code``, ``reason`` and, for requests whose
    routing headers survived, ``answerable``) for anything malformed or over ``limits``.
    """
    if len(data) > limits.max_message_bytes:
        raise ParseError(
            f"message of {len(data)} bytes exceeds {limits.max_message_bytes}",
            status_code=513,
            reason="Message Too Large",
        )
    # RFC 3261 §7.5: implementations SHOULD ignore CRLFs before the start line.
    data = data.lstrip(b"\r\n")
    sep = data.find(b"\r\n\r\n")
    if sep >= 0:
        head, body = data[:sep], data[sep + 4 :]
    else:
        lf = data.find(b"\n\n")
        if lf < 0:
            raise ParseError("no empty line after the headers", reason="Incomplete Message")
        head, body = data[:lf], data[lf + 2 :]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError("headers are not valid UTF-8", reason="Bad Encoding") from None
    lines = text.replace("\r\n", "\n").split("\n")
    start = lines[0]
    if len(start) > limits.max_line_bytes:
        raise ParseError(
            "start line too long",
            status_code=414 if " sip" in start[:64] else 400,
            reason="Start Line Too Long",
        )
    try:
        message: Request | Response = _parse_start_line(start)
    except ParseError as exc:
        # A bad request line still gets an answer (400/505) when its headers are usable.
        method = start.split(" ", 1)[0]
        if _is_token(method) and not start.startswith("SIP/"):
            try:
                exc.answerable = Answerable(method, Headers(_unfold(lines[1:], limits)))
            except ParseError:
                pass
        raise
    header_lines = _unfold(lines[1:], limits)
    answerable = None
    for name, value in header_lines:
        message.headers.add(name, value)
    if isinstance(message, Request):
        answerable = Answerable(message.method, message.headers)
    try:
        _check_mandatory(message)
        body = _frame_body(message, body)
    except ParseError as exc:
        exc.answerable = answerable
        raise
    message.body = body
    return message


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        parts = line.split(" ", 2)
        if len(parts) < 2 or parts[0] != SIP_VERSION:
            raise ParseError(f"bad status line {line[:60]!r}", reason="Bad Status Line")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise ParseError(f"bad status code {code[:10]!r}", reason="Bad Status Line")
        return Response(status_code=int(code), reason=parts[2] if len(parts) > 2 else "")
    parts = line.split(" ")
    if len(parts) != 3:
        raise ParseError(f"bad request line {line[:60]!r}", reason="Bad Request Line")
    method, uri, version = parts
    if not _is_token(method):
        raise ParseError(f"bad method {method[:20]!r}", reason="Bad Request Line")
    if version != SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise ParseError(
                f"unsupported version {version[:20]!r}",
                status_code=505,
                reason="Version Not Supported",
            )
        raise ParseError(f"bad request line {line[:60]!r}", reason="Bad Request Line")
    if not _SCHEME_RE.match(uri):
        # Unknown but well-formed schemes parse; the UA answers 416 (§8.2.2.1).
        raise ParseError(f"bad Request-URI {uri[:60]!r}", reason="Bad Request-URI")
    return Request(method=method, uri=uri)


def _unfold(lines: list[str], limits: Limits) -> list[tuple[str, str]]:
    """Split header lines, joining folded continuation lines (§7.3.1 LWS)."""
    out: list[tuple[str, str]] = []
    for line in lines:
        if len(line) > limits.max_line_bytes:
            raise ParseError("header line too long", reason="Header Too Long")
        if line[:1] in (" ", "\t"):
            if not out:
                raise ParseError("continuation line before any header", reason="Bad Header")
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        if not line:
            continue
        name, colon, value = line.partition(":")
        name = name.rstrip(" \t")
        if not colon or not _is_token(name):
            raise ParseError(f"bad header line {line[:60]!r}", reason="Bad Header")
        out.append((name, value.strip()))
        if len(out) > limits.max_headers:
            raise ParseError(f"more than {limits.max_headers} headers", reason="Too Many Headers")
    return out


def _check_mandatory(message: Request | Response) -> None:
    """§8.1.1: To, From, CSeq, Call-ID, Max-Forwards (requests) and Via are mandatory."""
    headers = message.headers
    # One pass over the header lines instead of one per checked name (hot path).
    counts: dict[str, int] = {}
    for n, _ in headers:
        counts[n] = counts.get(n, 0) + 1
    present = {n.lower() for n in counts}
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name.lower() not in present:
            raise ParseError(f"missing {name}", reason=f"Missing {name}")
    for name in _SINGLE_HEADERS:
        if counts.get(name, 0) > 1:
            raise ParseError(f"more than one {name}", reason=f"Multiple {name}")
    cseq = message.cseq  # validates
    message.top_via  # noqa: B018 - validates the top Via
    for accessor in ("from_", "to"):
        try:
            getattr(message, accessor)
        except ParseError as exc:
            # RFC 4475 §3.3.4 (unksm2): a well-formed URI of another scheme in From/To must
            # not fail the parser; whoever needs a SIP URI there answers 416.
            if exc.status_code != 416:
                raise
    if isinstance(message, Request):
        if cseq.method != message.method and not (message.method == "ACK" and cseq.method == "ACK"):
            raise ParseError(
                "CSeq method does not match the request method", reason="CSeq Method Mismatch"
            )
        max_forwards = headers.get("Max-Forwards")
        if max_forwards is not None and (
            # leading zeros are legal (RFC 4475 wsinv "0068"); the value is 0-255 (§20.22)
            not max_forwards.isdigit() or len(max_forwards) > 10 or int(max_forwards) > 255
        ):
            raise ParseError(f"bad Max-Forwards {max_forwards[:10]!r}", reason="Bad Max-Forwards")


def _frame_body(message: Request | Response, body: bytes) -> bytes:
    """§18.3 / §20.14: the body is exactly Content-Length bytes; on datagrams, extra bytes
    are discarded and a shorter body is an error."""
    value = message.headers.get("Content-Length")
    if value is None:
        return body  # allowed on UDP (§20.14): the body runs to the end of the datagram
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        raise ParseError(f"bad Content-Length {value[:20]!r}", reason="Bad Content-Length")
    length = int(value)
    if length > len(body):
        raise ParseError(
            f"Content-Length {length} exceeds the {len(body)} body bytes", reason="Truncated Body"
        )
    return body[:length]


class StreamFramer:
    """Splits a reliable byte stream into SIP messages (RFC 3261 §18.3).

    Feed bytes with :meth:`feed`; :meth:`messages` yields complete message byte strings.
    Keep-alive CRLFs between messages (RFC 5626 §3.5.1) are skipped. A header block or
    Content-Length over the limits raises :class:`ParseError`: the connection must close.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._buffer = bytearray()
        self._limits = limits

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        out: list[bytes] = []
        while True:
            while self._buffer[:2] == b"\r\n":
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > self._limits.max_message_bytes:
                    raise ParseError(
                        "header block too large", status_code=513, reason="Message Too Large"
                    )
                return out
            head = bytes(self._buffer[:end])
            length = _content_length(head)
            total = end + 4 + length
            if total > self._limits.max_message_bytes:
                raise ParseError("message too large", status_code=513, reason="Message Too Large")
            if len(self._buffer) < total:
                return out
            out.append(bytes(self._buffer[:total]))
            del self._buffer[:total]


def _content_length(head: bytes) -> int:
    """Content-Length is mandatory on streams (§20.14); absent means 0 per §18.3."""
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if colon and name.strip().lower() in (b"content-length", b"l"):
            value = value.strip()
            if not value.isdigit() or len(value) > 9:
                raise ParseError("bad Content-Length", reason="Bad Content-Length")
            return int(value)
    return 0
