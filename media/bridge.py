"""Bridging two call legs: pass-through RTP forwarding, hold, monitor taps (listen, coach,
barge) and recorder feeds.

Pure: the bridge works on anything shaped like an RTP endpoint (:class:`BridgeLeg`; the
asyncio :class:`media.aio.rtp.RtpEndpoint` is one) and on a clock that calls ``on_tick``
with a tick number (:class:`TickClock`; :class:`media.aio.clock.MediaClock` is one). It
never reads the time, opens a socket or imports asyncio.

Forwarding (the hot path) rewrites each arriving packet onto the destination leg's own
:class:`~media.rtp.RtpHeaderWriter` (:class:`RtpForwarder`): the leg keeps ONE RTP stream
for its whole life (RFC 3550 §5.1: same SSRC, sequence +1 per packet sent, timestamps that
map the incoming timestamp deltas onto the leg's media time). Audio is decoded only when a
tap, a recorder or a transcoding direction needs it.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Protocol

from media.errors import BridgeError, RecorderError
from media.g711 import FRAME_SAMPLES, Codec
from media.mixer import CallMixer, MixResult, MixTap, TapMode
from media.player import PayloadSource, Player
from media.prompts import Prompt
from media.rtp import RtpHeaderWriter

__all__ = [
    "Bridge",
    "BridgeLeg",
    "FrameRecorder",
    "RtpForwarder",
    "Side",
    "Tap",
    "TapMode",
    "TickClock",
    "transcode_table",
]

TIMESTAMP_MOD = 1 << 32
_TS_MASK = TIMESTAMP_MOD - 1
_TS_HALF = 1 << 31
# An incoming timestamp that jumps further than this (the peer restarted its stream without
# changing SSRC, or a bogus packet) is re-anchored on the leg's media time instead of mapped.
MAX_FORWARD_JUMP_SAMPLES = 8000 * 30
MAX_BACKWARD_JUMP_SAMPLES = 8000
_TS_SSRC = struct.Struct("!II")


class Side(enum.Enum):
    """The two parties of a bridged call."""

    CALLER = "caller"
    AGENT = "agent"

    @property
    def other(self) -> Side:
        return Side.AGENT if self is Side.CALLER else Side.CALLER


class BridgeLeg(Protocol):
    """What the bridge needs from a leg (satisfied by :class:`media.aio.rtp.RtpEndpoint`)."""

    packet_sink: Callable[[bytes, int, int], None] | None
    send_silence: bool
    sending: bool

    @property
    def header_writer(self) -> RtpHeaderWriter: ...

    @property
    def codec(self) -> Codec | None: ...

    @property
    def payload_type(self) -> int: ...

    @property
    def dtmf_payload_type(self) -> int | None: ...

    def transmit(self, packet: bytes) -> bool: ...

    def attach_source(self, source: PayloadSource) -> None: ...

    def play(
        self,
        prompt_or_player: Prompt | Player,
        loop: bool = False,
        on_done: Callable[[], None] | None = None,
    ) -> Player: ...

    def stop_playback(self) -> None: ...


class _TickTarget(Protocol):
    def on_tick(self, tick: int) -> None: ...


class TickClock(Protocol):
    """The shared media clock: registers listeners and exposes the tick being run."""

    current_tick: int

    def add(self, listener: _TickTarget) -> None: ...

    def remove(self, listener: _TickTarget) -> None: ...


class FrameRecorder(Protocol):
    """A recorder fed once per tick with the caller's and the agent side's PCM frames."""

    def write(self, caller: bytes, agent: bytes) -> None: ...


def transcode_table(source: Codec, target: Codec) -> bytes | None:
    """A 256-entry ``bytes.translate`` table from one G.711 law to the other, or None if the
    codecs are the same. G.711 is one octet per sample, so decode-then-encode of every code
    point is exact and one ``translate`` per packet replaces two audioop calls."""
    if source.name == target.name:
        return None
    return target.encode(source.decode(bytes(range(256))))


class RtpForwarder:
    """Rewrites one incoming RTP stream onto a leg's outgoing header writer (pure, per packet).

    - SSRC: the writer's; sequence: the writer's next (+1 per packet sent; a lost incoming
      packet is not a gap outgoing, the timestamp carries the gap).
    - Timestamp: ``incoming + offset``; the offset is anchored on the writer's current media
      time on the first packet after :meth:`restart`, on an incoming SSRC change, or on a jump;
      the anchor never goes back before the last timestamp sent. That first packet carries
      the marker bit (RFC 3550 §5.1: discontinuity); otherwise the incoming marker is kept.
    - Payload type: remapped to the destination's audio / telephone-event type (RFC 4733
      events pass through with their marker and shared event timestamp intact).
    - CSRC, header extensions and padding are dropped: the bridge is the source now.

    :meth:`finish` (leaving pass-through) moves the writer's media time past the last
    forwarded timestamp, so the leg's own next packet (prompt, mix) continues monotonically.
    """

    __slots__ = (
        "_anchor",
        "_in_newest",
        "_in_ssrc",
        "_marked",
        "_offset",
        "_out_newest",
        "_pack_with",
        "_sent",
        "audio_payload_type",
        "event_payload_type",
        "translate",
        "writer",
    )

    def __init__(
        self,
        writer: RtpHeaderWriter,
        *,
        audio_payload_type: int,
        event_payload_type: int | None,
        translate: bytes | None = None,
    ) -> None:
        self.writer = writer
        self.audio_payload_type = audio_payload_type
        self.event_payload_type = event_payload_type
        self.translate = translate
        self._pack_with = writer.pack_with
        self._anchor = True
        self._marked = False
        self._offset = 0
        self._in_ssrc = -1
        self._in_newest = 0
        self._out_newest = 0
        self._sent = False

    def restart(self) -> None:
        """The next packet re-anchors on the writer's media time (entering pass-through)."""
        self._anchor = True

    def finish(self) -> None:
        """Leaving pass-through: the writer's media time moves past the last forwarded packet."""
        self._anchor = True
        if self._sent:
            writer = self.writer
            target = (self._out_newest + FRAME_SAMPLES) & _TS_MASK
            if 0 < (target - writer.timestamp) & _TS_MASK < _TS_HALF:
                writer.timestamp = target

    def _map(self, data: bytes) -> int:
        timestamp, ssrc = _TS_SSRC.unpack_from(data, 4)
        if self._anchor or ssrc != self._in_ssrc:
            self._reanchor(timestamp, ssrc)
        else:
            delta = (timestamp - self._in_newest) & _TS_MASK
            if delta < _TS_HALF:
                if delta > MAX_FORWARD_JUMP_SAMPLES:
                    self._reanchor(timestamp, ssrc)
                else:
                    self._in_newest = timestamp
            elif TIMESTAMP_MOD - delta > MAX_BACKWARD_JUMP_SAMPLES:
                self._reanchor(timestamp, ssrc)
        out: int = (timestamp + self._offset) & _TS_MASK
        if not self._sent or 0 < (out - self._out_newest) & _TS_MASK < _TS_HALF:
            self._out_newest = out
        self._sent = True
        return out

    def _reanchor(self, timestamp: int, ssrc: int) -> None:
        base = self.writer.timestamp
        if self._sent:
            ahead = (base - self._out_newest) & _TS_MASK
            if ahead == 0 or ahead >= _TS_HALF:  # never step back over what was sent
                base = (self._out_newest + FRAME_SAMPLES) & _TS_MASK
        self._offset = (base - timestamp) & _TS_MASK
        self._in_ssrc = ssrc
        self._in_newest = timestamp
        self._anchor = False
        self._marked = True

    def forward_audio(self, data: bytes, start: int, end: int) -> bytes:
        """The outgoing packet for an incoming audio packet (payload bounds from the parser)."""
        self._marked = False
        timestamp = self._map(data)
        payload = data[start:end]
        table = self.translate
        if table is not None:
            payload = payload.translate(table)
        return self._pack_with(
            payload,
            payload_type=self.audio_payload_type,
            marker=self._marked or data[1] >= 0x80,
            timestamp=timestamp,
        )

    def forward_event(self, data: bytes, start: int, end: int) -> bytes | None:
        """The outgoing telephone-event packet (RFC 4733), or None if the destination did
        not negotiate telephone-event. The marker stays the event's own (§2.5.1.2)."""
        payload_type = self.event_payload_type
        if payload_type is None:
            return None
        timestamp = self._map(data)
        return self._pack_with(
            data[start:end], payload_type=payload_type, marker=data[1] >= 0x80, timestamp=timestamp
        )


