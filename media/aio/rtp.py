"""asyncio RTP/RTCP endpoints on ports from a configured range, driven by the shared clock.

One :class:`RtpEndpoint` per call leg. Sending happens on media-clock ticks from precomputed
payloads; receiving updates statistics, feeds the RFC 4733 receiver and, only if someone
listens, decodes audio. Symmetric RTP (RFC 4961): the send address latches to the source of
the first valid RTP received after each ``set_remote``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any, cast

import structlog

from media.aio.clock import MediaClock
from media.dtmf import DtmfPacket, DtmfReceiver, DtmfSender
from media.errors import MediaError, PortsExhausted, RtpParseError
from media.g711 import FRAME_SAMPLES, Codec, get_codec
from media.player import PayloadSource, Player
from media.prompts import Prompt
from media.rtp import (
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtpHeaderWriter,
    RtpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    is_rtcp,
    rtp_payload_offset,
)
from media.stats import RtpStats

__all__ = ["PortAllocator", "RtpEndpoint"]

log = structlog.get_logger(__name__)

Address = tuple[str, int]
_SEQ_TS = struct.Struct("!HI")
_NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01 (RFC 3550 §4)
RTCP_INTERVAL_SECONDS = 5.0


class PortAllocator:
    """Hands out even RTP ports (RTCP on port+1) from ``[port_min, port_max]`` (RFC 3550 §11).

    Ports held by this allocator are skipped; ports busy in the OS are detected by binding
    and skipped too. Allocation is round-robin so a just-released port is not reused at once
    (late packets of the old call would land in the new one).
    """

    def __init__(self, host: str, port_min: int, port_max: int) -> None:
        if port_min % 2:
            port_min += 1
        if not 0 < port_min < port_max <= 65535:
            raise ValueError(f"bad RTP port range {port_min}-{port_max}")
        self.host = host
        self.port_min = port_min
        self.port_max = port_max
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._in_use: set[int] = set()
        self._next = port_min

    @property
    def in_use(self) -> frozenset[int]:
        """RTP ports currently allocated."""
        return frozenset(self._in_use)

    def _bind(self, port: int) -> socket.socket:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def allocate(self) -> tuple[int, socket.socket, socket.socket]:
        """Bind an RTP/RTCP socket pair; raise :class:`PortsExhausted` if no pair is free."""
        candidates = range(self.port_min, self.port_max, 2)  # port+1 must be <= port_max
        count = len(candidates)
        start = (self._next - self.port_min) // 2
        for i in range(count):
            port = candidates[(start + i) % count]
            if port in self._in_use:
                continue
            try:
                rtp_sock = self._bind(port)
            except OSError:
                continue
            try:
                rtcp_sock = self._bind(port + 1)
            except OSError:
                rtp_sock.close()
                continue
            self._in_use.add(port)
            self._next = port + 2 if port + 2 < self.port_max else self.port_min
            return port, rtp_sock, rtcp_sock
        raise PortsExhausted(
            f"no free RTP port pair in {self.port_min}-{self.port_max} on {self.host}"
        )

    def release(self, port: int) -> None:
        """Return ``port`` to the pool (idempotent)."""
        self._in_use.discard(port)

    async def open_endpoint(
        self,
        loop: asyncio.AbstractEventLoop,
        clock: MediaClock,
        rng: random.Random,
        *,
        on_dtmf: Callable[[str], None] | None = None,
        on_audio: Callable[[bytes], None] | None = None,
        send_silence: bool = False,
        cname: str | None = None,
    ) -> RtpEndpoint:
        """Allocate a port pair and start an :class:`RtpEndpoint` on it."""
        port, rtp_sock, rtcp_sock = self.allocate()
        endpoint = RtpEndpoint(
            loop=loop,
            clock=clock,
            rng=rng,
            allocator=self,
            local_port=port,
            on_dtmf=on_dtmf,
            on_audio=on_audio,
            send_silence=send_silence,
            cname=cname or f"switchhook-{rng.getrandbits(48):012x}@{self.host}",
        )
        try:
            await loop.create_datagram_endpoint(lambda: endpoint, sock=rtp_sock)
            await loop.create_datagram_endpoint(lambda: _RtcpProtocol(endpoint), sock=rtcp_sock)
        except BaseException:
            endpoint.close()
            rtp_sock.close()
            rtcp_sock.close()
            raise
        clock.add(endpoint)
        return endpoint


class _RtcpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: RtpEndpoint) -> None:
        self._endpoint = endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._endpoint._rtcp_transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._endpoint.rtcp_received(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("rtcp_socket_error", error=repr(exc))


class RtpEndpoint(asyncio.DatagramProtocol):
    """One leg's RTP endpoint. Create it with :meth:`PortAllocator.open_endpoint`.

    Outgoing: per tick, one packet from the current player (marker bit on the first packet
    of a talkspurt, RFC 3550 §5.1 / RFC 3551 §4.1), or a telephone-event packet while a
    digit is being sent, or comfort silence if ``send_silence``; otherwise nothing. The RTP
    timestamp advances 160 per tick whether or not a packet is sent, so sequence numbers and
    timestamps stay continuous across prompts and the SSRC stays the same for the leg.
    Incoming: malformed datagrams are counted and dropped; nothing raises out of
    ``datagram_received``.
    """

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        clock: MediaClock,
        rng: random.Random,
        allocator: PortAllocator,
        local_port: int,
        on_dtmf: Callable[[str], None] | None,
        on_audio: Callable[[bytes], None] | None,
        send_silence: bool,
        cname: str,
    ) -> None:
        self._loop = loop
        self._clock = clock
        self._allocator = allocator
        self.local_port = local_port
        self.on_dtmf = on_dtmf
        self.on_audio = on_audio
        # Hook for a bridge: every valid RTP packet of a negotiated payload type (audio or
        # telephone-event), raw, with its payload bounds, after stats, latching and local
        # DTMF detection. One owner at a time; it must not raise (errors are logged).
        self.packet_sink: Callable[[bytes, int, int], None] | None = None
        self.send_silence = send_silence
        # False while the SDP direction forbids us to send (hold: RFC 3264 §8.4): playback
        # keeps its pace but no packet leaves; the timestamp keeps running (RFC 3550 §5.1).
        self.sending = True
        self.cname = cname
        self._transport: asyncio.DatagramTransport | None = None
        self._rtcp_transport: asyncio.DatagramTransport | None = None
        self._stats = RtpStats()
        self._writer = RtpHeaderWriter.random(rng, 0)
        self._dtmf_receiver = DtmfReceiver()
        self._dtmf_sender = DtmfSender()
        self._dtmf_digits: deque[tuple[str, int]] = deque()
        self._dtmf_packets: deque[DtmfPacket] = deque()
        self._codec: Codec | None = None
        self._codec_name = ""
        self._payload_type = -1
        self._dtmf_payload_type = -1
        self._remote: Address | None = None
        self._send_address: Address | None = None
        self._latched = False
        self._rtcp_address: Address | None = None
        self._player: PayloadSource | None = None
        self._on_done: Callable[[], None] | None = None
        self._silence_payload = b""
        self._talking = False
        self._remote_ssrc: int | None = None
        self._last_sr: tuple[int, float] | None = None  # (middle 32 bits of NTP, arrival)
        self._rtcp_every = max(1, round(RTCP_INTERVAL_SECONDS / clock.interval_seconds))
        self._ticks = 0
        self._closed = False

    # -- asyncio protocol ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and friends: the peer may not be listening yet.
        log.debug("rtp_socket_error", port=self.local_port, error=repr(exc))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """Hot receive path: no objects built unless the packet is a telephone-event."""
        stats = self._stats
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            stats.malformed_received += 1
            return
        if is_rtcp(data):  # RTCP multiplexed on the RTP port (RFC 5761)
            self.rtcp_received(data, (addr[0], addr[1]))
            return
        second = data[1]
        payload_type = second & 0x7F
        if payload_type != self._payload_type and payload_type != self._dtmf_payload_type:
            if self._codec is not None:
                stats.malformed_received += 1  # not negotiated: count and drop
                return
        try:
            start, end = rtp_payload_offset(data)
        except RtpParseError:
            stats.malformed_received += 1
            return
        if not self._latched and self._codec is not None:
            self._latch((addr[0], addr[1]))
        seq, timestamp = _SEQ_TS.unpack_from(data, 2)
        now = self._loop.time()
        stats.record_received(seq, timestamp, len(data), now)
        if payload_type == self._dtmf_payload_type:
            self._dtmf_in(data, now)
        elif self.on_audio is not None and self._codec is not None:
            try:
                self.on_audio(self._codec.decode(data[start:end]))
            except Exception:
                log.exception("rtp_on_audio_failed", port=self.local_port)
        sink = self.packet_sink
        if sink is not None:
            try:
                sink(data, start, end)
            except Exception:
                log.exception("rtp_packet_sink_failed", port=self.local_port)

    def _dtmf_in(self, data: bytes, now: float) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpParseError:
            self._stats.malformed_received += 1
            return
        event = self._dtmf_receiver.feed(packet.timestamp, packet.marker, packet.payload, now)
        if event is not None:
            self._emit_dtmf(event.digit)

    def _emit_dtmf(self, digit: str) -> None:
        log.info("dtmf_received", port=self.local_port, digit=digit)
        if self.on_dtmf is not None:
            try:
                self.on_dtmf(digit)
            except Exception:
                log.exception("rtp_on_dtmf_failed", port=self.local_port)

    def _latch(self, source: Address) -> None:
        if source[1] == 0:
            # Port 0 cannot be sent to (seen from raw-socket senders such as SIPp's pcap
            # play): keep the signalled address and latch on a later packet.
            return
        self._latched = True
        if source != self._send_address:
            log.info("rtp_latched", port=self.local_port, signalled=self._remote, source=source)
            self._send_address = source

    # -- control -------------------------------------------------------------------------

    @property
    def stats(self) -> RtpStats:
        """Live statistics of this leg."""
        return self._stats

    @property
    def ssrc(self) -> int:
        """Our SSRC, stable for the leg's lifetime."""
        return self._writer.ssrc

    @property
    def remote_address(self) -> Address | None:
        """Where RTP is sent: the signalled address until latching, then the latched source."""
        return self._send_address

    @property
    def clock(self) -> MediaClock:
        """The shared media clock this endpoint ticks on."""
        return self._clock

    @property
    def header_writer(self) -> RtpHeaderWriter:
        """The leg's one outgoing header writer (SSRC, next sequence number, media time).

        A bridge packs forwarded packets with it, so the stream stays one continuous RTP
        stream (RFC 3550 §5.1) across prompt -> bridge -> prompt.
        """
        return self._writer

    @property
    def codec(self) -> Codec | None:
        """The negotiated audio codec, None before :meth:`set_remote`."""
        return self._codec

    @property
    def payload_type(self) -> int:
        """The negotiated audio payload type (-1 before :meth:`set_remote`)."""
        return self._payload_type

    @property
    def dtmf_payload_type(self) -> int | None:
        """The peer's telephone-event payload type (RFC 4733), None if not negotiated."""
        return None if self._dtmf_payload_type < 0 else self._dtmf_payload_type

    @property
    def playing(self) -> bool:
        """True while a player is attached."""
        return self._player is not None

    @property
    def closed(self) -> bool:
        """True after :meth:`close`."""
        return self._closed

    def set_remote(
        self, address: tuple[str, int], codec: str, payload_type: int, dtmf_payload_type: int | None
    ) -> None:
        """Set the SDP-signalled peer, codec and payload types; re-arms latching (re-INVITE)."""
        self._codec = get_codec(codec)
        self._codec_name = self._codec.name
        self._payload_type = payload_type
        self._writer.payload_type = payload_type & 0x7F
        self._dtmf_payload_type = -1 if dtmf_payload_type is None else dtmf_payload_type
        self._remote = (address[0], address[1])
        self._send_address = self._remote
        self._rtcp_address = (address[0], address[1] + 1)
        self._latched = False
        self._silence_payload = self._codec.encode(bytes(2 * FRAME_SAMPLES))

    def play(
        self,
        prompt_or_player: Prompt | Player,
        loop: bool = False,
        on_done: Callable[[], None] | None = None,
    ) -> Player:
        """Start playing (replacing any current playback, whose ``on_done`` is not called).

        ``on_done`` is called once when playback reaches its natural end, not on stop.
        """
        if isinstance(prompt_or_player, Player):
            player = prompt_or_player
        else:
            player = Player(prompt_or_player, loop=loop)
        self._player = player
        self._on_done = on_done
        return player

    def attach_source(self, source: PayloadSource) -> None:
        """Pull one payload per tick from ``source`` (e.g. a bridge's mix), like a player
        without ``on_done``; replaces any playback. Detach with :meth:`stop_playback`."""
        self._player = source
        self._on_done = None

    def transmit(self, packet: bytes) -> bool:
        """Send a complete RTP packet built with :attr:`header_writer` (bridge forwarding).

        Not sent (returns False) while :attr:`sending` is off or no address is known. The
        next audio the endpoint sends itself starts a new talkspurt (marker bit).
        """
        transport = self._transport
        address = self._send_address
        if transport is None or address is None or not self.sending:
            return False
        transport.sendto(packet, address)
        stats = self._stats
        stats.packets_sent += 1
        stats.bytes_sent += len(packet)
        self._talking = False
        return True

    def stop_playback(self) -> None:
        """Stop the current playback without calling its ``on_done``."""
        if self._player is not None:
            self._player.stop()
        self._player = None
        self._on_done = None

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """Queue an RFC 4733 key press; audio playback pauses while it is sent."""
        if self._dtmf_payload_type < 0:
            raise MediaError("peer did not negotiate telephone-event; cannot send RFC 4733 DTMF")
        # Validate now (raises DtmfError) so the error reaches the caller, not the clock.
        self._dtmf_sender.packets(digit, 0, duration_ms=duration_ms)
        self._dtmf_digits.append((digit, duration_ms))

    # -- clock tick: the hot send path ---------------------------------------------------

    def on_tick(self, tick: int) -> None:
        """Send at most one packet, then advance the media timestamp by one frame."""
        writer = self._writer
        self._ticks += 1
        if self._dtmf_receiver.active:
            event = self._dtmf_receiver.poll(self._loop.time())
            if event is not None:
                self._emit_dtmf(event.digit)
        address = self._send_address
        transport = self._transport
        if address is not None and transport is not None:
            if self._dtmf_packets or self._dtmf_digits:
                self._send_dtmf_packet(transport, address)
            else:
                payload = None
                player = self._player
                if player is not None:
                    payload = player.next_payload(self._codec_name)
                    if payload is None:
                        self._finish_playback()
                if payload is None and self.send_silence:
                    payload = self._silence_payload
                if payload is not None and self.sending:
                    packet = writer.pack(payload, not self._talking)
                    self._talking = True
                    transport.sendto(packet, address)
                    self._stats.packets_sent += 1
                    self._stats.bytes_sent += len(packet)
                else:
                    self._talking = False
        writer.advance(FRAME_SAMPLES)
        if self._ticks % self._rtcp_every == 0:
            self._send_rtcp_report()

    def _finish_playback(self) -> None:
        on_done = self._on_done
        self._player = None
        self._on_done = None
        if on_done is not None:
            try:
                on_done()
            except Exception:
                log.exception("rtp_on_done_failed", port=self.local_port)

    def _send_dtmf_packet(self, transport: asyncio.DatagramTransport, address: Address) -> None:
        if not self._dtmf_packets:
            digit, duration = self._dtmf_digits.popleft()
            # RFC 4733 §2.5.1.2: the event timestamp is the media time the event begins.
            self._dtmf_packets.extend(
                self._dtmf_sender.packets(digit, self._writer.timestamp, duration_ms=duration)
            )
        dtmf = self._dtmf_packets.popleft()
        packet = self._writer.pack_with(
            dtmf.payload,
            payload_type=self._dtmf_payload_type,
            marker=dtmf.marker,
            timestamp=dtmf.timestamp,
        )
        transport.sendto(packet, address)
        self._stats.packets_sent += 1
        self._stats.bytes_sent += len(packet)
        self._talking = False  # audio after an event starts a new talkspurt

    # -- RTCP ------------------------------------------------------------------------------

    def rtcp_received(self, data: bytes, addr: Address) -> None:
        """Count and parse RTCP; remember the last SR for LSR/DLSR (RFC 3550 §6.4.1)."""
        try:
            packets = RtcpPacket.parse(data)
        except RtpParseError:
            self._stats.malformed_received += 1
            return
        self._stats.rtcp_received += 1
        if self._codec is not None and self._rtcp_address != addr:
            self._rtcp_address = addr  # symmetric RTCP
        for packet in packets:
            if isinstance(packet, SenderReport):
                self._remote_ssrc = packet.ssrc
                self._last_sr = ((packet.ntp_timestamp >> 16) & 0xFFFFFFFF, self._loop.time())
            elif isinstance(packet, ReceiverReport):
                self._remote_ssrc = packet.ssrc

    def _send_rtcp_report(self) -> None:
        transport = self._rtcp_transport
        address = self._rtcp_address
        if transport is None or address is None:
            return
        stats = self._stats
        blocks: tuple[ReportBlock, ...] = ()
        if stats.received and self._remote_ssrc is not None:
            lsr, dlsr = 0, 0
            if self._last_sr is not None:
                lsr = self._last_sr[0]
                dlsr = int((self._loop.time() - self._last_sr[1]) * 65536)
            blocks = (stats.report_block(self._remote_ssrc, last_sr=lsr, delay_since_last_sr=dlsr),)
        report: RtcpPacket
        if stats.packets_sent:
            wall = time.time() + _NTP_EPOCH_OFFSET
            report = SenderReport(
                ssrc=self.ssrc,
                ntp_timestamp=int(wall * (1 << 32)) & 0xFFFFFFFFFFFFFFFF,
                rtp_timestamp=self._writer.timestamp,
                packet_count=stats.packets_sent & 0xFFFFFFFF,
                octet_count=(stats.bytes_sent - 12 * stats.packets_sent) & 0xFFFFFFFF,
                reports=blocks,
            )
        else:
            report = ReceiverReport(ssrc=self.ssrc, reports=blocks)
        sdes = SourceDescription(
            chunks=(SdesChunk(ssrc=self.ssrc, items=((1, self.cname.encode()),)),)
        )
        try:
            transport.sendto(RtcpPacket.compound((report, sdes)), address)
            stats.rtcp_sent += 1
        except OSError as exc:
            log.debug("rtcp_send_failed", error=repr(exc))

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop, unregister from the clock, close both sockets and release the port pair."""
        if self._closed:
            return
        self._closed = True
        self._clock.remove(self)
        self._player = None
        self._on_done = None
        for transport in (self._transport, self._rtcp_transport):
            if transport is not None:
                transport.close()
        self._transport = None
        self._rtcp_transport = None
        self._allocator.release(self.local_port)
        log.info("rtp_endpoint_closed", port=self.local_port, **self._stats.as_dict())

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
