"""Bridge core on fake legs and a fake clock: pass-through header continuity, transcoding,
RFC 4733 pass-through, hold, and who hears what with listen/coach/barge taps (Goertzel)."""

from __future__ import annotations

import itertools
import warnings

import pytest

from media.bridge import Bridge, RtpForwarder, Side, TapMode, transcode_table
from media.dtmf import DtmfSender
from media.errors import BridgeError
from media.g711 import get_codec
from media.goertzel import dominant_frequency_present
from media.mixer import CallMixer, FrameSlot
from media.prompts import tone
from media.rtp import RtpHeaderWriter, RtpPacket
from tests.unit.media.fakes import FakeClock, FakeLeg, Phone

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ, HOLD_HZ = 440.0, 1000.0, 2000.0, 800.0
MOD32 = 1 << 32


def hears(pcm: bytes, hz: float) -> bool:
    return dominant_frequency_present(pcm, hz, 0.2)


def silent_to(pcm: bytes, hz: float) -> bool:
    return not dominant_frequency_present(pcm, hz, 0.02)


# -- pass-through ------------------------------------------------------------------------------


def test_header_continuity_prompt_bridge_prompt() -> None:
    clock = FakeClock()
    caller = FakeLeg("caller", clock, ssrc=0xC0, sequence_number=100, timestamp=10_000)
    # Agent's stream wraps both its sequence number and its timestamp during the test.
    agent = FakeLeg("agent", clock, ssrc=0xA0, sequence_number=65534, timestamp=MOD32 - 320)
    bridge = Bridge(caller, agent, clock=clock)
    agent.play(tone((500.0,), 60))
    for _ in range(3):
        clock.tick()
    phone = Phone(tone((CALLER_HZ,), 200), ssrc=0xBEEF, timestamp=123_456)
    bridge.start()
    assert bridge.hears(Side.AGENT) == "forward" and not agent.playing
    incoming = []
    p = phone.next_packet()
    incoming.append(p)
    caller.receive(p)  # forwarded at the agent's media time (160)
    clock.tick()
    p = phone.next_packet()
    incoming.append(p)
    caller.receive(p)
    clock.tick()
    phone.skip()  # lost on the way: no sequence gap outgoing, the timestamp shows it
    clock.tick()
    for _ in range(2):  # p3 on time, then p4 arrives early (a burst)
        p = phone.next_packet()
        incoming.append(p)
        caller.receive(p)
    bridge.stop()  # writer's media time moves past the early packet: 960
    agent.play(tone((500.0,), 40))
    clock.tick()
    clock.tick()

    packets = agent.packets()
    assert {p.ssrc for p in packets} == {0xA0}
    assert [p.sequence_number for p in packets] == [65534, 65535, 0, 1, 2, 3, 4, 5, 6]
    assert [p.timestamp for p in packets] == [
        MOD32 - 320, MOD32 - 160, 0, 160, 320, 640, 800, 960, 1120,
    ]  # fmt: skip
    assert [p.marker for p in packets] == [True, False, False, True, False, False, False, True,
                                           False]  # fmt: skip
    # Forwarded without decoding: payloads are the phone's bytes.
    assert [p.payload for p in packets[3:7]] == [RtpPacket.parse(d).payload for d in incoming]
    assert {p.payload_type for p in packets} == {0}


def test_incoming_ssrc_change_reanchors_with_marker_and_never_steps_back() -> None:
    writer = RtpHeaderWriter(ssrc=1, sequence_number=0, timestamp=1000, payload_type=8)
    fwd = RtpForwarder(writer, audio_payload_type=8, event_payload_type=None)

    def pkt(ssrc: int, seq: int, ts: int, marker: bool = False) -> bytes:
        return bytes(
            RtpPacket(
                payload_type=8,
                sequence_number=seq,
                timestamp=ts,
                ssrc=ssrc,
                marker=marker,
                payload=b"\xd5" * 160,
            )
        )

    out = [RtpPacket.parse(fwd.forward_audio(d, 12, 172)) for d in (pkt(7, 1, 50), pkt(7, 2, 210))]
    # Peer restarts its stream (new SSRC, timestamp far back) before our clock moved.
    out.append(RtpPacket.parse(fwd.forward_audio(pkt(9, 77, 5), 12, 172)))
    out.append(RtpPacket.parse(fwd.forward_audio(pkt(9, 78, 165), 12, 172)))
    assert [p.timestamp for p in out] == [1000, 1160, 1320, 1480]
    assert [p.marker for p in out] == [True, False, True, False]
    assert [p.sequence_number for p in out] == [0, 1, 2, 3]
    # A backwards jump of more than a second re-anchors too.
    jumped = RtpPacket.parse(fwd.forward_audio(pkt(9, 79, (165 - 9000) % MOD32), 12, 172))
    assert jumped.marker and jumped.timestamp == 1640


