"""Queues end to end: SIPp agents REGISTER (digest) and answer offers from the real engine;
SIPp callers reach a flow's queue node. RTP is checked with UDP peers standing in for the
callers' and agents' media ports."""

from __future__ import annotations

import audioop
import datetime as dt
import http.server
import itertools
import json
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from media.prompts import tone

from .conftest import SCENARIOS, RunningEngine, free_port, require_peer, sipp_media_port

pytestmark = pytest.mark.integration

QUEUE_FLOW = """\
flow: queued
entry: q
language: en
nodes:
  q: {type: queue, queue: billing, failed: sorry, overflow: sorry, closed: sorry}
  sorry:
    type: play
    prompts: Sorry.
    next: bye
  bye: {type: hangup, reason: queue failed}
"""

PASSWORDS = {"alice": "alice-secret", "bob": "bob-secret"}
HOLD_TONE = {"tone": [440], "ms": 1000}


def agent(agent_id: str, queues: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": agent_id,
        "display_name": agent_id.title(),
        "sip": {"username": agent_id, "password": PASSWORDS[agent_id]},
        "queues": queues,
        **extra,
    }


def acd_config(
    *,
    agents: list[dict[str, Any]] | None = None,
    queues: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        # SIPp's digest is MD5 only; SHA-256 is covered in test_agents.py.
        "registrar": {"algorithms": ["MD5"], "min_expires_seconds": 1, "sweep_seconds": 0.5},
        "log_in_on_register": True,
        "agents": agents if agents is not None else [agent("alice", ["billing"])],
        "queues": queues
        if queues is not None
        else [{"name": "billing", "display_name": "Billing", "hold_audio": HOLD_TONE}],
        **extra,
    }


def start(engine_factory: Any, acd: dict[str, Any], **extra: Any) -> RunningEngine:
    engine: RunningEngine = engine_factory(
        flows={"queued.yaml": QUEUE_FLOW},
        acd=acd,
        routes={"default": "queued", "rules": []},
        **extra,
    )
    return engine


# --------------------------------------------------------------------------------------------
# SIPp helpers


def _scenario(workdir: Path, name: str, subst: dict[str, str]) -> Path:
    text = (SCENARIOS / name).read_text()
    for key, value in subst.items():
        text = text.replace(f"%%{key}%%", value)
    path = workdir / f"{name}"
    path.write_text(text)
    return path


