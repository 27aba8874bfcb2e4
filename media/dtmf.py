"""RFC 4733 telephone-events for DTMF: payload codec, a receiver that reports each key press
exactly once, and a sender that produces the packet sequence for one key press.

Pure: time comes in as ``now`` (seconds, any monotonic origin).
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass

from media.errors import DtmfError

__all__ = [
    "DTMF_DIGITS",
    "DtmfPacket",
    "DtmfReceived",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "digit_for_event",
    "event_for_digit",
]

# RFC 4733 §3.2 table 7: events 0-9, 10 = *, 11 = #, 12-15 = A-D.
DTMF_DIGITS = "0123456789*#ABCD"
_EVENT = struct.Struct("!BBH")
_TIMESTAMP_HALF = 1 << 31


def event_for_digit(digit: str) -> int:
    """Event code for a DTMF digit (RFC 4733 §3.2); raise :class:`DtmfError` if unknown."""
    index = DTMF_DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if index < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return index


def digit_for_event(event: int) -> str:
    """DTMF digit for event code 0-15 (RFC 4733 §3.2)."""
    if not 0 <= event <= 15:
        raise DtmfError(f"event {event} is not a DTMF digit")
    return DTMF_DIGITS[event]


@dataclass(frozen=True, slots=True, kw_only=True)
class TelephoneEvent:
    """The 4-octet telephone-event payload (RFC 4733 §2.3).

    ``volume`` is the power level in -dBm0 (0-63); ``duration`` is in timestamp units.
    """

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        """Parse the first event of a payload; the R bit is ignored on receipt (§2.3.3)."""
        if len(payload) < 4:
            raise DtmfError(f"telephone-event payload too short: {len(payload)} bytes")
        event, flags, duration = _EVENT.unpack_from(payload, 0)
        return cls(event=event, end=bool(flags & 0x80), volume=flags & 0x3F, duration=duration)

    def __bytes__(self) -> bytes:
        if not 0 <= self.volume <= 63:
            raise DtmfError(f"volume {self.volume} outside 0-63")
        return _EVENT.pack(
            self.event & 0xFF, (0x80 if self.end else 0) | self.volume, self.duration & 0xFFFF
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfReceived:
    """A key press was received (once per press, whatever the number of packets)."""

    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DtmfPacket:
    """One telephone-event RTP packet to send: marker bit, RTP timestamp, payload."""

    marker: bool
    timestamp: int
    payload: bytes


class DtmfReceiver:
    """Turns telephone-event RTP packets into one :class:`DtmfReceived` per key press.

    RFC 4733 §2.5.2: all packets of one event share the event's RTP timestamp; a new
    timestamp starts a new event; the end packet is retransmitted (usually 3 times) and the
    retransmissions must not count again. Events whose end packets are all lost are reported
    by :meth:`poll` once ``timeout_seconds`` pass without a packet for them (§2.5.2.2), or as
    soon as the next event starts. Packets older than the current event (reordered) or
    belonging to an already reported event are ignored.

    ``feed`` and ``poll`` return at most one event each; in the rare case two become due at
    once (an unfinished event flushed by a new event whose first packet is already an end
    packet) the second one is queued and returned by the next ``poll`` or ``feed``.
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        timeout_seconds: float = 0.25,
        restart_gap_seconds: float = 0.5,
    ) -> None:
        self.clock_rate = clock_rate
        self.timeout_seconds = timeout_seconds
        self.restart_gap_seconds = restart_gap_seconds
        self.malformed = 0
        self._timestamp: int | None = None  # start timestamp of the newest event seen
        self._event = 0
        self._duration = 0
        self._reported = True
        self._last_packet_at = 0.0
        self._ready: deque[DtmfReceived] = deque()

    @property
    def active(self) -> bool:
        """True while an event is in progress or a report is queued (callers should poll)."""
        return not self._reported or bool(self._ready)

    def feed(self, timestamp: int, marker: bool, payload: bytes, now: float) -> DtmfReceived | None:
        """Consume one telephone-event packet (RTP timestamp, marker bit, payload)."""
        try:
            event = TelephoneEvent.parse(payload)
        except DtmfError:
            self.malformed += 1
            return self._pop()
        if event.event > 15:
            return self._pop()  # not DTMF (e.g. flash, 16): ignored here
        current = self._timestamp
        # A sender that restarts its timestamps (a replayed capture, a re-INVITE to another
        # source) can reuse a timestamp. A marker-bit start long after the last packet, or
        # a different key under the same timestamp, cannot be a retransmission: new event.
        restart = marker and now - self._last_packet_at >= self.restart_gap_seconds
        new_key = self._reported and event.event != self._event
        if current is None or timestamp != current or (self._reported and (restart or new_key)):
            if (
                current is not None
                and not restart
                and timestamp != current
                and (timestamp - current) & 0xFFFFFFFF >= _TIMESTAMP_HALF
            ):
                return self._pop()  # older than the newest event: reordered or late retransmit
            # §2.5.1.2 / marker: a new timestamp is a new event, even if the marker was lost.
            if not self._reported:
                self._report()
            self._timestamp = timestamp & 0xFFFFFFFF
            self._event = event.event
            self._duration = 0
            self._reported = False
        elif self._reported:
            return self._pop()  # retransmitted end packet of an event already reported
        self._last_packet_at = now
        if event.duration > self._duration:
            self._duration = event.duration
        if event.end:
            self._report()
        return self._pop()

    def poll(self, now: float) -> DtmfReceived | None:
        """Report an event whose packets stopped without an end bit, once the timeout passed."""
        if not self._reported and now - self._last_packet_at >= self.timeout_seconds:
            self._report()
        return self._pop()

    def _report(self) -> None:
        self._reported = True
        self._ready.append(
            DtmfReceived(
                digit=DTMF_DIGITS[self._event],
                duration_ms=self._duration * 1000 // self.clock_rate,
            )
        )

    def _pop(self) -> DtmfReceived | None:
        return self._ready.popleft() if self._ready else None


