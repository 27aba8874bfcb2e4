#!/usr/bin/env python3
"""switchhook load benchmark runner (never run by the test suite).

Two benchmarks, each a series of steps; every step starts a fresh engine, drives it with
SIPp on 127.0.0.1 for a bounded time, samples CPU from /proc, then stops the engine and
aggregates SIPp's statistics, the engine's per-call RTP statistics and a packet capture.

  rate  -- calls per second: each call is answered, hears ``--hold-ms`` of the default
           behaviour's welcome prompt with RTP both ways (SIPp rtp_stream), then the caller
           sends BYE. Steps are call rates; a step passes with < 1 % failed calls.
  hold  -- concurrent calls: the engine runs bench/flows/bench_loop.yaml (answer, then the
           welcome prompt in a loop) and holds N calls for ``--hold`` seconds with RTP both ways. A step passes
           with < 1 % RTP loss in both directions (and < 1 % failed calls).

Examples:
  python3 bench/run.py rate --rates 50,100,200,300,400 --duration 30
  python3 bench/run.py hold --calls 200,400,800 --hold 40
  python3 bench/run.py rate --rates 300 --duration 20 --profile   # py-spy top entries

Results: one JSON object per step appended to bench/out/results.jsonl, a Markdown table
row printed per step, raw files (config, engine log, SIPp stats, capture) under bench/out/.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
OUT = BENCH / "out"
SCENARIO = BENCH / "scenarios" / "uac_rtp.xml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SIP_PORT = 5090
SIPP_PORT = 5091
SIPP_MEDIA_PORT = 6000  # SIPp 3.6.1 rtp_stream sends and receives on -mp for every call
RTP_MIN, RTP_MAX = 20000, 40000
PACKETS_PER_SECOND = 50  # 20 ms ptime


# ---- /proc sampling -------------------------------------------------------------------------


def proc_cpu_seconds(pid: int, which: str = "both") -> float | None:
    """utime + stime (or ``which`` = user | system) of a process, all threads, in seconds;
    None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    user, system = int(fields[11]), int(fields[12])
    return {"both": user + system, "user": user, "system": system}[which] / CLK_TCK


def system_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs from /proc/stat."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def udp_counters() -> dict[str, int]:
    lines = [
        line.split()
        for line in Path("/proc/net/snmp").read_text().splitlines()
        if line.startswith("Udp:")
    ]
    return dict(zip(lines[0][1:], (int(v) for v in lines[1][1:]), strict=True))


def udp_socket_drops() -> dict[int, tuple[int, int]]:
    """Per UDP socket (inode): (local port, drops) from /proc/net/udp.

    The kernel's per-socket ``drops`` counts datagrams that arrived while the socket's receive
    buffer was full: the receiver (engine or SIPp) did not read fast enough.
    """
    out: dict[int, tuple[int, int]] = {}
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 13:
                continue
            port = int(parts[1].rsplit(":", 1)[1], 16)
            out[int(parts[9])] = (port, int(parts[-1]))
    return out


