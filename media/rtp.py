"""RTP and RTCP wire objects (RFC 3550): parse from bytes, serialise with ``bytes()``.

The dataclasses here are for inspection, tests and the control path. The per-packet send
path uses :class:`RtpHeaderWriter`, which packs the fixed header with one ``struct`` call and
never builds a dataclass.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

from media.errors import RtcpParseError, RtpParseError

__all__ = [
    "RTCP_BYE",
    "RTCP_RR",
    "RTCP_SDES",
    "RTCP_SR",
    "RTP_HEADER_SIZE",
    "Bye",
    "ReceiverReport",
    "ReportBlock",
    "RtcpPacket",
    "RtcpUnknown",
    "RtpHeaderExtension",
    "RtpHeaderWriter",
    "RtpPacket",
    "SdesChunk",
    "SenderReport",
    "SourceDescription",
    "is_rtcp",
    "rtp_payload_offset",
]

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
SEQ_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32

_HEADER = struct.Struct("!BBHII")
_EXT_HEADER = struct.Struct("!HH")

# RFC 3550 §12.1 RTCP packet types.
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpHeaderExtension:
    """RFC 3550 §5.3.1 header extension: 16-bit profile-defined id + 32-bit-aligned data."""

    profile: int
    data: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1).

    ``padding`` is the number of padding octets (0 means the P bit is clear); it counts the
    final length octet too, as on the wire. Padding content is serialised as zeros.
    """

    version: int = RTP_VERSION
    padding: int = 0
    extension: RtpHeaderExtension | None = None
    csrc: tuple[int, ...] = ()
    marker: bool = False
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP datagram; raise :class:`RtpParseError` if it is malformed (§5.1)."""
        size = len(data)
        if size < RTP_HEADER_SIZE:
            raise RtpParseError(f"RTP packet too short: {size} bytes < {RTP_HEADER_SIZE}")
        first, second, seq, timestamp, ssrc = _HEADER.unpack_from(data, 0)
        version = first >> 6
        if version != RTP_VERSION:
            raise RtpParseError(f"RTP version {version} != 2")
        csrc_count = first & 0x0F
        offset = RTP_HEADER_SIZE + 4 * csrc_count
        if offset > size:
            raise RtpParseError(f"RTP CSRC list ({csrc_count} entries) overruns packet")
        csrc = struct.unpack_from(f"!{csrc_count}I", data, RTP_HEADER_SIZE)
        extension = None
        if first & 0x10:
            if offset + 4 > size:
                raise RtpParseError("RTP header extension header overruns packet")
            profile, words = _EXT_HEADER.unpack_from(data, offset)
            offset += 4
            if offset + 4 * words > size:
                raise RtpParseError(f"RTP header extension ({words} words) overruns packet")
            extension = RtpHeaderExtension(
                profile=profile, data=bytes(data[offset : offset + 4 * words])
            )
            offset += 4 * words
        end = size
        padding = 0
        if first & 0x20:
            # §5.1: "The last octet of the padding contains a count of how many padding
            # octets should be ignored, including itself."
            padding = data[-1]
            if padding == 0 or offset + padding > size:
                raise RtpParseError(f"RTP padding count {padding} invalid for packet")
            end = size - padding
        return cls(
            version=version,
            padding=padding,
            extension=extension,
            csrc=tuple(csrc),
            marker=bool(second & 0x80),
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
        )

    def __bytes__(self) -> bytes:
        if len(self.csrc) > 15:
            raise ValueError("at most 15 CSRC identifiers")
        first = (self.version << 6) | len(self.csrc)
        if self.padding:
            first |= 0x20
        if self.extension is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            _HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension is not None:
            ext = self.extension.data
            if len(ext) % 4:
                raise ValueError("header extension data must be a multiple of 4 octets")
            parts.append(_EXT_HEADER.pack(self.extension.profile, len(ext) // 4))
            parts.append(ext)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes((self.padding,)))
        return b"".join(parts)


def rtp_payload_offset(data: bytes) -> tuple[int, int]:
    """Return ``(start, end)`` of the payload of an RTP datagram without building objects.

    For the receive hot path; raises :class:`RtpParseError` like :meth:`RtpPacket.parse`.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE or data[0] >> 6 != RTP_VERSION:
        raise RtpParseError("not an RTP packet")
    first = data[0]
    offset = RTP_HEADER_SIZE + 4 * (first & 0x0F)
    if first & 0x10:
        if offset + 4 > size:
            raise RtpParseError("RTP header extension header overruns packet")
        offset += 4 + 4 * ((data[offset + 2] << 8) | data[offset + 3])
    end = size
    if first & 0x20:
        end = size - data[-1]
        if data[-1] == 0:
            raise RtpParseError("RTP padding count 0")
    if offset > end:
        raise RtpParseError("RTP header overruns packet")
    return offset, end