class _Out(enum.Enum):
    """What a leg hears from the bridge."""

    NONE = "none"  # not bridged
    FORWARD = "forward"  # the other party's packets, rewritten, as they arrive
    MIX = "mix"  # a decoded mix pulled per tick (someone coaches or barges)
    HOLD = "hold"  # its own hold prompt
    MUTED = "muted"  # nothing (the other party is on hold)


class _Direction:
    """Packets arriving from one leg, on their way to the other (the leg's packet sink)."""

    __slots__ = (
        "audio_payload_type",
        "decode",
        "dst",
        "event_payload_type",
        "forward_audio",
        "forward_events",
        "forwarder",
        "slot_push",
    )

    def __init__(self, dst: BridgeLeg, forwarder: RtpForwarder, slot_push: Callable[[bytes], None]):
        self.dst = dst
        self.forwarder = forwarder
        self.slot_push = slot_push
        self.audio_payload_type = -1
        self.event_payload_type = -1
        self.decode: Callable[[bytes], bytes] | None = None
        self.forward_audio = False
        self.forward_events = False

    def on_packet(self, data: bytes, start: int, end: int) -> None:
        payload_type = data[1] & 0x7F
        if payload_type == self.audio_payload_type:
            decode = self.decode
            if decode is not None:
                self.slot_push(decode(data[start:end]))
            if self.forward_audio and self.dst.sending:
                self.dst.transmit(self.forwarder.forward_audio(data, start, end))
        elif payload_type == self.event_payload_type:
            if self.forward_events and self.dst.sending:
                packet = self.forwarder.forward_event(data, start, end)
                if packet is not None:
                    self.dst.transmit(packet)