def test_transcoding_pcmu_to_pcma_and_back_keeps_the_tone() -> None:
    clock = FakeClock()
    caller = FakeLeg("caller", clock, codec="PCMU")
    agent = FakeLeg("agent", clock, codec="PCMA", ssrc=0xA1)
    bridge = Bridge(caller, agent, clock=clock)
    bridge.start()
    caller_phone = Phone(tone((CALLER_HZ,), 200), codec="PCMU")
    agent_phone = Phone(tone((AGENT_HZ,), 200), codec="PCMA")
    for _ in range(20):
        caller.receive(caller_phone.next_packet())
        agent.receive(agent_phone.next_packet())
        clock.tick()
    assert {p.payload_type for p in agent.packets()} == {8}
    assert {p.payload_type for p in caller.packets()} == {0}
    assert len(agent.sent) == len(caller.sent) == 20
    assert hears(agent.heard_pcm(), CALLER_HZ) and silent_to(agent.heard_pcm(), AGENT_HZ)
    assert hears(caller.heard_pcm(), AGENT_HZ)
    # The lookup table is exactly decode-then-encode for every code point.
    ulaw, alaw = get_codec("PCMU"), get_codec("PCMA")
    table = transcode_table(ulaw, alaw)
    assert table is not None and transcode_table(ulaw, ulaw) is None
    codes = bytes(range(256))
    assert codes.translate(table) == audioop.lin2alaw(audioop.ulaw2lin(codes, 2), 2)


def test_dtmf_passthrough_remaps_payload_type_and_keeps_event_timing() -> None:
    clock = FakeClock()
    caller = FakeLeg("caller", clock, dtmf_payload_type=101)
    agent = FakeLeg("agent", clock, dtmf_payload_type=96, ssrc=0xA2, timestamp=5000)
    bridge = Bridge(caller, agent, clock=clock)
    bridge.start()
    events = DtmfSender().packets("7", 900_000, duration_ms=80)
    for seq, ev in enumerate(events):
        caller.receive(
            bytes(
                RtpPacket(
                    payload_type=101,
                    sequence_number=300 + seq,
                    timestamp=ev.timestamp,
                    ssrc=0x55,
                    marker=ev.marker,
                    payload=ev.payload,
                )
            )
        )
        clock.tick()
    got = agent.packets()
    assert [p.payload_type for p in got] == [96] * len(events)
    assert [p.payload for p in got] == [ev.payload for ev in events]
    assert [p.marker for p in got] == [ev.marker for ev in events]
    assert {p.timestamp for p in got} == {5000}  # one event, one (remapped) timestamp
    assert [p.sequence_number for p in got] == list(range(100, 100 + len(events)))
    # A leg that did not negotiate telephone-event gets nothing (no PT it would not know).
    bridge.stop()
    caller2 = FakeLeg("caller2", clock, dtmf_payload_type=101)
    agent2 = FakeLeg("agent2", clock, dtmf_payload_type=None)
    b2 = Bridge(caller2, agent2, clock=clock)
    b2.start()
    caller2.receive(
        bytes(
            RtpPacket(
                payload_type=101,
                sequence_number=1,
                timestamp=1,
                ssrc=2,
                marker=True,
                payload=events[0].payload,
            )
        )
    )
    assert agent2.sent == []


def test_bridge_needs_codecs_and_running_state() -> None:
    clock = FakeClock()
    a = FakeLeg("a", clock)
    with pytest.raises(BridgeError):
        Bridge(a, a, clock=clock)
    b = FakeLeg("b", clock)
    bridge = Bridge(a, b, clock=clock)
    with pytest.raises(BridgeError, match="not running"):
        bridge.add_tap(FakeLeg("s", clock))
    with pytest.raises(BridgeError, match="not running"):
        bridge.hold(Side.CALLER)
    bridge.start()
    bridge.start()  # idempotent
    with pytest.raises(BridgeError):
        bridge.add_tap(a)
    s = FakeLeg("s", clock)
    bridge.add_tap(s)
    with pytest.raises(BridgeError, match="already"):
        bridge.add_tap(s)
    bridge.stop()
    bridge.stop()
    assert a.packet_sink is None and s.packet_sink is None and bridge not in clock.listeners


# -- hold --------------------------------------------------------------------------------------


