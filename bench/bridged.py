"""Bench: concurrent bridged caller <-> agent calls through the ACD, RTP both ways.

One engine with N agents (``a0001``..) all registered (digest, MD5) from the port of one
SIPp UAS (built-in ``uas`` scenario with ``-rtp_echo``: every agent leg's RTP comes back);
one SIPp UAC (``bench/scenarios/uac_rtp.xml``: PCMU stream from its own port) calls the
queue flow at ``--rate`` calls/s up to ``--calls`` concurrent, each held ``--hold`` seconds.
Each call: queued, offered to the longest-idle agent, answered, whisper (TTS, cached),
bridged (pass-through), caller BYE -> agent BYE.

Loss: the engine's per-leg receive statistics at ``call ended`` (RFC 3550 A.1): caller legs
= SIPp UAC -> engine; agent legs = engine -> SIPp UAS -> echo -> engine, i.e. the caller's
audio after the bridge, both hops. Results go to bench/out/<time>-bridged/ and one JSON line
to bench/out/results.jsonl.

    python3 bench/bridged.py --calls 400 --rate 40 --hold 40
"""

from __future__ import annotations

import argparse
import hashlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from run import (  # noqa: E402 - bench/run.py helpers (owned by the performance bench)
    OUT,
    ROOT,
    SCENARIO,
    CpuSampler,
    audio_file,
    sip_ready,
    sipp_stats,
    stop_engine,
)

SIP_PORT, UAC_PORT, UAS_PORT = 5190, 5191, 5192
UAC_MEDIA, UAS_MEDIA = 6100, 6200
RTP_MIN, RTP_MAX = 20000, 40000
FLOW = """\
flow: bench_queue
entry: q
language: en
nodes:
  q: {type: queue, queue: bench, failed: bye, overflow: bye, closed: bye}
  bye: {type: hangup, reason: queue failed}
"""


