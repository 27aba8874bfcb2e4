"""SDP (RFC 8866, formerly RFC 4566) and the RFC 3264 offer/answer model for audio calls.

:class:`SessionDescription` parses and serialises session descriptions byte-exactly for
canonical input (unknown lines and attributes are kept). :func:`negotiate` is the answerer
(RFC 3264 §6), :func:`build_offer` and :func:`process_answer` are the offerer (§5, §7) and
:func:`renegotiate` answers a re-offer in an existing session (§8). Pure: no I/O, no clock.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

__all__ = [
    "INACTIVE",
    "RECVONLY",
    "SENDONLY",
    "SENDRECV",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Connection",
    "Direction",
    "Limits",
    "Media",
    "NegotiationResult",
    "NoCommonCodec",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "Timing",
    "build_offer",
    "negotiate",
    "process_answer",
    "renegotiate",
]


class SdpError(ValueError):
    """A session description is malformed, or cannot be used for an audio call."""


class NoCommonCodec(SdpError):
    """The offer has an audio stream but nothing we can accept on it (answer 488, RFC 3261
    §13.3.1.3: "Not Acceptable Here")."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while parsing; anything larger is rejected with :class:`SdpError`."""

    max_bytes: int = 16384
    max_lines: int = 256
    max_line_length: int = 1024
    max_media: int = 16


DEFAULT_LIMITS = Limits()