class Call:
    """Caller, agent and supervisors, each with a phone sending its own tone every tick."""

    def __init__(self, *, supervisors: int = 0, slot_depth: int = 2) -> None:
        self.clock = FakeClock()
        self.caller = FakeLeg("caller", self.clock, ssrc=0xC0C0, sequence_number=10)
        self.agent = FakeLeg("agent", self.clock, ssrc=0xA6A6, sequence_number=20, timestamp=0)
        self.caller_phone = Phone(tone((CALLER_HZ,), 400), ssrc=1)
        self.agent_phone = Phone(tone((AGENT_HZ,), 400), ssrc=2)
        self.bridge = Bridge(self.caller, self.agent, clock=self.clock, slot_depth=slot_depth)
        self.bridge.start()
        self.sups = [
            FakeLeg(f"sup{i}", self.clock, ssrc=0x5000 + i, dtmf_payload_type=None)
            for i in range(supervisors)
        ]
        self.sup_phones = [Phone(tone((SUPERVISOR_HZ,), 400), ssrc=10 + i) for i in range(5)]

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.caller.receive(self.caller_phone.next_packet())
            self.agent.receive(self.agent_phone.next_packet())
            for leg, phone in zip(self.sups, self.sup_phones, strict=False):
                leg.receive(phone.next_packet())
            self.clock.tick()

    def window(self, ticks: int = 25, settle: int = 3) -> dict[str, bytes]:
        """Run, then return what each leg's phone heard over ``ticks`` ticks."""
        self.run(settle)
        marks = {leg.name: len(leg.sent) for leg in (self.caller, self.agent, *self.sups)}
        self.run(ticks)
        return {
            leg.name: leg.heard_pcm(marks[leg.name])
            for leg in (self.caller, self.agent, *self.sups)
        }


def test_hold_plays_prompt_to_held_side_and_nothing_to_the_other() -> None:
    call = Call()
    call.run(5)
    agent_before = len(call.agent.sent)
    call.bridge.hold(Side.CALLER, tone((HOLD_HZ,), 100))
    assert call.bridge.held(Side.CALLER) and call.bridge.hears(Side.AGENT) == "muted"
    heard = call.window()
    assert hears(heard["caller"], HOLD_HZ) and silent_to(heard["caller"], AGENT_HZ)
    assert len(call.agent.sent) == agent_before  # agent side gets nothing
    call.bridge.unhold(Side.CALLER)
    call.bridge.unhold(Side.CALLER)  # idempotent
    heard = call.window()
    assert hears(heard["agent"], CALLER_HZ) and hears(heard["caller"], AGENT_HZ)
    caller_stream = call.caller.packets()
    assert {p.ssrc for p in caller_stream} == {0xC0C0}
    seqs = [p.sequence_number for p in caller_stream]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    diffs = {(b.timestamp - a.timestamp) % MOD32 for a, b in itertools.pairwise(caller_stream)}
    assert diffs == {160}


# -- taps --------------------------------------------------------------------------------------


def test_listen_supervisor_hears_both_and_reaches_nobody() -> None:
    call = Call(supervisors=1)
    tap = call.bridge.add_tap(call.sups[0], TapMode.LISTEN, name="sup0")
    assert tap.mode is TapMode.LISTEN and tap.attached
    heard = call.window()
    assert hears(heard["sup0"], CALLER_HZ) and hears(heard["sup0"], AGENT_HZ)
    assert silent_to(heard["agent"], SUPERVISOR_HZ) and silent_to(heard["caller"], SUPERVISOR_HZ)
    assert hears(heard["agent"], CALLER_HZ) and hears(heard["caller"], AGENT_HZ)
    assert call.bridge.hears(Side.AGENT) == "forward"


def test_coach_reaches_agent_only_and_barge_reaches_both() -> None:
    call = Call(supervisors=1)
    tap = call.bridge.add_tap(call.sups[0], TapMode.COACH)
    assert call.bridge.hears(Side.AGENT) == "mix" and call.bridge.hears(Side.CALLER) == "forward"
    heard = call.window()
    assert hears(heard["agent"], SUPERVISOR_HZ) and hears(heard["agent"], CALLER_HZ)
    assert silent_to(heard["caller"], SUPERVISOR_HZ) and hears(heard["caller"], AGENT_HZ)
    assert hears(heard["sup0"], CALLER_HZ) and hears(heard["sup0"], AGENT_HZ)

    tap.set_mode(TapMode.BARGE)
    heard = call.window()
    assert hears(heard["agent"], SUPERVISOR_HZ) and hears(heard["caller"], SUPERVISOR_HZ)
    assert hears(heard["caller"], AGENT_HZ) and hears(heard["agent"], CALLER_HZ)

    tap.set_mode(TapMode.LISTEN)
    heard = call.window()
    assert silent_to(heard["agent"], SUPERVISOR_HZ) and silent_to(heard["caller"], SUPERVISOR_HZ)
    assert call.bridge.hears(Side.AGENT) == "forward" == call.bridge.hears(Side.CALLER)


