#!/usr/bin/env python3
"""Micro-benchmarks of the engine's hot paths, without sockets (bench-only, not a test).

tick   -- MediaClock fan-out to N RtpEndpoints playing a looped prompt (send path) and
          the receive path (datagram_received) with a fake transport: µs per leg per tick.
parse  -- sipstack.message.parse_message on a SIPp INVITE and a BYE: µs per message.

python3 bench/micro.py tick --legs 800 --ticks 500
python3 bench/micro.py parse --count 20000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import struct
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from media.aio.clock import MediaClock
from media.aio.rtp import PortAllocator, RtpEndpoint
from media.prompts import Prompt


class _FakeTransport:
    def __init__(self) -> None:
        self.sent = 0

    def sendto(self, data: bytes, addr: Any = None) -> None:
        self.sent += 1

    def close(self) -> None:
        pass


def bench_tick(legs: int, ticks: int) -> None:
    loop = asyncio.new_event_loop()
    clock = MediaClock(loop, auto_start=False)
    allocator = PortAllocator("127.0.0.1", 20000, 40000)
    rng = random.Random(1)
    frames = tuple(bytes([i % 256]) * 320 for i in range(50))
    prompt = Prompt(frames)
    endpoints = []
    transport = _FakeTransport()
    for i in range(legs):
        ep = RtpEndpoint(
            loop=loop,
            clock=clock,
            rng=rng,
            allocator=allocator,
            local_port=20000 + 2 * i,
            on_dtmf=None,
            on_audio=None,
            send_silence=False,
            cname="bench",
        )
        ep.connection_made(transport)  # type: ignore[arg-type]
        ep.set_remote(("127.0.0.1", 6000), "PCMU", 0, 101)
        ep.play(prompt, loop=True)
        clock.add(ep)
        endpoints.append(ep)
    # Incoming packets: one per leg per tick, consecutive sequence numbers.
    hdr = struct.Struct("!BBHII")
    payload = bytes(160)
    clock._start = loop.time()  # drive _fire by hand: no sleeping
    t0 = time.perf_counter()
    for _ in range(ticks):
        clock._handle = None
        clock._fire()
    t_send = time.perf_counter() - t0
    packets = [
        [hdr.pack(0x80, 0, s, s * 160, 1234 + i) + payload for s in range(ticks)]
        for i in range(min(legs, 200))
    ]
    addr = ("127.0.0.1", 6000)
    t0 = time.perf_counter()
    n = 0
    for i, series in enumerate(packets):
        ep = endpoints[i]
        for data in series:
            ep.datagram_received(data, addr)
            n += 1
    t_recv = time.perf_counter() - t0
    print(
        f"send path: {1e6 * t_send / (legs * ticks):.2f} us per leg per tick "
        f"({legs} legs x {ticks} ticks, {transport.sent} packets)"
    )
    print(f"receive path: {1e6 * t_recv / n:.2f} us per packet ({n} packets)")
    loop.close()


INVITE = (
    "INVITE sip:100@127.0.0.1:5090 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-24741-1-0\r\n"
    'From: "SIPp bench" <sip:+15550001111@127.0.0.1:5091>;tag=24741SIPpTag001\r\n'
    "To: <sip:100@127.0.0.1:5090>\r\n"
    "Call-ID: 1-24741@127.0.0.1\r\n"
    "CSeq: 1 INVITE\r\n"
    "Contact: <sip:sipp@127.0.0.1:5091;transport=UDP>\r\n"
    "Max-Forwards: 70\r\n"
    "Subject: switchhook bench\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {len}\r\n\r\n"
    "v=0\r\no=sipp 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
)
INVITE = INVITE.replace("{len}", str(len(INVITE.split("\r\n\r\n", 1)[1]))).encode()
BYE = (
    b"BYE sip:100@127.0.0.1:5090 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5091;branch=z9hG4bK-24741-1-5\r\n"
    b'From: "SIPp bench" <sip:+15550001111@127.0.0.1:5091>;tag=24741SIPpTag001\r\n'
    b"To: <sip:100@127.0.0.1:5090>;tag=abcdef\r\n"
    b"Call-ID: 1-24741@127.0.0.1\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Contact: <sip:sipp@127.0.0.1:5091;transport=UDP>\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def bench_parse(count: int) -> None:
    from sipstack.message import parse_message

    for name, data in (("INVITE", INVITE), ("BYE", BYE)):
        parse_message(data)
        t0 = time.perf_counter()
        for _ in range(count):
            parse_message(data)
        dt = time.perf_counter() - t0
        print(f"parse_message {name}: {1e6 * dt / count:.1f} us")


def main() -> int:
    parser = argparse.ArgumentParser(description="switchhook hot-path micro-benchmarks")
    sub = parser.add_subparsers(dest="what", required=True)
    tick = sub.add_parser("tick")
    tick.add_argument("--legs", type=int, default=800)
    tick.add_argument("--ticks", type=int, default=500)
    parse = sub.add_parser("parse")
    parse.add_argument("--count", type=int, default=20000)
    args = parser.parse_args()
    if args.what == "tick":
        bench_tick(args.legs, args.ticks)
    else:
        bench_parse(args.count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