class CpuSampler(threading.Thread):
    """Samples engine, SIPp and system CPU once a second; averages over a chosen window.

    Also keeps the highest ``drops`` seen per UDP socket (sockets close at hangup, so their
    counters are read while they live).
    """

    def __init__(self, engine_pid: int) -> None:
        super().__init__(daemon=True)
        self.engine_pid = engine_pid
        self.sipp_pid: int | None = None
        self.samples: list[
            tuple[float, float | None, float | None, float, float, float | None]
        ] = []
        self._halt = threading.Event()
        self.drops: dict[int, tuple[int, int]] = {}
        self.drops_baseline = udp_socket_drops()

    def run(self) -> None:
        while not self._halt.is_set():
            for inode, (port, drops) in udp_socket_drops().items():
                base = self.drops_baseline.get(inode, (port, 0))[1]
                if drops - base > self.drops.get(inode, (port, 0))[1]:
                    self.drops[inode] = (port, drops - base)
            busy, total = system_cpu()
            sipp = proc_cpu_seconds(self.sipp_pid) if self.sipp_pid else None
            self.samples.append(
                (
                    time.monotonic(),
                    proc_cpu_seconds(self.engine_pid),
                    sipp,
                    busy,
                    total,
                    proc_cpu_seconds(self.engine_pid, "system"),
                )
            )
            self._halt.wait(1.0)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def drop_summary(self) -> dict[str, int]:
        engine = sum(d for p, d in self.drops.values() if RTP_MIN <= p <= RTP_MAX)
        sipp = sum(d for p, d in self.drops.values() if p == SIPP_MEDIA_PORT)
        sip = sum(d for p, d in self.drops.values() if p in (SIP_PORT, SIPP_PORT))
        return {
            "drops_engine_rtp_sockets": engine,
            "drops_sipp_rtp_socket": sipp,
            "drops_sip_sockets": sip,
        }

    def window(self, start: float, end: float) -> dict[str, float | None]:
        """Average CPU % (100 = one core) of engine and SIPp, and system busy % (of all cores)."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {
                "engine_cpu_pct": None,
                "sipp_cpu_pct": None,
                "system_busy_pct": None,
                "engine_cpu_peak_pct": None,
                "engine_sys_cpu_pct": None,
            }
        first, last = inside[0], inside[-1]
        span = last[0] - first[0]

        def pct(i: int) -> float | None:
            if first[i] is None or last[i] is None:
                return None
            return round(100 * (last[i] - first[i]) / span, 1)

        peak = max(
            (
                100 * (b[1] - a[1]) / (b[0] - a[0])
                for a, b in zip(inside, inside[1:], strict=False)
                if a[1] is not None and b[1] is not None
            ),
            default=None,
        )
        system = 100 * (last[3] - first[3]) / max(1.0, last[4] - first[4])
        return {
            "engine_cpu_pct": pct(1),
            "sipp_cpu_pct": pct(2),
            "engine_sys_cpu_pct": pct(5),
            "system_busy_pct": round(system, 1),
            "engine_cpu_peak_pct": round(peak, 1) if peak is not None else None,
        }


# ---- engine -----------------------------------------------------------------------------------


def write_config(workdir: Path, log_level: str, max_calls: int, flow: str) -> Path:
    """Bench config: UDP only, a wide RTP range, ``flow`` as the default route.

    ``default`` is the shipped flows/default.yaml (welcome TTS, one digit: the caller hangs up
    first); ``bench_loop`` is bench/flows/bench_loop.yaml (the welcome in a loop).
    """
    flows_dir = ROOT / "flows" if flow == "default" else BENCH / "flows"
    config = {
        "sip": {
            "listen": [{"transport": "udp", "host": "127.0.0.1", "port": SIP_PORT}],
            "max_calls": max_calls,
        },
        "media": {
            "address": "127.0.0.1",
            "rtp_port_min": RTP_MIN,
            "rtp_port_max": RTP_MAX,
            "codecs": ["PCMU", "PCMA"],
            "tts": {"cache_dir": str(ROOT / "var" / "tts-cache")},
        },
        "trunks": [{"name": "local", "sources": ["127.0.0.0/8"]}],
        "flows": {"dir": str(flows_dir), "watch": False},
        "routes": {"default": flow},
        "shutdown": {"grace_seconds": 1, "mode": "hangup"},
        "logging": {"level": log_level, "format": "json", "file": str(workdir / "engine.log")},
    }
    path = workdir / "switchhook.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def sip_ready(port: int, timeout: float = 60.0) -> bool:
    """Poll the engine with OPTIONS until it answers 200 (works at every log level)."""
    deadline = time.monotonic() + timeout
    n = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        local = sock.getsockname()[1]
        while time.monotonic() < deadline:
            n += 1
            msg = (
                f"OPTIONS sip:probe@127.0.0.1:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bKbenchprobe{n}\r\n"
                f"From: <sip:bench@127.0.0.1>;tag=probe{n}\r\nTo: <sip:probe@127.0.0.1>\r\n"
                f"Call-ID: bench-probe-{n}-{os.getpid()}\r\nCSeq: {n} OPTIONS\r\n"
                "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            sock.sendto(msg.encode(), ("127.0.0.1", port))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            if data.startswith(b"SIP/2.0 200"):
                return True
    return False


def start_engine(
    workdir: Path, flow: str, log_level: str, max_calls: int
) -> subprocess.Popen[bytes]:
    config = write_config(workdir, log_level, max_calls, flow)
    cmd = [sys.executable, "-m", "ivr.cli", "run", "--config", str(config)]
    if os.environ.get("SWITCHHOOK_GC_TRACE"):  # garbage-collector pauses: bench/gc_trace.py
        cmd = [sys.executable, str(BENCH / "gc_trace.py"), "run", "--config", str(config)]
    (workdir / "engine_command.txt").write_text(" ".join(cmd) + "\n")
    out = (workdir / "engine.stderr").open("wb")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    if not sip_ready(SIP_PORT):
        proc.kill()
        raise SystemExit(f"engine not ready; see {workdir}")
    return proc


def stop_engine(proc: subprocess.Popen[bytes]) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def engine_log_summary(log_path: Path) -> dict[str, Any]:
    """Aggregate per-call RTP stats from "call ended" lines and media clock warnings."""
    calls = 0
    sent = received = expected = lost = 0
    expected_sent = 0.0
    jitters: list[float] = []
    late_ticks = late_events = errors = 0
    if not log_path.exists():
        return {}
    with log_path.open(errors="replace") as fh:
        for line in fh:
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            event = rec.get("event")
            if event == "call ended":
                rtp = rec.get("rtp") or {}
                if not rtp:
                    continue
                calls += 1
                sent += rtp["packets_sent"]
                received += rtp["received"]
                expected += rtp["expected"]
                lost += max(0, rtp["cumulative_lost"])
                jitters.append(rtp["jitter_ms"])
                expected_sent += rec.get("duration", 0) * PACKETS_PER_SECOND
            elif event == "media_clock_late":
                late_events += 1
                late_ticks += int(rec.get("skipped", 0))
            if rec.get("level") in ("error", "critical") or event == "call behaviour failed":
                errors += 1
    summary: dict[str, Any] = {
        "log_errors": errors,
        "clock_late_events": late_events,
        "clock_skipped_ticks": late_ticks,
    }
    if calls:
        jitters.sort()
        summary.update(
            {
                "logged_calls": calls,
                "engine_rx_expected": expected,
                "engine_rx_received": received,
                "engine_rx_lost": lost,
                "engine_rx_loss_pct": round(100 * lost / expected, 3) if expected else None,
                "engine_rx_jitter_ms_mean": round(sum(jitters) / len(jitters), 2),
                "engine_rx_jitter_ms_p99": round(jitters[int(0.99 * (len(jitters) - 1))], 2),
                "engine_tx_packets": sent,
                # Duration is measured from the INVITE, so a few packets short is setup time.
                "engine_tx_vs_duration_pct": round(100 * sent / expected_sent, 2)
                if expected_sent
                else None,
            }
        )
    return summary


# ---- capture of the engine's RTP as it reaches SIPp -----------------------------------------


def start_capture(workdir: Path, sample_ports: int) -> subprocess.Popen[bytes] | None:
    """tcpdump the engine->SIPp RTP of the first ``sample_ports`` RTP ports (a call sample)."""
    if not Path("/usr/bin/tcpdump").exists() and not Path("/usr/sbin/tcpdump").exists():
        return None
    high = RTP_MIN + 2 * sample_ports - 2
    expr = f"udp and dst port {SIPP_MEDIA_PORT} and src portrange {RTP_MIN}-{high}"
    proc = subprocess.Popen(
        [
            "tcpdump",
            "-i",
            "lo",
            "-nn",
            "-s",
            "64",
            "-B",
            "8192",
            "-w",
            str(workdir / "engine_rtp.pcap"),
            expr,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    return proc


def stop_capture(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def analyse_capture(path: Path, window: tuple[float, float] | None) -> dict[str, Any]:
    """Per stream (source port + SSRC): sequence gaps, RFC 3550 jitter, late packets.

    Loopback never loses packets on the wire, so sequence gaps are drops in our own send
    path; what the capture really shows is *timing*: packets held back by a busy event loop
    arrive late and in bursts. ``late`` counts packets that arrive > 40 ms later than their
    RTP timestamp spacing from the previous packet allows.
    """
    if not path.exists():
        return {}
    data = path.read_bytes()
    if len(data) < 24:
        return {}
    magic = struct.unpack_from("<I", data)[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    link_len = 14 if linktype == 1 else 16 if linktype == 113 else 0
    streams: dict[tuple[int, int], dict[str, Any]] = {}
    off = 24
    while off + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack_from(endian + "IIII", data, off)
        off += 16
        pkt = data[off : off + caplen]
        off += caplen
        t = sec + frac / (1e9 if nano else 1e6)
        ip = pkt[link_len:]
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        udp = ip[ihl:]
        if len(udp) < 20:
            continue
        sport = struct.unpack_from("!H", udp)[0]
        rtp = udp[8:]
        seq, ts, ssrc = struct.unpack_from("!HII", rtp, 2)
        st = streams.setdefault(
            (sport, ssrc),
            {
                "n": 0,
                "gaps": 0,
                "late": 0,
                "jitter": 0.0,
                "last": None,
                "first_t": t,
                "max_gap": 0.0,
            },
        )
        if window is not None and not window[0] <= t <= window[1]:
            st["last"] = None
            continue
        if st["last"] is not None:
            lseq, lts, lt = st["last"]
            dseq = (seq - lseq) & 0xFFFF
            if 1 < dseq < 3000:
                st["gaps"] += dseq - 1
            gap = t - lt
            st["max_gap"] = max(st["max_gap"], gap)
            # D(i-1, i) of RFC 3550 §6.4.1 in timestamp units: arrival spacing minus media
            # spacing. A packet more than 40 ms later than its media time says (relative to
            # the previous one) would miss a 40 ms jitter buffer: count it late. A deliberate
            # one-frame pause (timestamp advanced, nothing sent) is not late.
            d = gap * 8000 - (((ts - lts + (1 << 31)) & 0xFFFFFFFF) - (1 << 31))
            if d > 0.040 * 8000:
                st["late"] += 1
            st["jitter"] += (abs(d) - st["jitter"]) / 16
        st["last"] = (seq, ts, t)
        st["n"] += 1
    if not streams:
        return {"capture_streams": 0}
    n = sum(s["n"] for s in streams.values())
    gaps = sum(s["gaps"] for s in streams.values())
    late = sum(s["late"] for s in streams.values())
    jit = sorted(s["jitter"] / 8 for s in streams.values())  # timestamp units -> ms
    return {
        "capture_streams": len(streams),
        "capture_packets": n,
        "capture_seq_gaps": gaps,
        "capture_loss_pct": round(100 * gaps / (n + gaps), 3) if n else None,
        "capture_late_pct": round(100 * late / n, 3) if n else None,
        "capture_jitter_ms_mean": round(sum(jit) / len(jit), 2),
        "capture_jitter_ms_max": round(jit[-1], 2),
        "capture_max_gap_ms": round(1000 * max(s["max_gap"] for s in streams.values()), 1),
    }


# ---- SIPp -------------------------------------------------------------------------------------


def audio_file() -> Path:
    """1 s of a 440 Hz tone as raw G.711 mu-law (what SIPp rtp_stream streams, payload 0)."""
    path = OUT / "tone-440hz-1s.ulaw"
    if not path.exists():
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                import audioop
            except ImportError:  # Python 3.13+: the audioop-lts backport
                import audioop_lts as audioop  # type: ignore[no-redef]
        pcm = b"".join(
            struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / 8000)))
            for i in range(8000)
        )
        OUT.mkdir(parents=True, exist_ok=True)
        path.write_bytes(audioop.lin2ulaw(pcm, 2))
    return path


def sipp_command(
    workdir: Path, *, rate: float, calls: int, limit: int, hold_ms: int, timeout_s: int
) -> list[str]:
    text = (
        SCENARIO.read_text()
        .replace("%%audio_file%%", str(audio_file()))
        .replace("%%hold_ms%%", str(hold_ms))
    )
    scenario = workdir / SCENARIO.name
    scenario.write_text(text)
    return [
        "sipp",
        f"127.0.0.1:{SIP_PORT}",
        "-sf",
        str(scenario),
        "-s",
        "100",
        "-i",
        "127.0.0.1",
        "-p",
        str(SIPP_PORT),
        "-mi",
        "127.0.0.1",
        "-mp",
        str(SIPP_MEDIA_PORT),
        "-rtp_buffsize",
        str(4 * 1024 * 1024),
        "-r",
        str(rate),
        "-rp",
        "1000",
        "-m",
        str(calls),
        "-l",
        str(limit),
        "-recv_timeout",
        "10000",
        "-timeout",
        f"{timeout_s}s",
        "-nostdin",
        "-trace_stat",
        "-fd",
        "1",
        "-stf",
        str(workdir / "sipp_stats.csv"),
        "-trace_err",
        "-error_file",
        str(workdir / "sipp_errors.log"),
    ]


def sipp_stats(workdir: Path) -> dict[str, Any]:
    csv = workdir / "sipp_stats.csv"
    if not csv.exists():
        return {}
    rows = [r.split(";") for r in csv.read_text().splitlines() if r.strip()]
    if len(rows) < 2:
        return {}
    last = dict(zip(rows[0], rows[-1], strict=False))
    failed_by = {
        k[len("Failed") : -3]: int(v)
        for k, v in last.items()
        if k.startswith("Failed")
        and k.endswith("(C)")
        and v.isdigit()
        and int(v)
        and k != "FailedCall(C)"
    }
    peak = max(
        int(dict(zip(rows[0], r, strict=False)).get("CurrentCall", "0") or 0) for r in rows[1:]
    )

    def avg_ms(name: str) -> float | None:
        # SIPp's final dump zeroes the response-time averages: take the last non-zero one.
        values = [dict(zip(rows[0], r, strict=False)).get(name, "") for r in rows[1:]]
        values = [v for v in values if v and v.strip("0:")]
        if not values:
            return None
        value = values[-1]
        h, m, s, us = value.split(":")
        return round((int(h) * 3600 + int(m) * 60 + int(s)) * 1000 + int(us) / 1000, 1)

    return {
        "attempted": int(last.get("TotalCallCreated", "0") or 0),
        "successful": int(last.get("SuccessfulCall(C)", "0") or 0),
        "failed": int(last.get("FailedCall(C)", "0") or 0),
        "failed_by": failed_by,
        "retransmissions": int(last.get("Retransmissions(C)", "0") or 0),
        "peak_concurrent": peak,
        "setup_ms_avg": avg_ms("ResponseTimesetup(C)"),
        "bye_ms_avg": avg_ms("ResponseTimebye(C)"),
        "sipp_elapsed_s": last.get("ElapsedTime(C)"),
    }


# ---- steps ------------------------------------------------------------------------------------


@dataclass
class Step:
    bench: str
    label: str
    rate: float
    calls: int
    limit: int
    hold_ms: int
    duration_s: float  # the sustained part: rate steps: calls/rate; hold steps: the hold
    window: tuple[float, float]  # seconds after SIPp start over which CPU is averaged
    engine_kind: str  # the flow the default route runs: default | bench_loop
    log_level: str
    capture: bool
    profile: bool
    results: dict[str, Any] = field(default_factory=dict)


def profile_engine(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes] | None:
    return subprocess.Popen(
        [
            "py-spy",
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            "200",
            "--format",
            "raw",
            "--nonblocking",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def top_frames(raw: Path, n: int = 15) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive time per function from py-spy's folded stacks."""
    self_t: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    if not raw.exists():
        return {}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        c = int(count)
        total += c
        frames = stack.split(";")
        self_t[frames[-1]] += c
        for f in set(frames):
            incl[f] += c
    if not total:
        return {}
    return {
        "self": [(f, round(100 * c / total, 1)) for f, c in self_t.most_common(n)],
        "inclusive": [(f, round(100 * c / total, 1)) for f, c in incl.most_common(n + 10)],
    }


