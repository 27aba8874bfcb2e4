"""Integration harness: the real engine as a subprocess on loopback, driven by real peers.

Peers (SIPp) are required: when one is missing the tests fail under CI
(``SWITCHHOOK_REQUIRE_PEERS=1`` or ``CI=true``) and skip with a reason elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
SIPP_PCAPS = Path("/usr/share/sip-tester")


def peers_required() -> bool:
    return os.environ.get("SWITCHHOOK_REQUIRE_PEERS") == "1" or os.environ.get("CI") == "true"


def require_peer(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        message = f"{binary} is not installed (bash .ci/install installs it)"
        if peers_required():
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port(kind: int = socket.SOCK_DGRAM, both: bool = True) -> int:
    """A port free for UDP and TCP on 127.0.0.1."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
            if not both:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


_media_next = [30000]


def sipp_media_port() -> int:
    """An even port with the next three free too: SIPp binds audio RTP/RTCP on -mp and
    video RTP/RTCP on -mp+2/+3. From 30000-32700, between the engines' RTP ranges and the
    ephemeral range, so a neighbour's socket cannot race for it."""
    for _ in range(700):
        port = _media_next[0]
        _media_next[0] = port + 4 if port + 8 < 32760 else 30000
        socks = []
        try:
            for offset in range(4):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return port
    raise RuntimeError("no free SIPp media port block")


# Below Linux's ephemeral range (32768-60999), where SIPp and clients get their ports.
_RTP_FIRST, _RTP_LAST = 10000, 30000
_rtp_base = [_RTP_FIRST]


def rtp_range() -> tuple[int, int]:
    """A distinct RTP port range per engine instance within one test session."""
    start = _rtp_base[0]
    _rtp_base[0] = start + 200 if start + 400 <= _RTP_LAST else _RTP_FIRST
    return start, start + 198


@dataclass
class RunningEngine:
    process: subprocess.Popen[bytes]
    sip_port: int
    log_path: Path
    config_path: Path
    config: dict[str, Any]
    _offset: int = 0
    lines: list[dict[str, Any]] = field(default_factory=list)

    def read_logs(self) -> list[dict[str, Any]]:
        text = self.log_path.read_text(errors="replace")
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line.startswith("{"):
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        self.lines = out
        return out

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.read_logs() if line.get("event") == event]

    def wait_for(self, event: str, timeout: float = 10.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.events(event):
                if all(line.get(k) == v for k, v in match.items()):
                    return line
            time.sleep(0.05)
        raise AssertionError(
            f"log event {event!r} {match} not seen in {timeout}s; "
            f"last lines: {self.log_path.read_text()[-3000:]}"
        )

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def write_flows(tmp: Path, extra: dict[str, str] | None = None) -> Path:
    """A private copy of the shipped flows (tests may edit it to exercise hot reload), plus
    test flows given as ``{file name: YAML text}``."""
    flows_dir = tmp / "flows"
    flows_dir.mkdir(exist_ok=True)
    for source in sorted((ROOT / "flows").glob("*.yaml")):
        shutil.copy(source, flows_dir / source.name)
    for name, text in (extra or {}).items():
        (flows_dir / name).write_text(text)
    return flows_dir


def write_config(
    tmp: Path,
    sip_port: int,
    *,
    flows: dict[str, str] | None = None,
    watch_flows: bool = True,
    **overrides: Any,
) -> tuple[Path, dict[str, Any]]:
    rtp_min, rtp_max = rtp_range()
    config: dict[str, Any] = {
        "sip": {
            "listen": [
                {"transport": "udp", "host": "127.0.0.1", "port": sip_port},
                {"transport": "tcp", "host": "127.0.0.1", "port": sip_port},
            ],
            # Short timers keep retransmission tests quick; the schedule itself is
            # asserted exactly in the unit pair tests.
            "timers": {"t1_ms": 500, "t2_ms": 4000, "t4_ms": 5000},
        },
        "media": {
            "address": "127.0.0.1",
            "rtp_port_min": rtp_min,
            "rtp_port_max": rtp_max,
            "tts": {"cache_dir": str(ROOT / "var" / "tts-cache")},
        },
        "trunks": [{"name": "local", "sources": ["127.0.0.0/8", "::1/128"]}],
        "flows": {
            "dir": str(write_flows(tmp, flows)),
            "watch": watch_flows,
            "watch_interval_seconds": 0.2,
        },
        "routes": {"default": "default", "rules": [{"prefix": "800", "flow": "support"}]},
        "shutdown": {"grace_seconds": 2, "mode": "hangup"},
        "logging": {"level": "debug", "format": "json"},
    }
    for section, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **value}
        else:
            config[section] = value
    path = tmp / "switchhook.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, config