class Sipp:
    """A SIPp process (UAC or UAS) in the background, with its message log."""

    def __init__(
        self,
        tmp: Path,
        name: str,
        scenario: str,
        args: list[str],
        subst: dict[str, str],
        *,
        port: int | None = None,
        calls: int = 1,
        timeout: float = 60,
    ) -> None:
        sipp = require_peer("sipp")
        self.workdir = tmp / f"{name}-{time.monotonic_ns()}"
        self.workdir.mkdir()
        self.port = port or free_port()
        media = sipp_media_port()
        defaults = {
            "answer_ms": "300",
            "agent_rtp": "[media_port]",
            "agent_pt": "0",
            "agent_codec": "PCMU",
            "bye_timeout": "60000",
            "talk_ms": "1000",
            "hold_ms": "1000",
            "display": '"Jane Doe" ',
            "from_user": "+15550001111",
            "extra_headers": "",
            "codecs": "0 8",
        }
        path = _scenario(self.workdir, scenario, {**defaults, **subst})
        self.messages_path = self.workdir / "messages.log"
        command = [
            sipp,
            "-sf",
            str(path),
            "-i",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-mi",
            "127.0.0.1",
            "-mp",
            str(media),
            "-m",
            str(calls),
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(self.messages_path),
            "-trace_err",
            "-error_file",
            str(self.workdir / "errors.log"),
            "-timeout",
            f"{int(timeout)}s",
            "-timeout_error",
            *args,
        ]
        self.process = subprocess.Popen(
            command, cwd=self.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def messages(self) -> str:
        return self.messages_path.read_text(errors="replace") if self.messages_path.exists() else ""

    @property
    def errors(self) -> str:
        path = self.workdir / "errors.log"
        stderr = (
            self.process.stderr.read().decode(errors="replace")
            if self.process.stderr and self.process.poll() is not None
            else ""
        )
        return stderr + (path.read_text(errors="replace") if path.exists() else "")

    def received(self, method: str) -> list[str]:
        """The requests of ``method`` SIPp received, as text."""
        found = []
        for chunk in self.messages.split("----------------------------------------------- "):
            lines = chunk.split("\n")
            if len(lines) < 4 or "message received" not in lines[1]:
                continue
            body = "\n".join(lines[2:]).lstrip("\n")
            if body.startswith(f"{method} "):
                found.append(body)
        return found


def register(
    engine: RunningEngine,
    tmp: Path,
    user: str,
    *,
    port: int,
    password: str | None = None,
    expires: int = 3600,
    final: str = "200",
    transport: str = "u1",
) -> Sipp:
    """Register ``user``'s phone from ``port`` (the agent's SIPp UAS then listens there)."""
    sipp = Sipp(
        tmp,
        f"register-{user}",
        "agent_register.xml",
        [f"127.0.0.1:{engine.sip_port}", "-t", transport],
        {
            "user": user,
            "password": password or PASSWORDS[user],
            "contact_port": str(port),
            "expires": str(expires),
            "final": final,
        },
        port=port,
        timeout=20,
    )
    code = sipp.wait(30)
    assert code == 0, sipp.errors + sipp.messages[-2000:]
    return sipp


def agent_phone(
    engine: RunningEngine,
    tmp: Path,
    user: str,
    scenario: str = "agent_uas_answer.xml",
    *,
    calls: int = 1,
    **subst: str,
) -> Sipp:
    """Register ``user`` then answer offers with ``scenario`` on the registered port."""
    port = free_port()
    register(engine, tmp, user, port=port)
    engine.wait_for("agent registered", agent=user)
    return Sipp(tmp, f"phone-{user}", scenario, [], subst, port=port, calls=calls)


def caller(
    engine: RunningEngine,
    tmp: Path,
    scenario: str = "queue_uac_caller_bye.xml",
    *,
    rtp_port: int | None = None,
    headers: tuple[str, ...] = (),
    **subst: str,
) -> Sipp:
    extra = "".join(f"\n      {h}" for h in headers)
    args = [f"127.0.0.1:{engine.sip_port}", "-s", "100"]
    if rtp_port is not None:
        args += ["-key", "rtp_port", str(rtp_port)]
    else:
        args += ["-key", "rtp_port", str(sipp_media_port())]
    return Sipp(tmp, "caller", scenario, args, {"extra_headers": extra, **subst})


class RtpPeer:
    """A phone's RTP port: records what arrives; once something arrived, answers every 20 ms
    with 160 bytes of ``fill`` (payload type ``pt``) to where it came from (symmetric RTP)."""

    def __init__(self, fill: int, pt: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        port = free_port(both=False)
        self.sock.bind(("127.0.0.1", port - port % 2))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.02)
        self.fill, self.pt = fill, pt
        self.packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        remote = None
        seq, ts, next_send = 0, 0, 0.0
        payload = bytes([self.fill]) * 160
        while not self._stop.is_set():
            try:
                data, source = self.sock.recvfrom(2048)
                self.packets.append((time.monotonic(), data))
                remote = source
            except TimeoutError:
                pass
            except OSError:
                return
            now = time.monotonic()
            if remote is not None and now >= next_send:
                header = struct.pack(
                    "!BBHII", 0x80, self.pt, seq & 0xFFFF, ts & 0xFFFFFFFF, 0x1234 + self.fill
                )
                try:
                    self.sock.sendto(header + payload, remote)
                except OSError:
                    return
                seq, ts = seq + 1, ts + 160
                next_send = (next_send + 0.02) if next_send else now + 0.02

    def payloads(self) -> list[tuple[float, int, bytes]]:
        return [(t, d[1] & 0x7F, d[12:]) for t, d in self.packets if len(d) > 12]

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def offers(engine: RunningEngine) -> list[dict[str, Any]]:
    return engine.events("offer")


def when(line: dict[str, Any]) -> float:
    return dt.datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------------------------
# tests


def _whisper_then_bridge(
    engine_factory: Any, tmp_path: Path, *, agent_pt: int, agent_codec: str
) -> tuple[RunningEngine, RtpPeer, RtpPeer, Sipp]:
    engine = start(engine_factory, acd_config())
    agent_media = RtpPeer(0x44, agent_pt)
    caller_media = RtpPeer(0x33, 0)
    try:
        phone = agent_phone(
            engine,
            tmp_path,
            "alice",
            agent_rtp=str(agent_media.port),
            agent_pt=str(agent_pt),
            agent_codec=agent_codec,
            answer_ms="500",
        )
        uac = caller(
            engine,
            tmp_path,
            rtp_port=caller_media.port,
            hold_ms="6000",
            codecs="0",
            headers=("X-Reserved-Repeat-Customer: true",),
        )
        assert uac.wait(40) == 0, uac.errors + uac.messages[-3000:]
        assert phone.wait(20) == 0, phone.errors + phone.messages[-3000:]
    finally:
        agent_media.close()
        caller_media.close()
    return engine, agent_media, caller_media, phone


def test_agent_hears_whisper_while_caller_hears_hold_then_bridge(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine, agent_media, caller_media, phone = _whisper_then_bridge(
        engine_factory, tmp_path, agent_pt=0, agent_codec="PCMU"
    )
    # The offer INVITE: caller number and name, queue, reserved data.
    invite = phone.received("INVITE")[0]
    assert 'From: "Jane Doe" <sip:+15550001111@' in invite
    assert "X-Switchhook-Queue: billing" in invite
    assert "X-Reserved-Repeat-Customer: true" in invite
    assert "X-Reserved-Verified-Customer: false" in invite
    assert "Alert-Info" not in invite, "no ring tone configured"
    # Agent side: whisper audio (speech, not the caller's pattern) first, then the caller.
    caller_fill = bytes([0x33]) * 160
    agent_rx = agent_media.payloads()
    first_caller = next(i for i, (_, _, p) in enumerate(agent_rx) if p == caller_fill)
    before = b"".join(audioop.ulaw2lin(p, 2) for _, pt, p in agent_rx[:first_caller] if pt == 0)
    assert len(before) / 16000 >= 0.8, "the agent heard the whisper before the caller"
    assert audioop.rms(before, 2) > 200, "the whisper is speech, not silence"
    after = [p for _, _, p in agent_rx[first_caller:]]
    assert sum(p == caller_fill for p in after) >= 0.9 * len(after), "then the caller"
    # Caller side: only hold audio (the tone) until the agent's audio arrives; never whisper.
    hold = set(tone((440.0,), 1000).payloads("PCMU")) | {b"\xff" * 160}
    agent_fill = bytes([0x44]) * 160
    caller_rx = caller_media.payloads()
    first_agent = next(i for i, (_, _, p) in enumerate(caller_rx) if p == agent_fill)
    waiting = [p for _, _, p in caller_rx[:first_agent]]
    assert len(waiting) >= 50, "hold audio while the agent rang and heard the whisper"
    assert all(p in hold for p in waiting), "nothing but hold audio before the bridge"
    # Metrics: the wait includes ring time and the whisper.
    metrics = engine.wait_for("queue call metrics")
    assert metrics["agent"] == "alice" and metrics["queue"] == "billing"
    assert metrics["whisper_seconds"] >= 0.8
    assert metrics["wait_seconds"] >= metrics["ring_seconds"] + metrics["whisper_seconds"] - 0.05
    assert metrics["talk_seconds"] > 0.5


def test_pcmu_caller_to_pcma_agent_is_transcoded(engine_factory: Any, tmp_path: Path) -> None:
    engine, agent_media, caller_media, _ = _whisper_then_bridge(
        engine_factory, tmp_path, agent_pt=8, agent_codec="PCMA"
    )
    caller_as_alaw = audioop.lin2alaw(audioop.ulaw2lin(bytes([0x33]) * 160, 2), 2)
    agent_as_ulaw = audioop.lin2ulaw(audioop.alaw2lin(bytes([0x44]) * 160, 2), 2)
    agent_rx = agent_media.payloads()
    assert {pt for _, pt, _ in agent_rx} == {8}, "the agent leg speaks PCMA"
    assert sum(p == caller_as_alaw for _, _, p in agent_rx) >= 50
    caller_rx = caller_media.payloads()
    assert {pt for _, pt, _ in caller_rx} == {0}, "the caller leg speaks PCMU"
    assert sum(p == agent_as_ulaw for _, _, p in caller_rx) >= 50
    assert engine.wait_for("queue call metrics")["agent"] == "alice"


def test_longest_idle_agent_first(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(
        engine_factory, acd_config(agents=[agent("alice", ["billing"]), agent("bob", ["billing"])])
    )
    bob = agent_phone(engine, tmp_path, "bob", "agent_uas_hangup.xml", talk_ms="2500")
    time.sleep(0.3)
    alice = agent_phone(engine, tmp_path, "alice", "agent_uas_hangup.xml", talk_ms="2500")
    # First caller: bob has been idle longer. After his call he is idle again from then on,
    # so the second caller goes to alice.
    first = caller(engine, tmp_path, "queue_uac_wait_bye.xml")
    assert first.wait(30) == 0, first.errors
    second = caller(engine, tmp_path, "queue_uac_wait_bye.xml")
    assert second.wait(30) == 0, second.errors
    assert bob.wait(10) == 0 and alice.wait(10) == 0
    assert [line["agent"] for line in offers(engine)] == ["bob", "alice"]


def test_offer_timeout_moves_on_and_renotifies(engine_factory: Any, tmp_path: Path) -> None:
    queue = {
        "name": "billing",
        "hold_audio": HOLD_TONE,
        "offer": {
            "timeout_seconds": 2,
            "renotify_every_seconds": 5,
            "max_missed_offers_before_not_ready": 0,
        },
    }
    engine = start(
        engine_factory,
        acd_config(agents=[agent("alice", ["billing"]), agent("bob", ["billing"])], queues=[queue]),
    )
    alice = agent_phone(engine, tmp_path, "alice", "agent_uas_ring.xml", calls=10)
    bob = agent_phone(engine, tmp_path, "bob", "agent_uas_ring.xml", calls=10)
    try:
        uac = caller(engine, tmp_path, hold_ms="11500")
        assert uac.wait(40) == 0, uac.errors
    finally:
        alice.stop()
        bob.stop()
    seen = offers(engine)
    agents = [line["agent"] for line in seen]
    # alice (longest idle) 0-2 s, bob 2-4 s, alice again 5 s after her first ring, bob 7 s...
    assert agents[:4] == ["alice", "bob", "alice", "bob"], agents
    start_at = when(seen[0])
    assert 1.5 <= when(seen[1]) - start_at <= 3.5, "the next agent after the 2 s timeout"
    assert 4.0 <= when(seen[2]) - start_at <= 6.5, "re-notified 5 s after the missed offer"
    for name in ("alice", "bob"):
        times = [when(line) for line in seen if line["agent"] == name]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps and all(g >= 4.0 for g in gaps), (name, gaps)
    assert len(alice.received("CANCEL")) >= 2, "each unanswered offer was CANCELled"


def test_alert_info_and_sms_on_offer(engine_factory: Any, tmp_path: Path) -> None:
    posts: list[dict[str, Any]] = []

    class Gateway(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            posts.append(json.loads(self.rfile.read(length)))
            self.send_response(202)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tones = tmp_path / "tones"
    tones.mkdir()
    (tones / "billing.mp3").write_bytes(b"ID3 fake mp3 bytes")
    tone_port = free_port()
    queue = {
        "name": "billing",
        "hold_audio": HOLD_TONE,
        "sms": {"enabled": True},
        "offer": {"ring_tone": "billing.mp3"},
    }
    try:
        engine = start(
            engine_factory,
            acd_config(
                agents=[agent("alice", ["billing"], sms_number="+15551230001")],
                queues=[queue],
                sms_gateway={"url": f"http://127.0.0.1:{server.server_port}/sms"},
                tone_server={"listen": f"127.0.0.1:{tone_port}", "dir": str(tones)},
            ),
        )
        phone = agent_phone(engine, tmp_path, "alice", answer_ms="200")
        uac = caller(engine, tmp_path, hold_ms="2500")
        assert uac.wait(30) == 0, uac.errors
        assert phone.wait(10) == 0, phone.errors
        invite = phone.received("INVITE")[0]
        url = f"http://127.0.0.1:{tone_port}/billing.mp3"
        assert f"Alert-Info: <{url}>" in invite
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read() == b"ID3 fake mp3 bytes"
        engine.wait_for("offer sms sent", agent="alice")
    finally:
        server.shutdown()
    assert posts and posts[0]["to"] == "+15551230001" and posts[0]["queue"] == "billing"


def test_priority_caller_served_first(engine_factory: Any, tmp_path: Path) -> None:
    queue = {
        "name": "billing",
        "hold_audio": HOLD_TONE,
        "priority_rules": [{"when": "profile.repeat_customer", "priority": 10}],
    }
    engine = start(engine_factory, acd_config(queues=[queue]))
    plain = caller(engine, tmp_path, hold_ms="8000", from_user="+15550000001")
    engine.wait_for("queued", queue="billing")
    vip = caller(
        engine,
        tmp_path,
        hold_ms="8000",
        from_user="+15550000002",
        headers=("X-Reserved-Repeat-Customer: yes",),
    )
    deadline = time.monotonic() + 10
    while len(engine.events("queued")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    phone = agent_phone(engine, tmp_path, "alice")
    assert vip.wait(30) == 0 and plain.wait(30) == 0
    phone.stop()
    first = phone.received("INVITE")[0]
    assert "sip:+15550000002@" in first.split("From:", 1)[1].split("\n", 1)[0]
    assert "X-Reserved-Repeat-Customer: true" in first


def test_refer_to_queue_keeps_reserved_headers(engine_factory: Any, tmp_path: Path) -> None:
    queues = [
        {"name": "billing", "hold_audio": HOLD_TONE},
        {"name": "sales", "display_name": "Sales", "hold_audio": HOLD_TONE},
    ]
    engine = start(
        engine_factory,
        acd_config(agents=[agent("alice", ["billing"]), agent("bob", ["sales"])], queues=queues),
    )
    alice = agent_phone(
        engine,
        tmp_path,
        "alice",
        "agent_uas_refer.xml",
        talk_ms="2500",
        refer_to="<sip:queue-sales@127.0.0.1>",
    )
    bob = agent_phone(engine, tmp_path, "bob", "agent_uas_hangup.xml", talk_ms="2500")
    uac = caller(
        engine,
        tmp_path,
        "queue_uac_wait_bye.xml",
        headers=("X-Reserved-Verified-Customer: true", "User-to-User: 1234;encoding=hex"),
    )
    assert uac.wait(40) == 0, uac.errors
    assert alice.wait(10) == 0, alice.errors + alice.messages[-3000:]
    assert bob.wait(10) == 0, bob.errors
    notify = alice.received("NOTIFY")[0]
    assert "Event: refer" in notify and "SIP/2.0 200 OK" in notify.split("\n\n", 1)[1]
    second = bob.received("INVITE")[0]
    assert "X-Switchhook-Queue: sales" in second
    assert "X-Reserved-Verified-Customer: true" in second
    assert "User-to-User: 1234;encoding=hex" in second
    assert 'From: "Jane Doe" <sip:+15550001111@' in second
    metrics = engine.wait_for("queue call metrics")
    assert metrics["transfers"] == 1 and metrics["agent"] == "bob"


def test_agent_hold_plays_hold_audio_to_caller(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(engine_factory, acd_config())
    caller_media = RtpPeer(0x33, 0)
    try:
        phone = agent_phone(
            engine, tmp_path, "alice", "agent_uas_hold.xml", talk_ms="2500", hold_ms="2000"
        )
        uac = caller(engine, tmp_path, rtp_port=caller_media.port, hold_ms="9000", codecs="0")
        assert uac.wait(40) == 0, uac.errors
        assert phone.wait(10) == 0, phone.errors + phone.messages[-2000:]
    finally:
        caller_media.close()
    engine.wait_for("agent hold")
    engine.wait_for("agent unhold")
    metrics = engine.wait_for("queue call metrics")
    assert 1.5 <= metrics["hold_seconds"] <= 3.5