def run_step(step: Step, run_dir: Path) -> dict[str, Any]:
    workdir = run_dir / step.label
    workdir.mkdir(parents=True, exist_ok=True)
    port_free_or_exit(SIP_PORT)
    engine = start_engine(workdir, step.engine_kind, step.log_level, max_calls=0)
    capture = None
    try:
        capture = start_capture(workdir, 100) if step.capture else None
        return _measure(step, workdir, run_dir, engine, capture)
    finally:
        stop_capture(capture)
        stop_engine(engine)


def port_free_or_exit(port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(f"UDP 127.0.0.1:{port} is busy (a leftover engine?)") from None


def _measure(
    step: Step,
    workdir: Path,
    run_dir: Path,
    engine: subprocess.Popen[bytes],
    capture: subprocess.Popen[bytes] | None,
) -> dict[str, Any]:
    sampler = CpuSampler(engine.pid)
    sampler.start()
    udp_before = udp_counters()
    timeout_s = int(step.calls / step.rate + step.hold_ms / 1000 + 60)
    cmd = sipp_command(
        workdir,
        rate=step.rate,
        calls=step.calls,
        limit=step.limit,
        hold_ms=step.hold_ms,
        timeout_s=timeout_s,
    )
    (workdir / "sipp_command.txt").write_text(" ".join(cmd) + "\n")
    t0 = time.monotonic()
    with (workdir / "sipp.stdout").open("wb") as out:
        sipp = subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    sampler.sipp_pid = sipp.pid
    prof = None
    if step.profile:
        start = max(0.0, step.window[0] - (time.monotonic() - t0))
        time.sleep(start)
        prof = profile_engine(
            engine.pid, int(step.window[1] - step.window[0]), workdir / "pyspy.txt"
        )
    try:
        sipp.wait(timeout=timeout_s + 30)
    except subprocess.TimeoutExpired:
        sipp.kill()
        sipp.wait()
    t1 = time.monotonic()
    if prof is not None:
        prof.wait(timeout=60)
    sampler.stop()
    udp_after = udp_counters()
    stop_capture(capture)
    rc = stop_engine(engine)
    cpu = sampler.window(t0 + step.window[0], t0 + step.window[1])
    stats = sipp_stats(workdir)
    results: dict[str, Any] = {
        "bench": step.bench,
        "label": step.label,
        "rate": step.rate,
        "calls": step.calls,
        "hold_ms": step.hold_ms,
        "duration_s": step.duration_s,
        "log_level": step.log_level,
        "engine": step.engine_kind,
        "sipp_rc": sipp.returncode,
        "engine_rc": rc,
        "wall_s": round(t1 - t0, 1),
        **stats,
        **cpu,
        **sampler.drop_summary(),
        "udp_rcvbuf_errors": udp_after["RcvbufErrors"] - udp_before["RcvbufErrors"],
        "udp_sndbuf_errors": udp_after["SndbufErrors"] - udp_before["SndbufErrors"],
        "udp_in_datagrams": udp_after["InDatagrams"] - udp_before["InDatagrams"],
        **engine_log_summary(workdir / "engine.log"),
    }
    if step.capture:
        # Only the all-calls-up part of a hold step; the whole run for a rate step.
        cap_window = None
        results.update(analyse_capture(workdir / "engine_rtp.pcap", cap_window))
    if results.get("attempted"):
        results["failed_pct"] = round(
            100 * (results["attempted"] - results["successful"]) / results["attempted"], 3
        )
        results["achieved_cps"] = round(
            results["attempted"] / max(0.001, t1 - t0 - step.hold_ms / 1000), 1
        )
    if prof is not None:
        results["profile"] = top_frames(workdir / "pyspy.txt")
    (workdir / "result.json").write_text(json.dumps(results, indent=2))
    with (OUT / "results.jsonl").open("a") as fh:
        fh.write(json.dumps({"run": run_dir.name, **results}) + "\n")
    return results


def row(r: dict[str, Any]) -> str:
    def f(key: str, default: str = "-") -> str:
        v = r.get(key)
        return default if v is None else str(v)

    loss_tx = f("capture_loss_pct")
    return (
        f"| {f('label')} | {f('duration_s')} s | {f('attempted')} | {f('successful')} | "
        f"{f('failed')} | {f('failed_pct')} | {f('engine_rx_loss_pct')} / {loss_tx} | "
        f"{f('capture_late_pct')} | {f('engine_cpu_pct')} | {f('sipp_cpu_pct')} | "
        f"{f('system_busy_pct')} | {f('setup_ms_avg')} | {f('clock_skipped_ticks')} | "
        f"{f('drops_engine_rtp_sockets')} / {f('drops_sipp_rtp_socket')} |"
    )


HEADER = (
    "| step | sustained | attempted | successful | failed | failed % | "
    "RTP loss % (SIPp->engine / engine->SIPp sample) | late pkts % | engine CPU % | "
    "SIPp CPU % | system busy % | setup ms avg | clock skipped ticks | "
    "socket drops engine / SIPp |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> int:
    parser = argparse.ArgumentParser(description="switchhook load benchmark")
    sub = parser.add_subparsers(dest="bench", required=True)
    rate = sub.add_parser("rate", help="calls per second, ~1 s of prompt per call")
    rate.add_argument("--rates", default="50,100,200,300,400")
    rate.add_argument("--duration", type=float, default=30.0, help="seconds of calls per step")
    rate.add_argument("--hold-ms", type=int, default=1000)
    rate.add_argument("--log-level", default="warning")
    rate.add_argument("--capture", action="store_true", help="tcpdump a sample of engine RTP")
    rate.add_argument("--profile", action="store_true", help="py-spy the engine mid-step")
    rate.add_argument("--stop-on-fail", action="store_true")
    hold = sub.add_parser("hold", help="concurrent calls with a looping prompt")
    hold.add_argument("--calls", default="200,400,800")
    hold.add_argument("--hold", type=float, default=40.0, help="seconds each call is held")
    hold.add_argument("--ramp", type=float, default=100.0, help="calls per second while ramping")
    hold.add_argument(
        "--log-level",
        default="info",
        help="info: needed for the per-call RTP stats at 'call ended'",
    )
    hold.add_argument("--no-capture", action="store_true")
    hold.add_argument("--profile", action="store_true")
    hold.add_argument("--stop-on-fail", action="store_true")
    args = parser.parse_args()

    run_dir = OUT / time.strftime(f"%Y%m%d-%H%M%S-{args.bench}")
    run_dir.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    if args.bench == "rate":
        for value in (float(x) for x in args.rates.split(",")):
            calls = int(value * args.duration)
            hold_s = args.hold_ms / 1000
            steps.append(
                Step(
                    "rate",
                    f"{value:g}cps-{args.log_level}",
                    value,
                    calls,
                    limit=int(value * (hold_s + 10)) + 50,
                    hold_ms=args.hold_ms,
                    duration_s=args.duration,
                    window=(3.0, args.duration - 1.0),
                    engine_kind="default",
                    log_level=args.log_level,
                    capture=args.capture,
                    profile=args.profile,
                )
            )
    else:
        for n in (int(x) for x in args.calls.split(",")):
            ramp_s = n / args.ramp
            steps.append(
                Step(
                    "hold",
                    f"{n}calls-{args.hold:g}s",
                    args.ramp,
                    n,
                    limit=n,
                    hold_ms=int(args.hold * 1000),
                    duration_s=args.hold,
                    window=(ramp_s + 3.0, ramp_s + args.hold - 3.0),
                    engine_kind="bench_loop",
                    log_level=args.log_level,
                    capture=not args.no_capture,
                    profile=args.profile,
                )
            )
    print(f"run directory: {run_dir}")
    print(HEADER)
    for step in steps:
        r = run_step(step, run_dir)
        print(row(r), flush=True)
        if r.get("profile"):
            for name, pct in r["profile"]["self"][:12]:
                print(f"    self {pct:5.1f}%  {name}")
        failed = (r.get("failed_pct") or 0) >= 1.0
        if args.stop_on_fail and failed:
            break
        time.sleep(3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
