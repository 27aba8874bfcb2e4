"""Bridge and voicemail on real RtpEndpoints over 127.0.0.1, with raw UDP "phones".

Kept short: the clock ticks every 5 ms (RTP timestamps still advance 160 per tick)."""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any, cast

from media.aio.bridge import TapMode, open_bridge
from media.aio.clock import MediaClock
from media.aio.recorder import VoicemailSession
from media.aio.rtp import PortAllocator
from media.dtmf import DtmfSender
from media.g711 import get_codec
from media.goertzel import dominant_frequency_present
from media.prompts import tone
from media.recorder import VoicemailRecorder, VoicemailStop
from media.rtp import RtpHeaderWriter, RtpPacket
from tests.unit.media.test_recorder import MemoryParts

from .test_aio_rtp import free_range, wait_until


class RawPhone(asyncio.DatagramProtocol):
    """A UDP peer that records what it receives and sends RTP it is told to."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) > 1 and not 192 <= data[1] <= 223:  # RTP only, not RTCP
            self.received.append(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def packets(self) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for d in self.received]


def per_frame_share(pcm: bytes, hz: float) -> float:
    """Share of non-silent 20 ms frames in which ``hz`` is present. Real-time loopback
    pacing leaves silent gaps (empty slots), which break the phase coherence a whole-buffer
    Goertzel needs, so judge frame by frame."""
    frames = [pcm[i : i + 320] for i in range(0, len(pcm), 320)]
    loud = [f for f in frames if any(f)]
    assert len(loud) >= 5
    return sum(dominant_frequency_present(f, hz, 0.2) for f in loud) / len(loud)


async def phone() -> RawPhone:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(RawPhone, local_addr=("127.0.0.1", 0))
    return proto


def test_prompt_bridge_prompt_on_real_endpoints_with_transcoding_dtmf_and_a_tap() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        lo, hi = free_range()
        ports = PortAllocator("127.0.0.1", lo, hi)
        rng = random.Random(11)
        caller = await ports.open_endpoint(loop, clock, rng)
        agent = await ports.open_endpoint(loop, clock, rng)
        sup = await ports.open_endpoint(loop, clock, rng)
        caller_phone, agent_phone, sup_phone = await phone(), await phone(), await phone()
        try:
            caller.set_remote(("127.0.0.1", caller_phone.port), "PCMU", 0, 101)
            agent.set_remote(("127.0.0.1", agent_phone.port), "PCMA", 8, 96)
            sup.set_remote(("127.0.0.1", sup_phone.port), "PCMU", 0, None)
            done = loop.create_future()
            agent.play(tone((500.0,), 60), on_done=lambda: done.set_result(None))
            await asyncio.wait_for(done, 3)

            bridge = open_bridge(caller, agent)
            tap = bridge.add_tap(sup, TapMode.LISTEN)
            ulaw, alaw = get_codec("PCMU"), get_codec("PCMA")
            caller_tx = RtpHeaderWriter(ssrc=77, sequence_number=1, timestamp=0, payload_type=0)
            agent_tx = RtpHeaderWriter(ssrc=88, sequence_number=1, timestamp=0, payload_type=8)
            caller_audio = tone((440.0,), 400).frames
            agent_audio = tone((1000.0,), 400).frames
            assert caller_phone.transport is not None and agent_phone.transport is not None
            for i in range(20):
                caller_phone.transport.sendto(
                    caller_tx.pack(ulaw.encode(caller_audio[i]), i == 0),
                    ("127.0.0.1", caller.local_port),
                )
                agent_phone.transport.sendto(
                    agent_tx.pack(alaw.encode(agent_audio[i]), i == 0),
                    ("127.0.0.1", agent.local_port),
                )
                caller_tx.advance(160)
                agent_tx.advance(160)
                await asyncio.sleep(0.005)
            for ev in DtmfSender().packets("9", caller_tx.timestamp, duration_ms=60):
                caller_phone.transport.sendto(
                    caller_tx.pack_with(
                        ev.payload, payload_type=101, marker=ev.marker, timestamp=ev.timestamp
                    ),
                    ("127.0.0.1", caller.local_port),
                )
            await wait_until(lambda: len(agent_phone.received) >= 3 + 20 + 5)
            tap.remove()
            bridge.stop()
            done2 = loop.create_future()
            agent.play(tone((500.0,), 40), on_done=lambda: done2.set_result(None))
            await asyncio.wait_for(done2, 3)
            await wait_until(lambda: len(agent_phone.received) >= 3 + 20 + 5 + 2)

            got = agent_phone.packets()
            assert len(got) == 30
            assert {p.ssrc for p in got} == {agent.ssrc}
            seqs = [p.sequence_number for p in got]
            assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(30)]
            audio = [p for p in got if p.payload_type == 8]
            events = [p for p in got if p.payload_type == 96]
            assert len(audio) == 25 and len(events) == 5
            assert [p.payload for p in events] == [
                ev.payload for ev in DtmfSender().packets("9", 0, duration_ms=60)
            ]
            # Audio timestamps never step back; prompt, bridge and prompt each start marked.
            ts = [p.timestamp for p in audio]
            assert all(0 < (b - a) & 0xFFFFFFFF < 1 << 31 for a, b in itertools.pairwise(ts))
            assert [i for i, p in enumerate(audio) if p.marker] == [0, 3, 23]
            bridged = b"".join(alaw.decode(p.payload) for p in audio[3:23])
            assert dominant_frequency_present(bridged, 440.0, 0.9)  # transcoded PCMU -> PCMA
            caller_heard = b"".join(ulaw.decode(p.payload) for p in caller_phone.packets())
            assert dominant_frequency_present(caller_heard, 1000.0, 0.9)
            sup_heard = b"".join(ulaw.decode(p.payload) for p in sup_phone.packets())
            assert per_frame_share(sup_heard, 440.0) > 0.8
            assert per_frame_share(sup_heard, 1000.0) > 0.8
            assert caller.packet_sink is None and agent.packet_sink is None
        finally:
            for ep in (caller, agent, sup):
                ep.close()
            for p in (caller_phone, agent_phone, sup_phone):
                assert p.transport is not None
                p.transport.close()

    asyncio.run(main())


def test_voicemail_session_until_hash() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        lo, hi = free_range()
        ports = PortAllocator("127.0.0.1", lo, hi)
        seen: list[str] = []
        ep = await ports.open_endpoint(loop, clock, random.Random(5), on_dtmf=seen.append)
        peer = await phone()
        try:
            ep.set_remote(("127.0.0.1", peer.port), "PCMU", 0, 101)
            session = VoicemailSession(ep, VoicemailRecorder(MemoryParts()))
            session.start()
            assert peer.transport is not None
            tx = RtpHeaderWriter(ssrc=3, sequence_number=9, timestamp=0, payload_type=0)
            speech = tone((300.0,), 300).payloads("PCMU")
            for i, payload in enumerate(speech):
                peer.transport.sendto(tx.pack(payload, i == 0), ("127.0.0.1", ep.local_port))
                tx.advance(160)
                await asyncio.sleep(0.005)
            for ev in DtmfSender().packets("#", tx.timestamp, duration_ms=40):
                peer.transport.sendto(
                    tx.pack_with(
                        ev.payload, payload_type=101, marker=ev.marker, timestamp=ev.timestamp
                    ),
                    ("127.0.0.1", ep.local_port),
                )
            result = await asyncio.wait_for(session.done, 3)
            assert result.reason is VoicemailStop.DTMF and result.had_speech
            # 15 frames of speech; real-time pacing may add a few silent (late) ticks inside.
            assert 300 <= result.duration_ms <= 600
            assert seen == ["#"]  # the previous DTMF handler still saw the key
            assert ep.packet_sink is None and ep.on_dtmf is not None
            assert session.stop() is result
        finally:
            ep.close()
            assert peer.transport is not None
            peer.transport.close()

    asyncio.run(main())