class _MixFeed:
    """A :class:`PayloadSource` that hands a leg one encoded frame of the current mix."""

    __slots__ = ("_bridge", "_which")

    def __init__(self, bridge: Bridge, which: str) -> None:
        self._bridge = bridge
        self._which = which

    def next_payload(self, codec: str) -> bytes | None:
        return self._bridge.current_mix().encoded(self._which, codec)

    def stop(self) -> None:
        """Nothing to release: the feed lives as long as the bridge."""


class Tap:
    """A monitoring leg on a bridged call. It hears caller + agent; what it says goes where
    its mode says (listen: nowhere; coach: agent; barge: both). Create with
    :meth:`Bridge.add_tap`."""

    def __init__(self, bridge: Bridge, leg: BridgeLeg, mix_tap: MixTap) -> None:
        self._bridge = bridge
        self.leg = leg
        self._mix_tap = mix_tap
        self._decode: Callable[[bytes], bytes] | None = None
        self._audio_payload_type = leg.payload_type
        codec = leg.codec
        if codec is not None:
            self._decode = codec.decode

    @property
    def mode(self) -> TapMode:
        return self._mix_tap.mode

    @property
    def name(self) -> str:
        return self._mix_tap.name

    @property
    def attached(self) -> bool:
        return self._mix_tap in self._bridge._mixer.taps

    def set_mode(self, mode: TapMode) -> None:
        """Switch listen / coach / barge; the call's legs switch between forwarding and
        mixing as needed, each keeping its own continuous RTP stream."""
        self._bridge._mixer.set_mode(self._mix_tap, mode)

    def remove(self) -> None:
        """Detach from the call (idempotent); the supervisor leg stops receiving the mix."""
        self._bridge.remove_tap(self)

    def _on_packet(self, data: bytes, start: int, end: int) -> None:
        # Listen mode: the supervisor's audio is not even decoded, let alone mixed.
        if self._mix_tap.mode is not TapMode.LISTEN and data[1] & 0x7F == self._audio_payload_type:
            decode = self._decode
            if decode is not None:
                self._mix_tap.slot.push(decode(data[start:end]))

    def __repr__(self) -> str:
        return f"Tap({self.mode.value}, name={self.name!r})"