def write_config(workdir: Path, agents: int, log_level: str) -> Path:
    flows = workdir / "flows"
    flows.mkdir()
    (flows / "bench_queue.yaml").write_text(FLOW)
    config = {
        "sip": {
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": SIP_PORT}],
            "max_calls": agents + 100,
        },
        "media": {
            "address": "127.0.0.1",
            "rtp_port_min": RTP_MIN,
            "rtp_port_max": RTP_MAX,
            "codecs": ["PCMU", "PCMA"],
            "tts": {"cache_dir": str(ROOT / "var" / "tts-cache")},
        },
        "trunks": [{"name": "local", "sources": ["127.0.0.0/8"]}],
        "flows": {"dir": str(flows), "watch": False},
        "routes": {"default": "bench_queue"},
        "store": {"path": str(workdir / "bench.db")},
        "acd": {
            "registrar": {"algorithms": ["MD5"]},
            "log_in_on_register": True,
            "agents": [
                {
                    "id": f"a{i:04d}",
                    "display_name": f"Agent {i}",
                    "sip": {"username": f"a{i:04d}", "password": "bench"},
                    "queues": ["bench"],
                }
                for i in range(1, agents + 1)
            ],
            "queues": [
                {
                    "name": "bench",
                    "display_name": "Bench",
                    "hold_audio": {"tone": [440], "ms": 1000},
                }
            ],
        },
        "shutdown": {"grace_seconds": 1, "mode": "hangup"},
        "logging": {"level": log_level, "format": "json", "file": str(workdir / "engine.log")},
    }
    path = workdir / "switchhook.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def register_agents(count: int) -> None:
    """REGISTER every agent from UAS_PORT (the binding's flow is where SIPp UAS listens)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", UAS_PORT))
        sock.settimeout(5)
        for i in range(1, count + 1):
            user = f"a{i:04d}"
            auth = ""
            for cseq in (1, 2):
                msg = (
                    f"REGISTER sip:127.0.0.1:{SIP_PORT} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{UAS_PORT};branch=z9hG4bKreg{i}x{cseq}\r\n"
                    f"From: <sip:{user}@127.0.0.1>;tag=r{i}\r\nTo: <sip:{user}@127.0.0.1>\r\n"
                    f"Call-ID: bench-reg-{i}\r\nCSeq: {cseq} REGISTER\r\n"
                    f"Contact: <sip:{user}@127.0.0.1:{UAS_PORT}>\r\n{auth}"
                    "Expires: 3600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
                )
                sock.sendto(msg.encode(), ("127.0.0.1", SIP_PORT))
                reply = sock.recv(65535).decode()
                while reply.startswith("SIP/2.0 100"):
                    reply = sock.recv(65535).decode()
                if cseq == 2:
                    if not reply.startswith("SIP/2.0 200"):
                        raise SystemExit(f"{user}: {reply.splitlines()[0]}")
                    break
                header = next(
                    line
                    for line in reply.split("\r\n")
                    if line.lower().startswith("www-authenticate:")
                )
                params = dict(
                    p.strip().split("=", 1) for p in header.split("Digest", 1)[1].split(",")
                )
                realm, nonce = params["realm"].strip('"'), params["nonce"].strip('"')
                uri = f"sip:127.0.0.1:{SIP_PORT}"
                ha1 = hashlib.md5(f"{user}:{realm}:bench".encode()).hexdigest()
                ha2 = hashlib.md5(f"REGISTER:{uri}".encode()).hexdigest()
                response = hashlib.md5(
                    f"{ha1}:{nonce}:00000001:c{i}:auth:{ha2}".encode()
                ).hexdigest()
                auth = (
                    f'Authorization: Digest username="{user}", realm="{realm}", '
                    f'nonce="{nonce}", uri="{uri}", algorithm=MD5, qop=auth, '
                    f'nc=00000001, cnonce="c{i}", response="{response}"\r\n'
                )


def leg_summary(log_path: Path) -> dict[str, Any]:
    """Receive loss per leg kind from ``call ended`` lines (caller legs vs agent legs)."""
    kinds: dict[str, dict[str, float]] = {}
    late = 0
    bridged = 0
    with log_path.open(errors="replace") as fh:
        for line in fh:
            if not line.startswith("{"):
                continue
            rec = json.loads(line)
            event = rec.get("event")
            if event == "queue call bridged":
                bridged += 1
            elif event == "media_clock_late":
                late += int(rec.get("skipped", 0))
            elif event == "call ended" and rec.get("rtp"):
                kind = "caller" if "@" in str(rec.get("call_id")) else "agent"
                rtp = rec["rtp"]
                k = kinds.setdefault(kind, {"legs": 0, "expected": 0, "lost": 0, "sent": 0})
                k["legs"] += 1
                k["expected"] += rtp["expected"]
                k["lost"] += max(0, rtp["cumulative_lost"])
                k["sent"] += rtp["packets_sent"]
    out: dict[str, Any] = {"bridged": bridged, "clock_skipped_ticks": late}
    for kind, k in kinds.items():
        out[f"{kind}_legs"] = k["legs"]
        out[f"{kind}_rx_expected"] = k["expected"]
        out[f"{kind}_rx_loss_pct"] = (
            round(100 * k["lost"] / k["expected"], 3) if k["expected"] else None
        )
        out[f"{kind}_tx_packets"] = k["sent"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--rate", type=float, default=40)
    parser.add_argument("--hold", type=float, default=40)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    workdir = OUT / f"{time.strftime('%Y%m%d-%H%M%S')}-bridged-{args.calls}"
    workdir.mkdir(parents=True)
    config = write_config(workdir, args.calls, args.log_level)
    engine = subprocess.Popen(
        [sys.executable, "-m", "ivr.cli", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=(workdir / "engine.stderr").open("wb"),
        stderr=subprocess.STDOUT,
    )
    uas = uac = None
    cpu: dict[str, Any] = {}
    try:
        if not sip_ready(SIP_PORT):
            raise SystemExit(f"engine not ready; see {workdir}")
        register_agents(args.calls)
        uas = subprocess.Popen(
            [
                "sipp",
                "-sn",
                "uas",
                "-i",
                "127.0.0.1",
                "-p",
                str(UAS_PORT),
                "-mi",
                "127.0.0.1",
                "-mp",
                str(UAS_MEDIA),
                "-rtp_echo",
                "-nostdin",
                "-trace_err",
                "-error_file",
                str(workdir / "uas_errors.log"),
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        scenario = workdir / SCENARIO.name
        scenario.write_text(
            SCENARIO.read_text()
            .replace("%%audio_file%%", str(audio_file()))
            .replace("%%hold_ms%%", str(int(args.hold * 1000)))
        )
        timeout = int(args.calls / args.rate + args.hold + 60)
        sampler = CpuSampler(engine.pid)
        sampler.start()
        started = time.monotonic()
        uac = subprocess.run(
            [
                "sipp",
                f"127.0.0.1:{SIP_PORT}",
                "-sf",
                str(scenario),
                "-s",
                "100",
                "-i",
                "127.0.0.1",
                "-p",
                str(UAC_PORT),
                "-mi",
                "127.0.0.1",
                "-mp",
                str(UAC_MEDIA),
                "-rtp_buffsize",
                str(4 * 1024 * 1024),
                "-r",
                str(args.rate),
                "-m",
                str(args.calls),
                "-l",
                str(args.calls),
                "-recv_timeout",
                "20000",
                "-timeout",
                f"{timeout}s",
                "-nostdin",
                "-trace_stat",
                "-fd",
                "1",
                "-stf",
                str(workdir / "sipp_stats.csv"),
                "-trace_err",
                "-error_file",
                str(workdir / "sipp_errors.log"),
            ],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout + 30,
        )
        sampler.stop()
        ramp = args.calls / args.rate
        cpu = sampler.window(started + ramp + 2, started + ramp + args.hold - 2)
        time.sleep(2)
    finally:
        if uas is not None:
            uas.kill()
        stop_engine(engine)
    result = {
        "bench": "bridged",
        "calls": args.calls,
        "rate": args.rate,
        "hold_s": args.hold,
        "sipp_rc": uac.returncode if uac is not None else None,
        **sipp_stats(workdir),
        **cpu,
        **leg_summary(workdir / "engine.log"),
    }
    (workdir / "result.json").write_text(json.dumps(result, indent=2))
    with (OUT / "results.jsonl").open("a") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
