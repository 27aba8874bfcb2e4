"""RtpEndpoint / PortAllocator on 127.0.0.1 with a real loop: prompt + DTMF end to end,
exact headers seen by a raw peer, symmetric RTP latching, port exhaustion. Kept fast: the
clock ticks every 5 ms (RTP timestamps still advance 160 per tick)."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import Callable
from typing import Any, cast

import pytest

from media.aio.clock import MediaClock
from media.aio.rtp import PortAllocator
from media.errors import MediaError, PortsExhausted
from media.goertzel import dominant_frequency_present
from media.prompts import tone
from media.rtp import RtpPacket


def free_range(size: int = 40) -> tuple[int, int]:
    rng = random.Random()
    base = 2 * rng.randrange(15000, 29000)
    return base, base + size


async def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def test_prompt_and_dtmf_between_two_endpoints() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        lo, hi = free_range()
        ports = PortAllocator("127.0.0.1", lo, hi)
        rng = random.Random(7)
        digits_a: list[str] = []
        digits_b: list[str] = []
        audio_b: list[bytes] = []
        a = await ports.open_endpoint(loop, clock, rng, on_dtmf=digits_a.append)
        b = await ports.open_endpoint(
            loop, clock, rng, on_dtmf=digits_b.append, on_audio=audio_b.append
        )
        try:
            assert a.local_port % 2 == 0 and b.local_port % 2 == 0 and a.local_port != b.local_port
            a.set_remote(("127.0.0.1", b.local_port), "PCMA", 8, 101)
            b.set_remote(("127.0.0.1", a.local_port), "PCMA", 8, 101)
            done = loop.create_future()
            a.play(tone((440.0,), 200), on_done=lambda: done.set_result(True))
            await asyncio.wait_for(done, 3)
            await wait_until(lambda: len(audio_b) >= 10)
            assert len(audio_b) == 10 and all(len(f) == 320 for f in audio_b)
            assert dominant_frequency_present(b"".join(audio_b), 440.0, 0.8)
            assert b.stats.packets_received == 10 and a.stats.packets_sent == 10
            assert not a.playing

            a.send_dtmf("5")
            await wait_until(lambda: bool(digits_b))
            b.send_dtmf("#", duration_ms=60)
            await wait_until(lambda: bool(digits_a))
            for _ in range(10):  # let any stray retransmissions arrive
                await asyncio.sleep(0.005)
            assert digits_b == ["5"] and digits_a == ["#"]
            assert a.stats.packets_sent == 10 + 7
            with pytest.raises(MediaError):
                a.send_dtmf("Z")
        finally:
            a.close()
            b.close()
            a.close()  # idempotent
        assert ports.in_use == frozenset() and not clock.running

    asyncio.run(main())


class Collector(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets: list[tuple[bytes, Any]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.packets.append((data, addr))


def test_headers_latching_and_malformed_input_seen_by_raw_peer() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        lo, hi = free_range()
        ports = PortAllocator("127.0.0.1", lo, hi)
        ep = await ports.open_endpoint(loop, clock, random.Random(1))
        transport, peer = await loop.create_datagram_endpoint(
            Collector, local_addr=("127.0.0.1", 0)
        )
        try:
            peer_addr = transport.get_extra_info("sockname")
            # Signal a wrong port: symmetric RTP must latch to where the peer really sends from.
            ep.set_remote(("127.0.0.1", 9), "PCMU", 0, 101)
            hello = bytes(
                RtpPacket(
                    payload_type=0, sequence_number=1, timestamp=0, ssrc=99, payload=b"\xff" * 160
                )
            )
            transport.sendto(b"\x00 not rtp", ("127.0.0.1", ep.local_port))
            transport.sendto(hello, ("127.0.0.1", ep.local_port))
            await wait_until(lambda: ep.remote_address == (peer_addr[0], peer_addr[1]))
            assert ep.stats.malformed_received == 1

            first, second = tone((440.0,), 60), tone((1000.0,), 40)
            done = loop.create_future()
            ep.play(first, on_done=lambda: done.set_result(None))
            await asyncio.wait_for(done, 3)
            for _ in range(4):  # a gap: nothing is sent while idle
                await asyncio.sleep(0.006)
            done2 = loop.create_future()
            ep.play(second, on_done=lambda: done2.set_result(None))
            await asyncio.wait_for(done2, 3)
            await wait_until(lambda: len(peer.packets) >= 5)
            packets = [RtpPacket.parse(d) for d, _ in peer.packets]
            assert len(packets) == 5
            assert {p.ssrc for p in packets} == {ep.ssrc}
            assert [p.marker for p in packets] == [True, False, False, True, False]
            seqs = [p.sequence_number for p in packets]
            assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(5)]
            ts = [p.timestamp for p in packets]
            assert [(t - ts[0]) & 0xFFFFFFFF for t in ts[:3]] == [0, 160, 320]
            gap = (ts[3] - ts[2]) & 0xFFFFFFFF
            assert gap % 160 == 0 and gap > 160  # timestamp kept running through the gap
            assert [p.payload for p in packets] == [
                *first.payloads("PCMU"),
                *second.payloads("PCMU"),
            ]
        finally:
            transport.close()
            ep.close()

    asyncio.run(main())


def test_send_silence_when_idle_and_dtmf_needs_negotiation() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        lo, hi = free_range()
        ports = PortAllocator("127.0.0.1", lo, hi)
        ep = await ports.open_endpoint(loop, clock, random.Random(2), send_silence=True)
        transport, peer = await loop.create_datagram_endpoint(
            Collector, local_addr=("127.0.0.1", 0)
        )
        try:
            port = transport.get_extra_info("sockname")[1]
            ep.set_remote(("127.0.0.1", port), "PCMA", 8, None)
            await wait_until(lambda: len(peer.packets) >= 3)
            p = RtpPacket.parse(peer.packets[0][0])
            assert p.payload_type == 8 and p.payload == b"\xd5" * 160 and p.marker
            with pytest.raises(MediaError, match="telephone-event"):
                ep.send_dtmf("1")
        finally:
            transport.close()
            ep.close()

    asyncio.run(main())


def test_port_exhaustion_and_busy_ports_skipped() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        clock = MediaClock(loop, 0.005)
        lo, _ = free_range()
        busy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            busy.bind(("127.0.0.1", lo))  # first pair taken by someone else in the OS
        except OSError:
            pytest.skip("random test port busy")
        try:
            ports = PortAllocator("127.0.0.1", lo, lo + 3)  # pairs (lo, lo+1), (lo+2, lo+3)
            ep = await ports.open_endpoint(loop, clock, random.Random(3))
            assert ep.local_port == lo + 2
            with pytest.raises(PortsExhausted):
                await ports.open_endpoint(loop, clock, random.Random(3))
            ep.close()
            await asyncio.sleep(0.01)  # transports close their sockets on the next loop turn
            again = await ports.open_endpoint(loop, clock, random.Random(3))
            assert again.local_port == lo + 2
            again.close()
        finally:
            busy.close()

    asyncio.run(main())