class Direction(enum.StrEnum):
    """Media direction attributes (RFC 8866 §6.7, RFC 3264 §5.1)."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, *, sends: bool, receives: bool) -> Direction:
        if sends and receives:
            return cls.SENDRECV
        if sends:
            return cls.SENDONLY
        if receives:
            return cls.RECVONLY
        return cls.INACTIVE


SENDRECV = Direction.SENDRECV
SENDONLY = Direction.SENDONLY
RECVONLY = Direction.RECVONLY
INACTIVE = Direction.INACTIVE

_DIRECTIONS = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<payload type> <encoding name>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    def __str__(self) -> str:
        tail = f"/{self.channels}" if self.channels is not None else ""
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        pt_text, _, rest = value.partition(" ")
        parts = rest.strip().split("/")
        if not (1 <= len(parts) <= 3) or not parts[0]:
            raise SdpError(f"bad rtpmap {value!r}")
        payload_type = _parse_payload_type(pt_text)
        where = f"rtpmap {value[:40]!r}"
        # RFC 8866 §6.6: a=rtpmap:<payload type> <encoding name>/<clock rate>[/<params>]
        clock_rate = (
            _parse_int(parts[1], where, "clock rate", maximum=10**7) if len(parts) > 1 else 0
        )
        channels = _parse_int(parts[2], where, "channels", maximum=255) if len(parts) > 2 else None
        if clock_rate <= 0 or (channels is not None and channels <= 0):
            raise SdpError(f"bad rtpmap {value!r}")
        return cls(payload_type, parts[0], clock_rate, channels)


# RFC 3551 §6 Table 4: payload types usable without an rtpmap (only those we implement).
STATIC_PAYLOAD_TYPES: dict[int, RtpMap] = {
    0: RtpMap(0, "PCMU", 8000),
    8: RtpMap(8, "PCMA", 8000),
}
_STATIC_BY_NAME = {m.encoding: m for m in STATIC_PAYLOAD_TYPES.values()}

TELEPHONE_EVENT = "telephone-event"
# RFC 4733 §3.2: events 0-15 are the DTMF digits 0-9, *, #, A-D; what our media plane handles.
_DTMF_EVENTS = frozenset(range(16))
DEFAULT_PTIME_MS = 20


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` or ``a=<name>:<value>`` (RFC 8866 §5.13), kept verbatim."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>``
    (RFC 8866 §5.2)."""

    username: str
    session_id: int
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (RFC 8866 §5.7).

    ``address`` keeps any multicast ``/ttl/count`` suffix; :attr:`host` drops it.
    """

    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"

    @property
    def host(self) -> str:
        return self.address.split("/", 1)[0]

    @property
    def is_hold_address(self) -> bool:
        """RFC 3264 §8.4 (after RFC 2543): ``c=IN IP4 0.0.0.0`` puts the stream on hold."""
        return self.host in ("0.0.0.0", "::")


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start-time> <stop-time>`` and its ``r=`` lines (RFC 8866 §5.9, §5.10)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Media:
    """One media description: the ``m=`` line and the lines that follow it (RFC 8866 §5.14).

    ``extra_lines`` keeps lines of types this module does not model (``(type, value)``);
    they are written after the attributes.
    """

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[str, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    extra_lines: tuple[tuple[str, str], ...] = ()

    def lines(self) -> Iterable[str]:
        ports = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        yield f"m={self.media} {ports} {self.proto} {' '.join(self.formats)}"
        if self.information is not None:
            yield f"i={self.information}"
        yield from (f"c={c}" for c in self.connections)
        yield from (f"b={b}" for b in self.bandwidths)
        if self.key is not None:
            yield f"k={self.key}"
        yield from (f"a={a}" for a in self.attributes)
        yield from (f"{t}={v}" for t, v in self.extra_lines)

    def attribute_values(self, name: str) -> list[str]:
        """Values of every ``a=<name>:<value>`` of this media (names match case-sensitively,
        RFC 8866 §5.13: attribute names are case-sensitive)."""
        return [a.value for a in self.attributes if a.name == name and a.value is not None]

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The rtpmap of ``payload_type``: its ``a=rtpmap``, else the RFC 3551 static one."""
        for value in self.attribute_values("rtpmap"):
            try:
                mapping = RtpMap.parse(value)
            except SdpError:
                continue
            if mapping.payload_type == payload_type:
                return mapping
        return STATIC_PAYLOAD_TYPES.get(payload_type)

    def fmtp(self, payload_type: int) -> str | None:
        """Format parameters of ``payload_type`` (``a=fmtp:<format> <params>``, §6.15)."""
        for value in self.attribute_values("fmtp"):
            fmt, _, params = value.partition(" ")
            if fmt == str(payload_type):
                return params.strip()
        return None

    @property
    def ptime_ms(self) -> int | None:
        """``a=ptime`` (RFC 8866 §6.4) when present and sensible (1-1000 ms)."""
        for value in self.attribute_values("ptime"):
            try:
                ptime = round(float(value))
            except (ValueError, OverflowError):  # "abc", "nan", "inf"
                continue
            if 1 <= ptime <= 1000:
                return ptime
        return None

    @property
    def direction(self) -> Direction | None:
        """The direction attribute of this media, if any (RFC 8866 §6.7)."""
        for attribute in self.attributes:
            if attribute.value is None and attribute.name in _DIRECTIONS:
                return Direction(attribute.name)
        return None


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole session description (RFC 8866 §5).

    ``bytes(sdp)`` writes CRLF-terminated lines in the order of RFC 8866 §5::

        v= o= s= i= u= e= p= c= b= (t= r=)... z= k= a=... then per media m= i= c= b= k= a=...

    Parsing accepts fields in any order within a section (real user agents vary) and LF-only
    line ends, so only canonical input round-trips byte for byte.
    """

    origin: Origin
    session_name: str = "-"
    version: int = 0
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[str, ...] = ()
    timings: tuple[Timing, ...] = (Timing(),)
    zone: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    media: tuple[Media, ...] = ()
    extra_lines: tuple[tuple[str, str], ...] = field(default=())

    # ---- serialisation ----------------------------------------------------------------------

    def lines(self) -> Iterable[str]:
        yield f"v={self.version}"
        yield f"o={self.origin}"
        yield f"s={self.session_name}"
        if self.information is not None:
            yield f"i={self.information}"
        if self.uri is not None:
            yield f"u={self.uri}"
        yield from (f"e={e}" for e in self.emails)
        yield from (f"p={p}" for p in self.phones)
        if self.connection is not None:
            yield f"c={self.connection}"
        yield from (f"b={b}" for b in self.bandwidths)
        for timing in self.timings:
            yield f"t={timing.start} {timing.stop}"
            yield from (f"r={r}" for r in timing.repeats)
        if self.zone is not None:
            yield f"z={self.zone}"
        if self.key is not None:
            yield f"k={self.key}"
        yield from (f"a={a}" for a in self.attributes)
        yield from (f"{t}={v}" for t, v in self.extra_lines)
        for media in self.media:
            yield from media.lines()

    def __bytes__(self) -> bytes:
        return "".join(line + "\r\n" for line in self.lines()).encode("utf-8")

    def __str__(self) -> str:
        return bytes(self).decode("utf-8")

    # ---- parsing ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | str, *, limits: Limits = DEFAULT_LIMITS) -> SessionDescription:
        """Parse a session description; raises :class:`SdpError` (and nothing else)."""
        if isinstance(data, bytes):
            if len(data) > limits.max_bytes:
                raise SdpError(f"SDP larger than {limits.max_bytes} bytes")
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                # RFC 8866 §5: the default charset is UTF-8 (ISO 10646).
                raise SdpError(f"SDP is not UTF-8 at byte {exc.start}") from None
        else:
            text = data
            if len(text) > limits.max_bytes:
                raise SdpError(f"SDP larger than {limits.max_bytes} bytes")
        # RFC 8866 §5: "lines are separated by CRLF ... parsers SHOULD be tolerant and also
        # accept records terminated with a single newline character."
        raw_lines = text.split("\n")
        if len(raw_lines) > limits.max_lines + 1:
            raise SdpError(f"SDP has more than {limits.max_lines} lines")
        fields: list[tuple[int, str, str]] = []
        for number, raw in enumerate(raw_lines, start=1):
            line = raw[:-1] if raw.endswith("\r") else raw
            if not line:
                continue  # blank lines (typically a trailing one) carry nothing
            if len(line) > limits.max_line_length:
                raise SdpError(f"line {number}: longer than {limits.max_line_length} characters")
            if any((ord(c) < 0x20 and c != "\t") or c == "\x7f" for c in line):
                raise SdpError(f"line {number}: control character")
            # RFC 8866 §5: "<type>=<value> where <type> MUST be exactly one case-significant
            # character and <value> is structured text ... no whitespace ... either side of =".
            if len(line) < 2 or line[1] != "=" or not ("a" <= line[0] <= "z"):
                raise SdpError(f"line {number}: not <type>=<value>: {line[:40]!r}")
            fields.append((number, line[0], line[2:]))
        return _Parser(fields, limits).parse()


class _Parser:
    def __init__(self, fields: list[tuple[int, str, str]], limits: Limits) -> None:
        self._fields = fields
        self._limits = limits

    def parse(self) -> SessionDescription:
        if not self._fields:
            raise SdpError("empty SDP")
        number, kind, value = self._fields[0]
        # RFC 8866 §5: a session description "begins with a "v=" line".
        if kind != "v":
            raise SdpError(f"line {number}: SDP must start with v=")
        if value != "0":
            raise SdpError(f"line {number}: unsupported SDP version {value!r}")
        session: dict[str, object] = {}
        lists: dict[str, list[object]] = {k: [] for k in "epbazx"}
        timings: list[Timing] = []
        media: list[Media] = []
        current: dict[str, object] | None = None
        for number, kind, value in self._fields[1:]:
            where = f"line {number}"
            if kind == "m":
                if current is not None:
                    media.append(_build_media(current))
                if len(media) >= self._limits.max_media:
                    raise SdpError(f"{where}: more than {self._limits.max_media} media")
                current = _parse_m_line(value, where)
                continue
            if current is not None:
                _media_field(current, kind, value, where)
                continue
            if kind in ("o", "s", "i", "u", "z", "k"):
                if kind in session:
                    raise SdpError(f"{where}: more than one {kind}= line in the session")
                session[kind] = _parse_origin(value, where) if kind == "o" else value
            elif kind == "v":
                raise SdpError(f"{where}: more than one v= line")
            elif kind == "c":
                if "c" in session:
                    raise SdpError(f"{where}: more than one c= line in the session")
                session["c"] = _parse_connection(value, where)
            elif kind == "t":
                timings.append(_parse_timing(value, where))
            elif kind == "r":
                if not timings:
                    raise SdpError(f"{where}: r= without t=")
                last = timings[-1]
                timings[-1] = replace(last, repeats=(*last.repeats, value))
            elif kind == "a":
                lists["a"].append(_parse_attribute(value, where))
            elif kind in "epb":
                lists[kind].append(value)
            else:
                lists["x"].append((kind, value))
        if current is not None:
            media.append(_build_media(current))
        origin = session.get("o")
        if not isinstance(origin, Origin):
            raise SdpError("SDP has no o= line")
        name = session.get("s")
        if not isinstance(name, str):
            raise SdpError("SDP has no s= line")
        connection = session.get("c")
        return SessionDescription(
            origin=origin,
            session_name=name,
            information=_opt_str(session.get("i")),
            uri=_opt_str(session.get("u")),
            emails=tuple(str(e) for e in lists["e"]),
            phones=tuple(str(p) for p in lists["p"]),
            connection=connection if isinstance(connection, Connection) else None,
            bandwidths=tuple(str(b) for b in lists["b"]),
            timings=tuple(timings),
            zone=_opt_str(session.get("z")),
            key=_opt_str(session.get("k")),
            attributes=tuple(a for a in lists["a"] if isinstance(a, Attribute)),
            media=tuple(media),
            extra_lines=tuple(x for x in lists["x"] if isinstance(x, tuple)),
        )


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _parse_int(text: str, where: str, what: str, *, maximum: int = 2**64 - 1) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise SdpError(f"{where}: {what} is not a number: {text[:24]!r}")
    value = int(text)
    if value > maximum:
        raise SdpError(f"{where}: {what} out of range: {value}")
    return value


def _is_small_number(text: str) -> bool:
    # str.isdigit() alone accepts non-ASCII digits such as "²" that int() rejects.
    return text.isascii() and text.isdigit() and len(text) <= 3


def _format_payload_type(fmt: str) -> int | None:
    """The RTP payload type an m= format names, or None (RFC 3551 §3: 0-127)."""
    return int(fmt) if _is_small_number(fmt) and int(fmt) <= 127 else None


def _parse_payload_type(text: str) -> int:
    payload_type = _format_payload_type(text)
    if payload_type is None:
        raise SdpError(f"bad payload type {text[:8]!r}")
    return payload_type


def _parse_origin(value: str, where: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SdpError(f"{where}: o= needs 6 fields separated by single spaces")
    username, sess_id, sess_version, nettype, addrtype, address = parts
    return Origin(
        username,
        _parse_int(sess_id, where, "sess-id"),
        _parse_int(sess_version, where, "sess-version"),
        nettype,
        addrtype,
        address,
    )


def _parse_connection(value: str, where: str) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SdpError(f"{where}: c= needs 3 fields separated by single spaces")
    return Connection(*parts)


def _parse_timing(value: str, where: str) -> Timing:
    parts = value.split(" ")
    if len(parts) != 2:
        raise SdpError(f"{where}: t= needs start and stop times")
    return Timing(
        _parse_int(parts[0], where, "start time"), _parse_int(parts[1], where, "stop time")
    )


def _parse_attribute(value: str, where: str) -> Attribute:
    name, colon, rest = value.partition(":")
    if not name or " " in name:
        raise SdpError(f"{where}: bad attribute name in a={value[:40]}")
    return Attribute(name, rest if colon else None)


def _parse_m_line(value: str, where: str) -> dict[str, object]:
    # RFC 8866 §5.14: m=<media> <port>[/<number of ports>] <proto> <fmt> ...
    parts = value.split(" ")
    if len(parts) < 4 or not all(parts):
        raise SdpError(f"{where}: m= needs media, port, proto and at least one format")
    port_text, slash, count_text = parts[1].partition("/")
    port = _parse_int(port_text, where, "port", maximum=65535)
    count = _parse_int(count_text, where, "number of ports", maximum=65535) if slash else None
    return {
        "media": parts[0],
        "port": port,
        "port_count": count,
        "proto": parts[2],
        "formats": tuple(parts[3:]),
        "c": [],
        "b": [],
        "a": [],
        "x": [],
    }


def _media_field(current: dict[str, object], kind: str, value: str, where: str) -> None:
    bucket = current.get(kind) if kind in "cbax" else None
    if kind == "c":
        assert isinstance(bucket, list)
        bucket.append(_parse_connection(value, where))
    elif kind == "b":
        assert isinstance(bucket, list)
        bucket.append(value)
    elif kind == "a":
        assert isinstance(bucket, list)
        bucket.append(_parse_attribute(value, where))
    elif kind in ("i", "k"):
        if kind in current:
            raise SdpError(f"{where}: more than one {kind}= line in a media description")
        current[kind] = value
    elif kind in ("v", "o", "s", "u", "e", "p", "t", "r", "z"):
        # RFC 8866 §5: these fields belong to the session section only.
        raise SdpError(f"{where}: {kind}= is not allowed after m=")
    else:
        extra = current["x"]
        assert isinstance(extra, list)
        extra.append((kind, value))


def _build_media(current: dict[str, object]) -> Media:
    def items(key: str) -> list[object]:
        value = current[key]
        assert isinstance(value, list)
        return value

    port, count, formats = current["port"], current["port_count"], current["formats"]
    assert isinstance(port, int) and (count is None or isinstance(count, int))
    assert isinstance(formats, tuple)
    return Media(
        media=str(current["media"]),
        port=port,
        port_count=count,
        proto=str(current["proto"]),
        formats=tuple(str(f) for f in formats),
        information=_opt_str(current.get("i")),
        connections=tuple(c for c in items("c") if isinstance(c, Connection)),
        bandwidths=tuple(str(b) for b in items("b")),
        key=_opt_str(current.get("k")),
        attributes=tuple(a for a in items("a") if isinstance(a, Attribute)),
        extra_lines=tuple(x for x in items("x") if isinstance(x, tuple)),
    )


# ---- offer/answer ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NegotiationResult:
    """What an offer/answer exchange settled for the call's audio stream.

    ``answer`` is the answer SDP: ours from :func:`negotiate`, the peer's from
    :func:`process_answer`. ``remote_*`` say where to send RTP and with which payload types
    (the peer's numbering); ``remote_direction``/``local_direction`` are the directions the
    peer and we declared for the stream.
    """

    answer: SessionDescription
    remote_address: str
    remote_port: int
    codec: str
    payload_type: int
    clock_rate: int
    dtmf_payload_type: int | None
    dtmf_events: str | None
    ptime_ms: int
    remote_direction: Direction
    local_direction: Direction
    on_hold: bool
    media_index: int


_USABLE_PROTOS = ("RTP/AVP",)


def _address_type(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address).version == 6 else "IP4"
    except ValueError:
        return "IP4"  # an FQDN (RFC 8866 §5.7 allows it); resolution is the caller's business


def _stream_direction(sdp: SessionDescription, media: Media) -> Direction:
    # RFC 8866 §6.7: a direction attribute at media level overrides the session level one;
    # "If none of the attributes "sendonly", "recvonly", "inactive", and "sendrecv" is present,
    # "sendrecv" SHOULD be assumed as the default".
    if media.direction is not None:
        return media.direction
    for attribute in sdp.attributes:
        if attribute.value is None and attribute.name in _DIRECTIONS:
            return Direction(attribute.name)
    return Direction.SENDRECV


def _stream_connection(sdp: SessionDescription, media: Media, where: str) -> Connection:
    # RFC 8866 §5.7: a media-level c= overrides the session-level one; one of them is required.
    if media.connections:
        return media.connections[0]
    if sdp.connection is not None:
        return sdp.connection
    raise SdpError(f"{where}: no c= line at session or media level")


def _parse_events(text: str) -> frozenset[int] | None:
    """RFC 4733 §2.4.1 event list (``0-11,16``); None when it cannot be parsed."""
    events: set[int] = set()
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        if not _is_small_number(low) or (dash and not _is_small_number(high)):
            return None
        first, last = int(low), int(high) if dash else int(low)
        if first > last or last > 255:
            return None
        events.update(range(first, last + 1))
    return frozenset(events)


def _format_events(events: Iterable[int]) -> str:
    ranges: list[str] = []
    ordered = sorted(events)
    start = previous = ordered[0]
    for event in [*ordered[1:], None]:
        if event is not None and event == previous + 1:
            previous = event
            continue
        ranges.append(str(start) if start == previous else f"{start}-{previous}")
        if event is not None:
            start = previous = event
    return ",".join(ranges)


def _dtmf_answer(media: Media, clock_rate: int) -> tuple[int, str] | None:
    """The offered telephone-event payload type and the events we answer for it."""
    for fmt in media.formats:
        payload_type = _format_payload_type(fmt)
        mapping = media.rtpmap(payload_type) if payload_type is not None else None
        if (
            mapping is None
            or mapping.encoding.lower() != TELEPHONE_EVENT
            or mapping.clock_rate != clock_rate
        ):
            continue
        params = media.fmtp(mapping.payload_type)
        # RFC 4733 §2.4.1: "If no "fmtp" line is present, ... events 0 through 15" are assumed.
        offered = _parse_events(params) if params else _DTMF_EVENTS
        if offered is None:
            continue
        common = offered & _DTMF_EVENTS
        if common:
            return mapping.payload_type, _format_events(common)
    return None


def _choose_codec(media: Media, supported: Sequence[str]) -> RtpMap | None:
    wanted = {name.upper() for name in supported}
    # RFC 3264 §6.1: the offer lists formats "in order of preference"; the answerer "SHOULD"
    # respect it, so take the first offered format we support, not our own favourite.
    for fmt in media.formats:
        payload_type = _format_payload_type(fmt)
        mapping = media.rtpmap(payload_type) if payload_type is not None else None
        if (
            mapping is not None
            and mapping.encoding.upper() in wanted
            and mapping.encoding.upper() in _STATIC_BY_NAME
            and mapping.clock_rate == 8000
            and mapping.channels in (None, 1)
        ):
            return mapping
    return None


def _first_audio(sdp: SessionDescription) -> tuple[int, Media]:
    active = [(i, m) for i, m in enumerate(sdp.media) if m.media == "audio" and m.port != 0]
    if not active:
        raise SdpError("no audio stream (m=audio with a non-zero port) in the offer")
    return active[0]


def _rejected(media: Media) -> Media:
    # RFC 3264 §6: "An offered stream MAY be rejected in the answer, for any reason. If a stream
    # is rejected, the offerer and answerer MUST NOT generate media ... To reject an offered
    # stream, the port number in the corresponding stream in the answer MUST be set to zero.
    # Any media formats listed are ignored. At least one MUST be present".
    return Media(media=media.media, port=0, proto=media.proto, formats=media.formats)


def negotiate(
    offer: SessionDescription,
    *,
    local_address: str,
    local_port: int,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    session_id: int,
    session_version: int,
    local_direction: Direction = SENDRECV,
    username: str = "switchhook",
) -> NegotiationResult:
    """Answer ``offer`` (RFC 3264 §6) for its first audio stream with a non-zero port.

    - codec: the first format in the offer's order whose encoding is in ``supported``;
    - ``telephone-event/8000`` is answered with the offer's payload type and the events of
      its fmtp limited to 0-15 (RFC 4733 §7.1.1);
    - ptime is echoed when offered, else 20 ms;
    - direction: the reverse of the offered one, limited by ``local_direction`` (§6.1);
    - every other m-line is rejected with port 0, so the answer has "the same number of
      "m=" lines as the offer ... in the same order" (§6).

    For a re-offer in an existing session (re-INVITE) pass ``session_version=previous + 1``
    (§8: the version "MUST increment by one") and the same ``session_id``, or use
    :func:`renegotiate`. Raises :class:`NoCommonCodec` (answer 488) or :class:`SdpError`.
    """
    if local_port <= 0 or local_port > 65535:
        raise SdpError(f"local port {local_port} out of range")
    if not username or any(c.isspace() for c in username):
        raise SdpError(f"bad o= username {username!r}")
    index, offered = _first_audio(offer)
    where = f"m-line {index + 1}"
    if offered.proto not in _USABLE_PROTOS:
        raise NoCommonCodec(f"{where}: transport {offered.proto} not supported")
    codec = _choose_codec(offered, supported)
    if codec is None:
        raise NoCommonCodec(f"{where}: none of {', '.join(supported)} offered")
    connection = _stream_connection(offer, offered, where)
    remote_direction = _stream_direction(offer, offered)
    # RFC 3264 §6.1: "If a stream is offered as sendonly, the corresponding stream MUST be
    # marked as recvonly or inactive in the answer. If a media stream is listed as recvonly in
    # the offer, the answer MUST be marked as sendonly or inactive ... If an offered media
    # stream is listed as inactive, it MUST be marked as inactive in the answer."
    answer_direction = Direction.of(
        sends=remote_direction.receives and local_direction.sends,
        receives=remote_direction.sends and local_direction.receives,
    )
    dtmf = _dtmf_answer(offered, codec.clock_rate)
    ptime = offered.ptime_ms or _session_ptime(offer) or DEFAULT_PTIME_MS

    formats = [str(codec.payload_type)]
    attributes = [Attribute("rtpmap", str(codec))]
    if dtmf is not None:
        formats.append(str(dtmf[0]))
        attributes.append(Attribute("rtpmap", f"{dtmf[0]} {TELEPHONE_EVENT}/{codec.clock_rate}"))
        attributes.append(Attribute("fmtp", f"{dtmf[0]} {dtmf[1]}"))
    attributes.append(Attribute("ptime", str(ptime)))
    attributes.append(Attribute(answer_direction.value))
    audio = Media(
        media="audio",
        port=local_port,
        proto=offered.proto,
        formats=tuple(formats),
        attributes=tuple(attributes),
    )
    media = tuple(audio if i == index else _rejected(m) for i, m in enumerate(offer.media))
    addrtype = _address_type(local_address)
    answer = SessionDescription(
        origin=Origin(username, session_id, session_version, "IN", addrtype, local_address),
        session_name="-",
        connection=Connection("IN", addrtype, local_address),
        # RFC 3264 §6: "The "t=" line in the answer MUST equal that of the offer."
        timings=offer.timings or (Timing(),),
        media=media,
    )
    return NegotiationResult(
        answer=answer,
        remote_address=connection.host,
        remote_port=offered.port,
        codec=codec.encoding.upper(),
        payload_type=codec.payload_type,
        clock_rate=codec.clock_rate,
        dtmf_payload_type=dtmf[0] if dtmf else None,
        dtmf_events=dtmf[1] if dtmf else None,
        ptime_ms=ptime,
        remote_direction=remote_direction,
        local_direction=answer_direction,
        on_hold=_on_hold(remote_direction, connection),
        media_index=index,
    )


def _session_ptime(sdp: SessionDescription) -> int | None:
    # Not where RFC 8866 puts ptime, but some user agents write it at session level.
    return Media("audio", 0, "RTP/AVP", ("0",), attributes=sdp.attributes).ptime_ms


def _on_hold(remote_direction: Direction, connection: Connection) -> bool:
    # RFC 3264 §8.4: the holding side marks the stream sendonly (or inactive if it was
    # recvonly); RFC 2543 user agents set the connection address to 0.0.0.0 instead.
    return not remote_direction.receives or connection.is_hold_address


def renegotiate(
    previous_answer: SessionDescription,
    offer: SessionDescription,
    *,
    supported: Sequence[str] = ("PCMU", "PCMA"),
    local_direction: Direction = SENDRECV,
) -> NegotiationResult:
    """Answer a re-offer (re-INVITE/UPDATE) in a session whose last answer we sent was
    ``previous_answer``, keeping our address, port, o= username and sess-id.

    RFC 3264 §8: "the "o=" line of the new SDP MUST be identical to that in the previous SDP,
    except that the version in the origin field MUST increment by one ... If the version in the
    origin line does not increment, the SDP MUST be identical to the SDP with that version
    number." So the version is incremented only when the answer actually changes.
    """
    index, audio = _first_audio(previous_answer)
    connection = _stream_connection(previous_answer, audio, f"m-line {index + 1}")
    origin = previous_answer.origin
    result = negotiate(
        offer,
        local_address=connection.host,
        local_port=audio.port,
        supported=supported,
        session_id=origin.session_id,
        session_version=origin.session_version,
        local_direction=local_direction,
        username=origin.username,
    )
    if result.answer == previous_answer:
        return result
    bumped = replace(
        result.answer,
        origin=replace(result.answer.origin, session_version=origin.session_version + 1),
    )
    return replace(result, answer=bumped)


def build_offer(
    local_address: str,
    local_port: int,
    *,
    codecs: Sequence[str] = ("PCMU", "PCMA"),
    dtmf_payload_type: int | None = 101,
    session_id: int,
    session_version: int,
    direction: Direction = SENDRECV,
    ptime_ms: int = DEFAULT_PTIME_MS,
    username: str = "switchhook",
) -> SessionDescription:
    """An offer with one audio stream (RFC 3264 §5) listing ``codecs`` in preference order,
    plus ``telephone-event/8000`` events 0-15 at ``dtmf_payload_type`` (RFC 4733 §2.4.1)."""
    if local_port <= 0 or local_port > 65535:
        raise SdpError(f"local port {local_port} out of range")
    if not username or any(c.isspace() for c in username):
        raise SdpError(f"bad o= username {username!r}")
    if not codecs:
        raise SdpError("no codecs to offer")
    mappings: list[RtpMap] = []
    for name in codecs:
        mapping = _STATIC_BY_NAME.get(name.upper())
        if mapping is None:
            raise SdpError(f"unknown codec {name!r} (known: {', '.join(_STATIC_BY_NAME)})")
        if mapping not in mappings:
            mappings.append(mapping)
    if dtmf_payload_type is not None and not 96 <= dtmf_payload_type <= 127:
        # RFC 3551 §3: dynamic payload types are 96-127.
        raise SdpError(f"telephone-event payload type {dtmf_payload_type} is not dynamic")
    if not 1 <= ptime_ms <= 1000:
        raise SdpError(f"ptime {ptime_ms} ms out of range")
    formats = [str(m.payload_type) for m in mappings]
    attributes = [Attribute("rtpmap", str(m)) for m in mappings]
    if dtmf_payload_type is not None:
        formats.append(str(dtmf_payload_type))
        attributes.append(Attribute("rtpmap", f"{dtmf_payload_type} {TELEPHONE_EVENT}/8000"))
        attributes.append(Attribute("fmtp", f"{dtmf_payload_type} 0-15"))
    attributes.append(Attribute("ptime", str(ptime_ms)))
    attributes.append(Attribute(direction.value))
    addrtype = _address_type(local_address)
    return SessionDescription(
        origin=Origin(username, session_id, session_version, "IN", addrtype, local_address),
        session_name="-",
        connection=Connection("IN", addrtype, local_address),
        media=(
            Media("audio", local_port, "RTP/AVP", tuple(formats), attributes=tuple(attributes)),
        ),
    )


def process_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiationResult:
    """Read the answer to our ``offer`` (RFC 3264 §7) for the offer's first audio stream.

    The payload types returned are the answer's: "the offerer MUST send using a payload type
    ... listed in the answer" (§7 via §6.1). Raises :class:`NoCommonCodec` when the stream was
    rejected or the answer lists nothing we offered, :class:`SdpError` for a malformed answer.
    """
    index, ours = _first_audio(offer)
    where = f"m-line {index + 1}"
    # RFC 3264 §6: the answer "MUST contain exactly the same number of "m=" lines as the offer".
    if len(answer.media) != len(offer.media):
        raise SdpError(f"answer has {len(answer.media)} m-lines, the offer had {len(offer.media)}")
    theirs = answer.media[index]
    if theirs.media != ours.media:
        raise SdpError(f"{where}: answer has {theirs.media} where we offered {ours.media}")
    if theirs.port == 0:
        raise NoCommonCodec(f"{where}: audio stream rejected")
    offered_names: set[str] = set()
    for fmt in ours.formats:
        payload_type = _format_payload_type(fmt)
        mapping = ours.rtpmap(payload_type) if payload_type is not None else None
        if mapping is not None:
            offered_names.add(mapping.encoding.upper())
    codec = _choose_codec(theirs, [n for n in offered_names if n in _STATIC_BY_NAME])
    if codec is None:
        raise NoCommonCodec(f"{where}: the answer lists none of the codecs we offered")
    connection = _stream_connection(answer, theirs, where)
    remote_direction = _stream_direction(answer, theirs)
    offered_dtmf = TELEPHONE_EVENT.upper() in offered_names
    dtmf = _dtmf_answer(theirs, codec.clock_rate) if offered_dtmf else None
    return NegotiationResult(
        answer=answer,
        remote_address=connection.host,
        remote_port=theirs.port,
        codec=codec.encoding.upper(),
        payload_type=codec.payload_type,
        clock_rate=codec.clock_rate,
        dtmf_payload_type=dtmf[0] if dtmf else None,
        dtmf_events=dtmf[1] if dtmf else None,
        ptime_ms=theirs.ptime_ms or ours.ptime_ms or DEFAULT_PTIME_MS,
        remote_direction=remote_direction,
        local_direction=_stream_direction(offer, ours),
        on_hold=_on_hold(remote_direction, connection),
        media_index=index,
    )