def start_engine(tmp: Path, *, clock: str | None = None, **overrides: Any) -> RunningEngine:
    """``clock`` is passed as ``switchhook run --clock`` (test only: a fixed instant like
    ``2026-01-05T22:00:00+01:00`` or an offset like ``+3d``)."""
    port = free_port()
    config_path, config = write_config(tmp, port, **overrides)
    log_path = tmp / "engine.log"
    log_file = log_path.open("wb")
    command = [sys.executable, "-m", "ivr.cli", "run", "--config", str(config_path)]
    if clock is not None:
        command += ["--clock", clock]
    process = subprocess.Popen(command, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
    engine = RunningEngine(process, port, log_path, config_path, config)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"engine exited: {log_path.read_text()[-3000:]}")
        if engine.events("ready"):
            return engine
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"engine not ready: {log_path.read_text()[-3000:]}")


def stop_engine(engine: RunningEngine) -> int:
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait()
            raise AssertionError("engine did not stop on SIGTERM within 15 s") from None
    return engine.process.returncode


@pytest.fixture
def engine_factory(tmp_path: Path) -> Iterator[Any]:
    started: list[RunningEngine] = []

    def factory(**overrides: Any) -> RunningEngine:
        sub = tmp_path / f"engine{len(started)}"
        sub.mkdir()
        engine = start_engine(sub, **overrides)
        started.append(engine)
        return engine

    yield factory
    for engine in started:
        code = stop_engine(engine)
        assert code == 0, f"engine exit status {code}: {engine.log_path.read_text()[-2000:]}"


@pytest.fixture
def engine(engine_factory: Any) -> RunningEngine:
    return engine_factory()  # type: ignore[no-any-return]


@dataclass
class SippResult:
    returncode: int
    stdout: str
    stderr: str
    stats: dict[str, str]
    messages: str

    @property
    def successful(self) -> int:
        return int(self.stats.get("SuccessfulCall(C)", "0") or 0)

    @property
    def failed(self) -> int:
        return int(self.stats.get("FailedCall(C)", "0") or 0)


def run_sipp(
    scenario: str,
    engine: RunningEngine,
    tmp_path: Path,
    *,
    calls: int = 1,
    transport: str = "u1",
    service: str = "100",
    timeout: float = 60,
    extra: list[str] | None = None,
    keys: dict[str, str] | None = None,
    subst: dict[str, str] | None = None,
) -> SippResult:
    """Run one SIPp scenario against ``engine``. ``keys`` become ``-key`` values
    (``[name]`` in the scenario); ``subst`` fills ``%%name%%`` placeholders where SIPp does not
    expand keywords (e.g. the expected response code)."""
    sipp = require_peer("sipp")
    workdir = tmp_path / f"sipp-{scenario.replace('.xml', '')}-{time.monotonic_ns()}"
    workdir.mkdir()
    text = (SCENARIOS / scenario).read_text()
    placeholders = {
        "hold_ms": "1000",
        "bye_timeout": "30000",
        "dtmf_pcap": str(SIPP_PCAPS / "dtmf_2833_5.pcap"),
        **(subst or {}),
    }
    for name, value in placeholders.items():
        text = text.replace(f"%%{name}%%", value)
    scenario_path = workdir / scenario
    scenario_path.write_text(text)
    local_port = free_port()
    media_port = sipp_media_port()
    cmd = [
        sipp,
        f"127.0.0.1:{engine.sip_port}",
        "-sf",
        str(scenario_path),
        "-i",
        "127.0.0.1",
        "-p",
        str(local_port),
        "-mi",
        "127.0.0.1",
        "-mp",
        str(media_port),
        "-t",
        transport,
        "-m",
        str(calls),
        "-s",
        service,
        "-trace_stat",
        "-trace_msg",
        "-trace_err",
        "-stf",
        str(workdir / "stats.csv"),
        "-message_file",
        str(workdir / "messages.log"),
        "-error_file",
        str(workdir / "errors.log"),
        "-timeout",
        f"{int(timeout)}s",
        "-timeout_error",
        "-nostdin",
    ]
    for key, value in {"rtp_port": str(media_port), **(keys or {})}.items():
        cmd += ["-key", key, value]
    cmd += extra or []
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, timeout=timeout + 30)
    stats: dict[str, str] = {}
    csv = workdir / "stats.csv"
    if csv.exists():
        rows = [r.split(";") for r in csv.read_text().splitlines() if r.strip()]
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
    messages = (
        (workdir / "messages.log").read_text(errors="replace")
        if (workdir / "messages.log").exists()
        else ""
    )
    errors = (
        (workdir / "errors.log").read_text(errors="replace")
        if (workdir / "errors.log").exists()
        else ""
    )
    return SippResult(
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace") + errors,
        stats,
        messages,
    )