def test_coach_while_caller_on_hold_reaches_agent_without_caller() -> None:
    call = Call(supervisors=1)
    call.bridge.hold(Side.CALLER, tone((HOLD_HZ,), 100))
    call.bridge.add_tap(call.sups[0], TapMode.COACH)
    heard = call.window()
    assert hears(heard["agent"], SUPERVISOR_HZ) and silent_to(heard["agent"], CALLER_HZ)
    assert hears(heard["caller"], HOLD_HZ) and silent_to(heard["caller"], SUPERVISOR_HZ)


def test_five_taps_at_once_each_in_its_own_mode() -> None:
    call = Call(supervisors=5)
    modes = [TapMode.LISTEN, TapMode.LISTEN, TapMode.LISTEN, TapMode.COACH, TapMode.LISTEN]
    taps = [
        call.bridge.add_tap(leg, mode, name=leg.name)
        for leg, mode in zip(call.sups, modes, strict=True)
    ]
    heard = call.window()
    for sup in call.sups:
        assert hears(heard[sup.name], CALLER_HZ) and hears(heard[sup.name], AGENT_HZ)
    assert hears(heard["agent"], SUPERVISOR_HZ) and silent_to(heard["caller"], SUPERVISOR_HZ)
    # All five taps hear the same mix (encoded once per tick for the shared codec).
    last = [RtpPacket.parse(sup.sent[-1]).payload for sup in call.sups]
    assert all(p == last[0] for p in last)
    taps[3].remove()
    taps[3].remove()  # idempotent
    assert not taps[3].attached and call.sups[3].packet_sink is None
    heard = call.window()
    assert silent_to(heard["agent"], SUPERVISOR_HZ)
    call.bridge.stop()
    assert all(s.packet_sink is None and not s.playing for s in call.sups)


def scenario(with_taps: bool) -> tuple[list[bytes], list[bytes]]:
    call = Call(supervisors=3)
    call.run(5)
    taps = []
    if with_taps:
        taps = [call.bridge.add_tap(s, TapMode.LISTEN) for s in call.sups]
    call.run(10)
    for tap in taps[:2]:
        tap.remove()
    call.run(5)
    for tap in taps[2:]:
        tap.remove()
    call.run(5)
    return call.agent.sent, call.caller.sent


def test_listen_taps_leave_both_streams_byte_identical() -> None:
    agent_plain, caller_plain = scenario(with_taps=False)
    agent_tapped, caller_tapped = scenario(with_taps=True)
    assert len(agent_plain) == 25
    assert agent_tapped == agent_plain and caller_tapped == caller_plain


def test_coach_switch_keeps_agent_stream_continuous() -> None:
    call = Call(supervisors=1)
    call.run(5)
    tap = call.bridge.add_tap(call.sups[0], TapMode.LISTEN)
    call.run(5)
    tap.set_mode(TapMode.COACH)
    call.run(5)
    tap.set_mode(TapMode.BARGE)
    call.run(5)
    tap.remove()
    call.run(5)
    packets = call.agent.packets()
    assert len(packets) == 25  # one packet every tick, whichever mode
    assert {p.ssrc for p in packets} == {0xA6A6}
    assert [p.sequence_number for p in packets] == list(range(20, 45))
    assert {(b.timestamp - a.timestamp) % MOD32 for a, b in itertools.pairwise(packets)} == {160}
    # Markers: first bridged packet, then only where pass-through and mixing hand over.
    assert [i for i, p in enumerate(packets) if p.marker] == [0, 10, 20]


# -- mixer core -------------------------------------------------------------------------------


def test_frame_slot_jitter_and_silence() -> None:
    slot = FrameSlot(depth=2)
    a, b, c = b"\x01\x00" * 160, b"\x02\x00" * 160, b"\x03\x00" * 160
    assert slot.pop() == bytes(320) and slot.underruns == 1
    slot.push(a)
    slot.push(b)
    slot.push(c)  # burst beyond depth: oldest dropped
    assert slot.dropped == 1 and slot.pop() == b and slot.pop() == c
    slot.push(b"\x01\x00" * 80)  # a 10 ms frame is padded with silence
    assert slot.pop() == b"\x01\x00" * 80 + bytes(160)
    with pytest.raises(ValueError):
        FrameSlot(depth=0)


def test_mixer_computes_once_per_tick_and_clips() -> None:
    mixer = CallMixer()
    loud = (30000).to_bytes(2, "little", signed=True) * 160
    mixer.caller.push(loud)
    mixer.agent.push(loud)
    first = mixer.mix(1)
    assert mixer.mix(1) is first  # memoised per tick
    assert first.monitor == (32767).to_bytes(2, "little", signed=True) * 160  # clipped
    assert first.to_agent is None and first.to_caller is None and first.agent_side == loud
    assert first.encoded("monitor", "PCMU") is first.encoded("monitor", "PCMU")
    second = mixer.mix(2)
    assert second.caller == bytes(320)  # nothing arrived: silence