class DtmfSender:
    """Builds the RFC 4733 packet sequence for one key press (§2.5.1).

    Packets are sent one per ``packet_interval_ms`` (20 ms). All packets share the event's
    start timestamp; the first carries the marker bit (§2.5.1.2); the duration field grows by
    one interval (160 units at 8 kHz) per packet; the final packet has the E bit and is sent
    ``end_repeats`` (3) times (§2.5.1.4).
    """

    def __init__(
        self,
        *,
        clock_rate: int = 8000,
        packet_interval_ms: int = 20,
        duration_ms: int = 100,
        volume: int = 10,
        end_repeats: int = 3,
    ) -> None:
        self.clock_rate = clock_rate
        self.packet_interval_ms = packet_interval_ms
        self.duration_ms = duration_ms
        self.volume = volume
        self.end_repeats = end_repeats

    def packets(
        self,
        digit: str,
        timestamp: int,
        *,
        duration_ms: int | None = None,
        volume: int | None = None,
    ) -> tuple[DtmfPacket, ...]:
        """The packets for ``digit`` starting at RTP ``timestamp`` (sent one per interval)."""
        code = event_for_digit(digit)
        vol = self.volume if volume is None else volume
        total = (self.duration_ms if duration_ms is None else duration_ms) * self.clock_rate // 1000
        step = self.packet_interval_ms * self.clock_rate // 1000
        if total <= 0 or total > 0xFFFF:
            raise DtmfError(f"DTMF duration {total} units outside 1-65535")
        timestamp &= 0xFFFFFFFF
        out: list[DtmfPacket] = []
        duration = step
        while duration < total:
            payload = bytes(TelephoneEvent(event=code, end=False, volume=vol, duration=duration))
            out.append(DtmfPacket(marker=not out, timestamp=timestamp, payload=payload))
            duration += step
        end = bytes(TelephoneEvent(event=code, end=True, volume=vol, duration=total))
        for _ in range(self.end_repeats):
            out.append(DtmfPacket(marker=not out, timestamp=timestamp, payload=end))
        return tuple(out)