def is_rtcp(data: bytes) -> bool:
    """True if a datagram looks like RTCP (RFC 5761 §4: PT 200-204 in the second octet)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class RtpHeaderWriter:
    """Hot-path RTP header builder for one outgoing stream (RFC 3550 §5.1).

    Holds the SSRC, the next sequence number and the current media timestamp. ``pack``
    returns ``header + payload`` and increments the sequence number mod 2**16; the media
    timestamp is advanced separately with ``advance`` once per packetisation interval, so
    it keeps running through silence (§5.1: "the timestamp ... increments monotonically and
    linearly in time") and DTMF events can reuse their start timestamp (RFC 4733 §2.5.1.2).
    """

    __slots__ = ("_pack", "payload_type", "sequence_number", "ssrc", "timestamp")

    def __init__(
        self, *, ssrc: int, sequence_number: int, timestamp: int, payload_type: int
    ) -> None:
        self.ssrc = ssrc & 0xFFFFFFFF
        self.sequence_number = sequence_number & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF
        self.payload_type = payload_type & 0x7F
        self._pack = _HEADER.pack

    @classmethod
    def random(cls, rng: random.Random, payload_type: int) -> RtpHeaderWriter:
        """Random SSRC, initial sequence number and timestamp, as §5.1 recommends."""
        return cls(
            ssrc=rng.getrandbits(32),
            sequence_number=rng.getrandbits(16),
            timestamp=rng.getrandbits(32),
            payload_type=payload_type,
        )

    def pack(self, payload: bytes, marker: bool = False) -> bytes:
        """Header for the stream's payload type at the current timestamp, then ``payload``."""
        seq = self.sequence_number
        self.sequence_number = (seq + 1) & 0xFFFF
        return (
            self._pack(
                0x80,
                (0x80 | self.payload_type) if marker else self.payload_type,
                seq,
                self.timestamp,
                self.ssrc,
            )
            + payload
        )

    def pack_with(
        self, payload: bytes, *, payload_type: int, marker: bool, timestamp: int
    ) -> bytes:
        """Like :meth:`pack` with an explicit payload type and timestamp (telephone-event)."""
        seq = self.sequence_number
        self.sequence_number = (seq + 1) & 0xFFFF
        second = (0x80 if marker else 0) | (payload_type & 0x7F)
        return self._pack(0x80, second, seq, timestamp & 0xFFFFFFFF, self.ssrc) + payload

    def advance(self, samples: int) -> None:
        """Advance the media timestamp by ``samples`` clock units, mod 2**32."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF


# --------------------------------------------------------------------------------------------
# RTCP (RFC 3550 §6.4-§6.6)

_RTCP_HEADER = struct.Struct("!BBH")
_REPORT_BLOCK = struct.Struct("!IB3sIIII")
_SR_INFO = struct.Struct("!IQIII")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    """Reception report block (RFC 3550 §6.4.1). ``cumulative_lost`` is signed 24-bit."""

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int = 0
    delay_since_last_sr: int = 0

    def __bytes__(self) -> bytes:
        lost = self.cumulative_lost
        lost = max(-(1 << 23), min((1 << 23) - 1, lost)) & 0xFFFFFF
        return _REPORT_BLOCK.pack(
            self.ssrc,
            self.fraction_lost & 0xFF,
            lost.to_bytes(3, "big"),
            self.highest_sequence & 0xFFFFFFFF,
            self.jitter & 0xFFFFFFFF,
            self.last_sr & 0xFFFFFFFF,
            self.delay_since_last_sr & 0xFFFFFFFF,
        )

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, fraction, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        return cls(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=int.from_bytes(lost, "big", signed=True),
            highest_sequence=highest,
            jitter=jitter,
            last_sr=lsr,
            delay_since_last_sr=dlsr,
        )


def _rtcp_header(count: int, packet_type: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP body must be 32-bit aligned")
    # §6.4.1: "length: ... in 32-bit words minus one, including the header".
    return _RTCP_HEADER.pack(0x80 | (count & 0x1F), packet_type, len(body) // 4) + body


def _pad4(data: bytes) -> bytes:
    return data + bytes(-len(data) % 4)


class RtcpPacket:
    """Base of RTCP packets; :meth:`parse` splits a compound packet (RFC 3550 §6.1)."""

    __slots__ = ()
    packet_type: ClassVar[int] = 0

    @staticmethod
    def parse(data: bytes) -> tuple[RtcpPacket, ...]:
        """Parse a compound RTCP packet; raise :class:`RtcpParseError` when malformed.

        §6.1: every packet carries version 2 and a length that must stay within the datagram;
        only the last packet may carry padding.
        """
        packets: list[RtcpPacket] = []
        offset = 0
        size = len(data)
        if size < 4:
            raise RtcpParseError(f"RTCP packet too short: {size} bytes")
        while offset < size:
            if offset + 4 > size:
                raise RtcpParseError("truncated RTCP header")
            first, packet_type, length = _RTCP_HEADER.unpack_from(data, offset)
            if first >> 6 != RTP_VERSION:
                raise RtcpParseError(f"RTCP version {first >> 6} != 2")
            end = offset + 4 + 4 * length
            if end > size:
                raise RtcpParseError(f"RTCP length {length} overruns compound packet")
            body_end = end
            if first & 0x20:
                if end != size:
                    raise RtcpParseError("RTCP padding only allowed on the last packet")
                pad = data[end - 1]
                if pad == 0 or offset + 4 + pad > end:
                    raise RtcpParseError(f"RTCP padding count {pad} invalid")
                body_end = end - pad
            body = bytes(data[offset + 4 : body_end])
            count = first & 0x1F
            parser = _PARSERS.get(packet_type)
            if parser is None:
                packets.append(RtcpUnknown(packet_type=packet_type, count=count, body=body))
            else:
                packets.append(parser(count, body))
            offset = end
        return tuple(packets)

    @staticmethod
    def compound(packets: Iterable[RtcpPacket]) -> bytes:
        """Serialise packets back to back into one compound datagram."""
        return b"".join(bytes(p) for p in packets)

    def __bytes__(self) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError


def _parse_blocks(count: int, body: bytes, offset: int) -> tuple[tuple[ReportBlock, ...], int]:
    if offset + 24 * count > len(body):
        raise RtcpParseError(f"{count} report blocks overrun RTCP packet")
    blocks = tuple(ReportBlock.parse(body, offset + 24 * i) for i in range(count))
    return blocks, offset + 24 * count


@dataclass(frozen=True, slots=True, kw_only=True)
class SenderReport(RtcpPacket):
    """SR (RFC 3550 §6.4.1). ``ntp_timestamp`` is the 64-bit NTP fixed-point value."""

    packet_type: ClassVar[int] = RTCP_SR
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < _SR_INFO.size:
            raise RtcpParseError("RTCP SR too short")
        ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body, 0)
        blocks, end = _parse_blocks(count, body, _SR_INFO.size)
        return cls(
            ssrc=ssrc,
            ntp_timestamp=ntp,
            rtp_timestamp=rtp_ts,
            packet_count=packets,
            octet_count=octets,
            reports=blocks,
            extension=body[end:],
        )

    def __bytes__(self) -> bytes:
        body = _SR_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        body += b"".join(bytes(b) for b in self.reports) + self.extension
        return _rtcp_header(len(self.reports), RTCP_SR, body)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceiverReport(RtcpPacket):
    """RR (RFC 3550 §6.4.2)."""

    packet_type: ClassVar[int] = RTCP_RR
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    @classmethod
    def _parse(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtcpParseError("RTCP RR too short")
        (ssrc,) = struct.unpack_from("!I", body, 0)
        blocks, end = _parse_blocks(count, body, 4)
        return cls(ssrc=ssrc, reports=blocks, extension=body[end:])

    def __bytes__(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + b"".join(bytes(b) for b in self.reports)
        return _rtcp_header(len(self.reports), RTCP_RR, body + self.extension)


@dataclass(frozen=True, slots=True, kw_only=True)
class SdesChunk:
    """One SDES chunk (RFC 3550 §6.5): SSRC/CSRC plus (item type, value) pairs; 1 = CNAME."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __bytes__(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for item_type, value in self.items:
            if not 1 <= item_type <= 255 or len(value) > 255:
                raise ValueError("bad SDES item")
            out += bytes((item_type, len(value))) + value
        # §6.5: the list of items is terminated by one or more null octets, up to the next
        # 32-bit boundary.
        out += b"\x00"
        return _pad4(bytes(out))


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceDescription(RtcpPacket):
    """SDES (RFC 3550 §6.5)."""

    packet_type: ClassVar[int] = RTCP_SDES
    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def _parse(cls, count: int, body: bytes) -> SourceDescription:
        chunks: list[SdesChunk] = []
        offset = 0
        for _ in range(count):
            if offset + 4 > len(body):
                raise RtcpParseError("SDES chunk overruns packet")
            (ssrc,) = struct.unpack_from("!I", body, offset)
            offset += 4
            items: list[tuple[int, bytes]] = []
            while True:
                if offset >= len(body):
                    raise RtcpParseError("SDES item list not terminated")
                item_type = body[offset]
                if item_type == 0:
                    offset += 1
                    offset += -offset % 4
                    break
                if offset + 2 > len(body) or offset + 2 + body[offset + 1] > len(body):
                    raise RtcpParseError("SDES item overruns packet")
                length = body[offset + 1]
                items.append((item_type, body[offset + 2 : offset + 2 + length]))
                offset += 2 + length
            chunks.append(SdesChunk(ssrc=ssrc, items=tuple(items)))
        return cls(chunks=tuple(chunks))

    def __bytes__(self) -> bytes:
        return _rtcp_header(len(self.chunks), RTCP_SDES, b"".join(bytes(c) for c in self.chunks))


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(RtcpPacket):
    """BYE (RFC 3550 §6.6) with an optional UTF-8 reason."""

    packet_type: ClassVar[int] = RTCP_BYE
    sources: tuple[int, ...] = ()
    reason: str | None = None

    @classmethod
    def _parse(cls, count: int, body: bytes) -> Bye:
        if 4 * count > len(body):
            raise RtcpParseError("BYE source list overruns packet")
        sources = struct.unpack_from(f"!{count}I", body, 0)
        offset = 4 * count
        reason = None
        if offset < len(body):
            length = body[offset]
            if offset + 1 + length > len(body):
                raise RtcpParseError("BYE reason overruns packet")
            try:
                reason = body[offset + 1 : offset + 1 + length].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise RtcpParseError("BYE reason is not UTF-8") from exc
        return cls(sources=tuple(sources), reason=reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason is not None:
            text = self.reason.encode("utf-8")
            if len(text) > 255:
                raise ValueError("BYE reason longer than 255 octets")
            body += _pad4(bytes((len(text),)) + text)
        return _rtcp_header(len(self.sources), RTCP_BYE, body)


@dataclass(frozen=True, slots=True, kw_only=True)
class RtcpUnknown(RtcpPacket):
    """Any RTCP packet type this module does not model (APP, XR, feedback ...), kept raw."""

    packet_type: int = field(default=0)  # type: ignore[misc]
    count: int = 0
    body: bytes = b""

    def __bytes__(self) -> bytes:
        return _rtcp_header(self.count, self.packet_type, self.body)


_PARSERS = {
    RTCP_SR: SenderReport._parse,
    RTCP_RR: ReceiverReport._parse,
    RTCP_SDES: SourceDescription._parse,
    RTCP_BYE: Bye._parse,
}
