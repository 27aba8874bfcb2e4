"""In-memory fakes for bridge tests: a leg that behaves like RtpEndpoint's send path, a
media clock that ticks on demand, and phones that emit RTP for a prompt."""

from __future__ import annotations

from collections.abc import Callable

from media.g711 import FRAME_SAMPLES, Codec, get_codec
from media.player import PayloadSource, Player
from media.prompts import Prompt
from media.rtp import RtpHeaderWriter, RtpPacket, rtp_payload_offset


class FakeClock:
    """Calls listeners in registration order with an increasing tick number."""

    def __init__(self) -> None:
        self.current_tick = -1
        self.listeners: list[object] = []

    def add(self, listener: object) -> None:
        if listener not in self.listeners:
            self.listeners.append(listener)

    def remove(self, listener: object) -> None:
        if listener in self.listeners:
            self.listeners.remove(listener)

    def tick(self) -> None:
        self.current_tick += 1
        for listener in list(self.listeners):
            if listener in self.listeners:
                listener.on_tick(self.current_tick)  # type: ignore[attr-defined]


class FakeLeg:
    """The bridge-facing surface of RtpEndpoint, with the same per-tick send rules: one
    packet per tick from the player/source (marker at a talkspurt start), timestamp +160
    per tick. Everything the leg sends lands in ``sent`` (raw datagrams)."""

    def __init__(
        self,
        name: str,
        clock: FakeClock,
        *,
        codec: str = "PCMU",
        payload_type: int | None = None,
        dtmf_payload_type: int | None = 101,
        ssrc: int = 0x1000,
        sequence_number: int = 100,
        timestamp: int = 10_000,
    ) -> None:
        self.name = name
        self._codec: Codec = get_codec(codec)
        self._payload_type = self._codec.payload_type if payload_type is None else payload_type
        self._dtmf_payload_type = dtmf_payload_type
        self.writer = RtpHeaderWriter(
            ssrc=ssrc,
            sequence_number=sequence_number,
            timestamp=timestamp,
            payload_type=self._payload_type,
        )
        self.packet_sink: Callable[[bytes, int, int], None] | None = None
        self.send_silence = False
        self.sending = True
        self.sent: list[bytes] = []
        self._player: PayloadSource | None = None
        self._talking = False
        clock.add(self)

    # BridgeLeg surface
    @property
    def header_writer(self) -> RtpHeaderWriter:
        return self.writer

    @property
    def codec(self) -> Codec | None:
        return self._codec

    @property
    def payload_type(self) -> int:
        return self._payload_type

    @property
    def dtmf_payload_type(self) -> int | None:
        return self._dtmf_payload_type

    def transmit(self, packet: bytes) -> bool:
        if not self.sending:
            return False
        self.sent.append(packet)
        self._talking = False
        return True

    def attach_source(self, source: PayloadSource) -> None:
        self._player = source

    def play(
        self,
        prompt_or_player: Prompt | Player,
        loop: bool = False,
        on_done: Callable[[], None] | None = None,
    ) -> Player:
        player = (
            prompt_or_player
            if isinstance(prompt_or_player, Player)
            else Player(prompt_or_player, loop=loop)
        )
        self._player = player
        return player

    def stop_playback(self) -> None:
        if self._player is not None:
            self._player.stop()
        self._player = None

    @property
    def playing(self) -> bool:
        return self._player is not None

    def on_tick(self, tick: int) -> None:
        payload = None
        if self._player is not None:
            payload = self._player.next_payload(self._codec.name)
            if payload is None:
                self._player = None
        if payload is None and self.send_silence:
            payload = self._codec.encode(bytes(320))
        if payload is not None and self.sending:
            self.sent.append(self.writer.pack(payload, not self._talking))
            self._talking = True
        else:
            self._talking = False
        self.writer.advance(FRAME_SAMPLES)

    # test helpers
    def receive(self, data: bytes) -> None:
        """A datagram from this leg's phone arrives."""
        if self.packet_sink is not None:
            start, end = rtp_payload_offset(data)
            self.packet_sink(data, start, end)

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for d in self.sent]

    def heard_pcm(self, since: int = 0) -> bytes:
        """Decoded audio of everything sent to this leg's phone (audio packets only)."""
        return b"".join(
            self._codec.decode(p.payload)
            for p in self.packets()[since:]
            if p.payload_type == self._payload_type
        )


class Phone:
    """The far end of a leg: emits one RTP packet per call of :meth:`next_packet`."""

    def __init__(
        self,
        prompt: Prompt,
        *,
        codec: str = "PCMU",
        payload_type: int | None = None,
        ssrc: int = 0xCAFE,
        sequence_number: int = 5000,
        timestamp: int = 777_000,
    ) -> None:
        self.codec = get_codec(codec)
        pt = self.codec.payload_type if payload_type is None else payload_type
        self.writer = RtpHeaderWriter(
            ssrc=ssrc, sequence_number=sequence_number, timestamp=timestamp, payload_type=pt
        )
        self.player = Player(prompt, loop=True)
        self.first = True

    def next_packet(self) -> bytes:
        payload = self.player.next_payload(self.codec.name)
        assert payload is not None
        packet = self.writer.pack(payload, self.first)
        self.first = False
        self.writer.advance(FRAME_SAMPLES)
        return packet

    def skip(self) -> None:
        """A packet lost on the way: the phone's clock runs on."""
        self.player.next_payload(self.codec.name)
        self.writer.sequence_number = (self.writer.sequence_number + 1) & 0xFFFF
        self.writer.advance(FRAME_SAMPLES)