class Bridge:
    """Connects a caller leg and an agent leg.

    ``start()`` stops both legs' own playback and forwards packets both ways as they arrive
    (transcoding PCMU <-> PCMA with a lookup table when the legs differ); ``stop()`` hands the
    legs back, each with its header writer continuing, so a prompt played afterwards is the
    same RTP stream. ``hold(side, prompt)`` plays ``prompt`` (looped) to ``side`` while the
    other side receives nothing; ``unhold(side)`` resumes the bridge.

    Taps (:meth:`add_tap`) and recorders (:meth:`attach_recorder`) make the bridge decode both
    legs into per-leg frame slots; the mix is computed once per clock tick for all of them. In
    listen mode nothing about the legs' outgoing packets changes. While a tap coaches, the
    agent leg hears a decoded mix (caller + coach) instead of forwarded packets; while one
    barges, the caller leg does too (agent + barge).

    While bridged, do not call ``play`` on the legs; use :meth:`hold`. Call :meth:`refresh`
    after a re-INVITE changed a leg's codec or payload types.
    """

    def __init__(
        self, caller: BridgeLeg, agent: BridgeLeg, *, clock: TickClock, slot_depth: int = 2
    ) -> None:
        if caller is agent:
            raise BridgeError("cannot bridge a leg to itself")
        self._clock = clock
        self._legs = {Side.CALLER: caller, Side.AGENT: agent}
        self._mixer = CallMixer(depth=slot_depth, on_change=self._apply)
        self._running = False
        self._held: dict[Side, Prompt | None] = {}
        self._out = {Side.CALLER: _Out.NONE, Side.AGENT: _Out.NONE}
        self._feed_name: dict[Side, str] = {}
        self._saved_silence: dict[Side, bool] = {}
        self._taps: list[Tap] = []
        self._recorders: list[tuple[FrameRecorder, Callable[[RecorderError], None] | None]] = []
        # Directions are keyed by the side that RECEIVES (what that leg hears).
        self._into = {
            Side.AGENT: _Direction(
                agent,
                RtpForwarder(agent.header_writer, audio_payload_type=0, event_payload_type=None),
                self._mixer.caller.push,
            ),
            Side.CALLER: _Direction(
                caller,
                RtpForwarder(caller.header_writer, audio_payload_type=0, event_payload_type=None),
                self._mixer.agent.push,
            ),
        }

    # -- properties ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def taps(self) -> tuple[Tap, ...]:
        return tuple(self._taps)

    def leg(self, side: Side) -> BridgeLeg:
        return self._legs[side]

    def held(self, side: Side) -> bool:
        """True while ``side`` is on hold (hearing the hold prompt)."""
        return side in self._held

    def hears(self, side: Side) -> str:
        """What ``side`` hears now: "none", "forward", "mix", "hold" or "muted" (for views
        and tests)."""
        return self._out[side].value

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Bridge the legs: their playback stops and packets flow both ways."""
        if self._running:
            return
        self._configure()
        for side, leg in self._legs.items():
            leg.stop_playback()
            self._saved_silence[side] = leg.send_silence
            leg.send_silence = False  # the other party's packets are the only audio
        self._legs[Side.CALLER].packet_sink = self._into[Side.AGENT].on_packet
        self._legs[Side.AGENT].packet_sink = self._into[Side.CALLER].on_packet
        self._running = True
        self._clock.add(self)
        self._apply()

    def stop(self) -> None:
        """Unbridge: taps detached, recorders detached (not closed), legs handed back with
        their header writers continuing. Idempotent."""
        if not self._running:
            return
        self._running = False  # from here on every leg's desired output is NONE
        self._clock.remove(self)
        for tap in list(self._taps):
            self._detach_tap(tap)
        self._recorders.clear()
        for side, leg in self._legs.items():
            self._set_out(side, _Out.NONE, "")
            leg.packet_sink = None
            leg.send_silence = self._saved_silence.pop(side, leg.send_silence)
        self._held.clear()
        self._mixer.reset()

    def refresh(self) -> None:
        """Re-read codecs and payload types from the legs (after a re-INVITE)."""
        self._configure()
        if self._running:
            for side in Side:
                mode = self._out[side]
                if mode in (_Out.FORWARD, _Out.MIX):
                    self._into[side].forwarder.finish()
            self._apply()

    def _configure(self) -> None:
        caller, agent = self._legs[Side.CALLER], self._legs[Side.AGENT]
        caller_codec, agent_codec = caller.codec, agent.codec
        if caller_codec is None or agent_codec is None:
            raise BridgeError("both legs need a negotiated codec (set_remote) before bridging")
        for dst_side, src, dst, src_codec, dst_codec in (
            (Side.AGENT, caller, agent, caller_codec, agent_codec),
            (Side.CALLER, agent, caller, agent_codec, caller_codec),
        ):
            direction = self._into[dst_side]
            forwarder = direction.forwarder
            forwarder.audio_payload_type = dst.payload_type
            forwarder.event_payload_type = dst.dtmf_payload_type
            forwarder.translate = transcode_table(src_codec, dst_codec)
            direction.audio_payload_type = src.payload_type
            src_event = src.dtmf_payload_type
            direction.event_payload_type = -1 if src_event is None else src_event
        self._refresh_decoding()

    # -- hold ------------------------------------------------------------------------------

    def hold(self, side: Side, prompt: Prompt | None = None) -> None:
        """Put ``side`` on hold: it hears ``prompt`` looped (or nothing), the other side hears
        nothing from it. E.g. the agent's re-INVITE sendonly -> ``hold(Side.CALLER, moh)``."""
        self._require_running()
        self._held[side] = prompt
        if self._out[side] is _Out.HOLD:
            self._set_out(side, _Out.NONE, "")  # restart with the new prompt
        self._apply()

    def unhold(self, side: Side) -> None:
        """Take ``side`` off hold; the bridge resumes (idempotent)."""
        if self._held.pop(side, _MISSING) is not _MISSING and self._running:
            self._apply()

    # -- taps ------------------------------------------------------------------------------

    def add_tap(self, leg: BridgeLeg, mode: TapMode = TapMode.LISTEN, *, name: str = "") -> Tap:
        """Attach a monitoring leg. It hears caller + agent from the next tick on; its own
        audio goes where ``mode`` says. The call's legs keep their streams unchanged (listen)
        or continuous (coach/barge switch a leg to mixing with the same header writer)."""
        self._require_running()
        if leg is self._legs[Side.CALLER] or leg is self._legs[Side.AGENT]:
            raise BridgeError("a call leg cannot tap its own call")
        if any(t.leg is leg for t in self._taps):
            raise BridgeError("leg is already tapping this call")
        if leg.codec is None:
            raise BridgeError("the tap leg needs a negotiated codec (set_remote) first")
        mix_tap = self._mixer.add_tap(TapMode.LISTEN, name=name)
        tap = Tap(self, leg, mix_tap)
        self._taps.append(tap)
        leg.stop_playback()
        leg.packet_sink = tap._on_packet
        leg.attach_source(_MixFeed(self, "monitor"))
        self._refresh_decoding()
        if mode is not TapMode.LISTEN:
            tap.set_mode(mode)
        return tap

    def remove_tap(self, tap: Tap) -> None:
        """Detach a tap (idempotent)."""
        if tap in self._taps:
            self._detach_tap(tap)
            self._refresh_decoding()
            self._apply()

    def _detach_tap(self, tap: Tap) -> None:
        self._taps.remove(tap)
        tap.leg.stop_playback()
        tap.leg.packet_sink = None
        self._mixer.remove_tap(tap._mix_tap)

    # -- recorders -------------------------------------------------------------------------

    def attach_recorder(
        self, recorder: FrameRecorder, on_error: Callable[[RecorderError], None] | None = None
    ) -> None:
        """Feed ``recorder.write(caller, agent_side)`` once per tick while bridged. The agent
        side is the agent plus barging supervisors; coach audio is never recorded. On
        :class:`RecorderError` the recorder is detached and ``on_error`` called; the call
        goes on."""
        self._require_running()
        self._recorders.append((recorder, on_error))
        self._refresh_decoding()

    def detach_recorder(self, recorder: FrameRecorder) -> None:
        """Stop feeding ``recorder`` (idempotent; the recorder is not closed)."""
        self._recorders = [r for r in self._recorders if r[0] is not recorder]
        self._refresh_decoding()

    # -- ticks -----------------------------------------------------------------------------

    def current_mix(self) -> MixResult:
        """The mix of the clock's current tick (computed once per tick)."""
        return self._mixer.mix(self._clock.current_tick)

    def on_tick(self, tick: int) -> None:
        """Clock listener: drains the frame slots once per tick and feeds recorders."""
        if not self._taps and not self._recorders:
            return
        mix = self._mixer.mix(tick)
        if self._recorders:
            for recorder, on_error in list(self._recorders):
                try:
                    recorder.write(mix.caller, mix.agent_side)
                except RecorderError as exc:
                    self.detach_recorder(recorder)
                    if on_error is not None:
                        on_error(exc)

    # -- internals -------------------------------------------------------------------------

    def _require_running(self) -> None:
        if not self._running:
            raise BridgeError("bridge is not running")

    def _refresh_decoding(self) -> None:
        decoding = bool(self._taps or self._recorders)
        for dst_side, src_side in ((Side.AGENT, Side.CALLER), (Side.CALLER, Side.AGENT)):
            codec = self._legs[src_side].codec
            self._into[dst_side].decode = codec.decode if decoding and codec is not None else None
        if not decoding:
            self._mixer.caller.clear()
            self._mixer.agent.clear()

    def _desired(self, side: Side) -> tuple[_Out, str]:
        if not self._running:
            return _Out.NONE, ""
        if side in self._held:
            return _Out.HOLD, ""
        mixer = self._mixer
        if side is Side.AGENT:
            if side.other in self._held:
                return (_Out.MIX, "whisper") if mixer.coaching else (_Out.MUTED, "")
            return (_Out.MIX, "to_agent") if mixer.coaching else (_Out.FORWARD, "")
        if side.other in self._held:
            return (_Out.MIX, "barge") if mixer.barging else (_Out.MUTED, "")
        return (_Out.MIX, "to_caller") if mixer.barging else (_Out.FORWARD, "")

    def _apply(self) -> None:
        for side in Side:
            mode, feed = self._desired(side)
            self._set_out(side, mode, feed)

    def _set_out(self, side: Side, mode: _Out, feed: str) -> None:
        old = self._out[side]
        if old is mode and self._feed_name.get(side, "") == feed:
            return
        leg = self._legs[side]
        direction = self._into[side]
        if old in (_Out.FORWARD, _Out.MIX):
            direction.forwarder.finish()
        if old in (_Out.MIX, _Out.HOLD):
            leg.stop_playback()
        direction.forward_audio = mode is _Out.FORWARD
        direction.forward_events = mode in (_Out.FORWARD, _Out.MIX)
        if mode in (_Out.FORWARD, _Out.MIX):
            direction.forwarder.restart()
        if mode is _Out.MIX:
            leg.attach_source(_MixFeed(self, feed))
        elif mode is _Out.HOLD:
            prompt = self._held.get(side)
            if prompt is not None:
                leg.play(prompt, loop=True)
        self._out[side] = mode
        self._feed_name[side] = feed


_MISSING = object()
