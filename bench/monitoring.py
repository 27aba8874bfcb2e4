"""Monitoring load: N bridged calls with M supervisor monitors attached; RTP loss per leg.

The engine runs in this process (its own asyncio loop; SIPp peers are separate processes):
- callers: SIPp UAC (``scenarios/uac_rtp.xml``, rtp_stream PCMU) ramped at ``--rate``;
  each call is answered and bridged to an "agent" leg the engine originates to a SIPp UAS
  that echoes RTP (``-rtp_echo``);
- once all calls are bridged, M monitors (listen mode) are attached through
  ``engine.supervision.start_monitor`` to a second echoing SIPp UAS (the engine calls it,
  exactly as for ``POST /calls/{id}/monitor``);
- over a ``--window`` of seconds the engine's receive counters of every leg give the loss:
  caller legs one way (SIPp -> engine), agent and monitor legs round trip (engine -> SIPp
  echo -> engine: a packet lost either way is a sequence gap).

    python3 bench/monitoring.py --calls 200 --monitors 100 --window 30

Writes ``bench/out/<timestamp>-monitoring/result.json`` and prints a summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import audio_file  # noqa: E402
from ivr.call import Call  # noqa: E402
from ivr.engine import Engine  # noqa: E402
from ivr.loading import load_all  # noqa: E402
from ivr.logs import configure_logging  # noqa: E402
from ivr.roles import hash_token  # noqa: E402
from media.bridge import TapMode  # noqa: E402

OUT = ROOT / "bench" / "out"
SCENARIO = ROOT / "bench" / "scenarios" / "uac_rtp.xml"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sipp_uas(workdir: Path, name: str, calls: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    media = free_port() & ~1
    process = subprocess.Popen(
        [
            "sipp",
            "-sn",
            "uas",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(media),
            "-rtp_echo",
            "-m",
            str(calls),
            "-nostdin",
            "-timeout",
            "600s",
            "-trace_err",
            "-error_file",
            str(workdir / f"{name}_errors.log"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, port


def leg_counters(leg: Any) -> tuple[int, int, int]:
    stats = leg.rtp.stats.as_dict() if leg.rtp is not None else {}
    return (
        int(stats.get("expected", 0)),
        int(stats.get("cumulative_lost", 0)),
        int(stats.get("packets_sent", 0)),
    )


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    sip_port = free_port()
    config = {
        "sip": {"listen": [{"transport": "udp", "host": "127.0.0.1", "port": sip_port}]},
        "media": {"address": "127.0.0.1", "rtp_port_min": 20000, "rtp_port_max": 24000},
        "trunks": [{"name": "local", "sources": ["127.0.0.0/8"]}],
        "flows": {"dir": str(ROOT / "flows"), "watch": False},
        "logging": {"level": "warning", "format": "json"},
        "store": {"path": str(workdir / "store.db")},
        "users": [{"name": "bench", "role": "admin", "tokens": [hash_token("bench")]}],
    }
    path = workdir / "switchhook.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_all(path)
    configure_logging("warning", "json", workdir / "engine.log")
    agents_uas, agents_port = sipp_uas(workdir, "agents", args.calls)
    monitors_uas, monitors_port = sipp_uas(workdir, "monitors", args.monitors)
    counter = {"n": 0}
    legs: list[tuple[Call, Any]] = []

    async def bridge_to_agent(call: Call) -> None:
        if not await call.answer():
            return
        counter["n"] += 1
        n = counter["n"]
        leg = await engine.originate(
            request_uri=f"sip:agent{n}@127.0.0.1:{agents_port}",
            to_uri=f"<sip:agent{n}@b>",
            from_uri="<sip:queue@127.0.0.1>",
            destination=("127.0.0.1", agents_port),
            timeout=10,
        )
        call.agent = f"a{n}"
        legs.append((call, leg))
        await engine.run_bridge(call, leg)

    engine = Engine(loaded.settings, behaviour=bridge_to_agent)
    await engine.start()
    hold_ms = int((args.calls / args.rate + 10 + args.window + 10) * 1000)
    text = (
        SCENARIO.read_text()
        .replace("%%audio_file%%", str(audio_file()))
        .replace("%%hold_ms%%", str(hold_ms))
    )
    (workdir / SCENARIO.name).write_text(text)
    uac = subprocess.Popen(
        [
            "sipp",
            f"127.0.0.1:{sip_port}",
            "-sf",
            str(workdir / SCENARIO.name),
            "-s",
            "100",
            "-i",
            "127.0.0.1",
            "-p",
            str(free_port()),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(free_port() & ~1),
            "-rtp_buffsize",
            str(4 * 1024 * 1024),
            "-r",
            str(args.rate),
            "-m",
            str(args.calls),
            "-l",
            str(args.calls),
            "-timeout",
            f"{hold_ms // 1000 + 60}s",
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(workdir / "uac_errors.log"),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + args.calls / args.rate + 20
        while len(legs) < args.calls and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        bridged = len(legs)
        user = engine.supervision.directory.users["bench"]
        monitors = []
        for call, _ in legs[: args.monitors]:
            monitors.append(
                engine.supervision.start_monitor(
                    call, user, TapMode.LISTEN, f"sip:sup@127.0.0.1:{monitors_port}"
                )
            )
            await asyncio.sleep(1 / args.rate)
        deadline = time.monotonic() + 15
        while (
            sum(m.state == "active" for m in monitors) < len(monitors)
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.2)
        active = sum(m.state == "active" for m in monitors)
        await asyncio.sleep(2)  # latch, settle
        groups = {
            "caller": [c for c, _ in legs],
            "agent": [a for _, a in legs],
            "monitor": [m.leg for m in monitors if m.leg is not None],
        }
        before = {k: [leg_counters(x) for x in v] for k, v in groups.items()}
        cpu0 = time.process_time()
        await asyncio.sleep(args.window)
        cpu = time.process_time() - cpu0
        after = {k: [leg_counters(x) for x in v] for k, v in groups.items()}
        result: dict[str, Any] = {
            "calls": args.calls,
            "bridged": bridged,
            "monitors": args.monitors,
            "monitors_active": active,
            "window_seconds": args.window,
            "engine_cpu_percent": round(100 * cpu / args.window, 1),
        }
        for kind in groups:
            losses, sent = [], 0
            for (e0, l0, s0), (e1, l1, s1) in zip(before[kind], after[kind], strict=True):
                expected = e1 - e0
                losses.append(100 * (l1 - l0) / expected if expected > 0 else 100.0)
                sent += s1 - s0
            result[kind] = {
                "legs": len(losses),
                "max_loss_percent": round(max(losses, default=0), 3),
                "mean_loss_percent": round(sum(losses) / max(len(losses), 1), 3),
                "legs_over_1_percent": sum(x >= 1 for x in losses),
                "packets_sent_per_leg_per_s": round(sent / max(len(losses), 1) / args.window, 1),
            }
        return result
    finally:
        await engine.shutdown()
        for process in (uac, agents_uas, monitors_uas):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--monitors", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        print("sipp is required (bash .ci/install)", file=sys.stderr)
        return 2
    workdir = OUT / (time.strftime("%Y%m%d-%H%M%S") + "-monitoring")
    workdir.mkdir(parents=True)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    os.environ.setdefault("PYTHONASYNCIODEBUG", "0")
    result = asyncio.run(run(args, workdir))
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
