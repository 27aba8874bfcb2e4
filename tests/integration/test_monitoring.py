"""Silent monitoring, coach and barge on real bridged calls: who hears what, proven by tones.

The engine runs in-process. A SIPp caller calls in (the test's behaviour answers and parks
it), the engine originates to a SIPp "agent" and bridges the two, and supervisors are SIPp
phones the engine calls through the admin API. Every party's media is a Python RTP socket
sending its own tone (caller 450 Hz, agent 1150 Hz, supervisors 1900 Hz and up) and recording
what it receives; Goertzel power on the decoded audio says who hears whom.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import re
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ivr.call import Call, CallState, OutboundLeg
from ivr.engine import Engine
from ivr.loading import load_all
from ivr.roles import hash_token, sip_ha1
from media.g711 import get_codec
from media.goertzel import relative_power

from .conftest import SCENARIOS, free_port, require_peer, write_config

pytestmark = pytest.mark.integration

CALLER_HZ, AGENT_HZ, SUPERVISOR_HZ = 450.0, 1150.0, 1900.0
PCMU = get_codec("PCMU")

TOKENS = {
    name: f"tok-{name}"
    for name in ("root", "sam", "trainee", "nobody", "mgr_sales", "mgr_support", "baresip")
}
SIP_PASSWORD = "phone-secret-1"


def users_config() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    users = [
        {"name": "root", "role": "admin"},
        {"name": "sam", "role": "supervisor", "sip": sip_ha1("sam", SIP_PASSWORD, "switchhook")},
        {
            "name": "trainee",
            "role": "listener",
            "sip": sip_ha1("trainee", SIP_PASSWORD, "switchhook"),
        },
        {"name": "nobody", "role": "agent", "sip": sip_ha1("nobody", SIP_PASSWORD, "switchhook")},
        {
            "name": "mgr_sales",
            "role": "manager",
            "teams": ["sales"],
            "sip": sip_ha1("mgr_sales", SIP_PASSWORD, "switchhook"),
        },
        {
            "name": "mgr_support",
            "role": "manager",
            "teams": ["support"],
            "sip": sip_ha1("mgr_support", SIP_PASSWORD, "switchhook"),
        },
        {
            "name": "baresip",
            "role": "supervisor",
            "sip": sip_ha1("baresip", SIP_PASSWORD, "switchhook"),
        },
    ]
    for user in users:
        user["tokens"] = [hash_token(TOKENS[user["name"]])]
    roles = {"listener": {"permissions": ["calls.view", "monitor.listen"], "scope": "all"}}
    return users, roles


ACD = {
    "agents": [
        {
            "id": "a1",
            "display_name": "Ann",
            "sip": {"username": "a1", "password": "x"},
            "teams": ["sales"],
        },
        {
            "id": "a2",
            "display_name": "Bob",
            "sip": {"username": "a2", "password": "x"},
            "teams": ["support"],
        },
    ]
}


# ---- RTP peers -------------------------------------------------------------------------------


class ToneLeg:
    """A Python RTP endpoint: sends a PCMU tone every 20 ms once it knows where to, and
    records every packet it receives with its arrival time."""

    def __init__(self, frequency: float | None, amplitude: int = 6000) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        port = free_port(both=False)
        self.sock.bind(("127.0.0.1", port - port % 2))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.1)
        self.frequency = frequency
        self.amplitude = amplitude
        self.packets: list[tuple[float, bytes]] = []
        self.remote: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._receive, daemon=True),
            threading.Thread(target=self._send, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def send_to(self, port: int) -> None:
        self.remote = ("127.0.0.1", port)

    def _receive(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.packets.append((time.monotonic(), data))

    def _send(self) -> None:
        seq, timestamp, ssrc, phase = 1000, 5000, 0x1234ABCD ^ self.port, 0.0
        step = 2 * math.pi * (self.frequency or 0) / 8000
        next_at = time.monotonic()
        while not self._stop.is_set():
            next_at += 0.02
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if self.remote is None or self.frequency is None:
                continue
            samples = []
            for _ in range(160):
                samples.append(int(self.amplitude * math.sin(phase)))
                phase += step
            pcm = struct.pack("<160h", *samples)
            header = struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc)
            try:
                self.sock.sendto(header + PCMU.encode(pcm), self.remote)
            except OSError:
                return
            seq += 1
            timestamp += 160

    def audio(self, since: float, until: float) -> bytes:
        """Decoded PCMU audio of the packets that arrived in [since, until)."""
        return b"".join(
            PCMU.decode(data[12:])
            for at, data in self.packets
            if since <= at < until and data[1] & 0x7F == 0
        )

    def hears(self, frequency: float, since: float, until: float) -> float:
        pcm = self.audio(since, until)
        assert len(pcm) >= 1600, f"port {self.port}: too little audio in the window"
        return relative_power(pcm, frequency)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.sock.close()


def rtp_headers(packets: list[tuple[float, bytes]]) -> list[tuple[int, int, int, int]]:
    """(payload type, seq, timestamp, ssrc) of each packet."""
    out = []
    for _, data in packets:
        _, second, seq, timestamp, ssrc = struct.unpack("!BBHII", data[:12])
        out.append((second & 0x7F, seq, timestamp, ssrc))
    return out


def assert_one_continuous_stream(packets: list[tuple[float, bytes]]) -> None:
    """One SSRC; sequence +1 per packet (loopback: nothing lost or reordered); timestamps
    always moving forward by at most a few frames."""
    headers = [h for h in rtp_headers(packets) if h[0] == 0]
    assert len(headers) > 100
    assert {h[3] for h in headers} == {headers[0][3]}, "the SSRC changed"
    for (_, seq1, ts1, _), (_, seq2, ts2, _) in zip(headers, headers[1:], strict=False):
        assert (seq2 - seq1) & 0xFFFF == 1, f"sequence gap {seq1} -> {seq2}"
        assert 0 < (ts2 - ts1) & 0xFFFFFFFF <= 160 * 3, f"timestamp jump {ts1} -> {ts2}"


# ---- SIPp peers ------------------------------------------------------------------------------


@dataclass
class SippPeer:
    process: subprocess.Popen[bytes]
    log: Path
    port: int

    async def wait(self, timeout: float = 20) -> int:
        """Exit status (waited for off the event loop: the engine runs on it)."""
        return await asyncio.to_thread(self.process.wait, timeout)

    def requests_received(self) -> list[str]:
        """Methods of the SIP requests SIPp received (from its -trace_msg log)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        methods = []
        for block in text.split("message received")[1:]:
            first = next((line.strip() for line in block.splitlines()[1:] if line.strip()), "")
            match = re.match(r"^([A-Z]+) sip:", first)
            if match:
                methods.append(match.group(1))
        return methods

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def sipp_peer(
    tmp: Path,
    name: str,
    media_port: int,
    *,
    uac_to: int | None = None,
    service: str = "100",
    caller: str = "+15550001111",
    scenario: str | None = None,
    keys: dict[str, str] | None = None,
    subst: dict[str, str] | None = None,
) -> SippPeer:
    """A SIPp phone; ``keys`` are ``-key`` values, ``subst`` fills ``%%name%%`` placeholders
    where SIPp takes no keyword (expected response codes)."""
    sipp = require_peer("sipp")
    port = free_port()
    log = tmp / f"sipp-{name}.log"
    cmd = [
        sipp,
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-m",
        "1",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(log),
        "-timeout",
        "60s",
        "-timeout_error",
        "-mi",
        "127.0.0.1",
        "-mp",
        str(free_port(both=False) & ~1),
        "-key",
        "peer_rtp",
        str(media_port),
        "-key",
        "caller",
        caller,
    ]
    for key, value in (keys or {}).items():
        cmd += ["-key", key, value]
    source = SCENARIOS / (
        scenario or ("mon_uas_answer.xml" if uac_to is None else "mon_uac_park.xml")
    )
    text = source.read_text()
    for key, value in (subst or {}).items():
        text = text.replace(f"%%{key}%%", value)
    scenario_path = tmp / f"{name}-{source.name}"
    scenario_path.write_text(text)
    cmd += ["-sf", str(scenario_path)]
    if uac_to is not None:
        cmd += [f"127.0.0.1:{uac_to}", "-s", service]
    process = subprocess.Popen(cmd, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return SippPeer(process, log, port)


# ---- the harness -----------------------------------------------------------------------------


async def park(call: Call) -> None:
    """Test behaviour: answer and stay (the caller waits for the agent bridge)."""
    if await call.answer():
        await call.ended.wait()


@dataclass
class Bridged:
    call: Call
    agent_leg: OutboundLeg
    caller: ToneLeg
    agent: ToneLeg
    uac: SippPeer
    uas: SippPeer

    def hangup(self, reason: str) -> None:
        """End both legs (what the ACD's run_bridge does when one side hangs up)."""
        self.call.hangup(reason)
        self.agent_leg.hangup(reason)


@dataclass
class Harness:
    engine: Engine
    tmp: Path
    admin_port: int
    legs: list[ToneLeg] = field(default_factory=list)
    peers: list[SippPeer] = field(default_factory=list)

    async def bridged_call(
        self,
        agent: str = "a1",
        caller: str = "+15550001111",
        queue: str | None = "support",
        caller_hz: float = CALLER_HZ,
        agent_hz: float = AGENT_HZ,
    ) -> Bridged:
        engine = self.engine
        caller_rtp, agent_rtp = self.tone(caller_hz), self.tone(agent_hz)
        sip_port = engine.listening[0][2]
        before = set(engine.calls)
        uac = self.peer(
            sipp_peer(self.tmp, f"caller-{caller}", caller_rtp.port, uac_to=sip_port, caller=caller)
        )
        call = await self.until(
            lambda: next(
                (
                    c
                    for k, c in engine.calls.items()
                    if k not in before and c.state is CallState.ANSWERED
                ),
                None,
            )
        )
        uas = self.peer(sipp_peer(self.tmp, f"agent-{agent}-{caller}", agent_rtp.port))
        await asyncio.sleep(0.3)  # SIPp binds
        leg = await engine.originate(
            request_uri=f"sip:{agent}@127.0.0.1:{uas.port}",
            to_uri=f"<sip:{agent}@127.0.0.1>",
            from_uri="<sip:queue@127.0.0.1>",
            destination=("127.0.0.1", uas.port),
            timeout=10,
        )
        assert call.rtp is not None and leg.rtp is not None
        engine.bridge(call, leg)
        # What the ACD sets on a bridged call (ivr.queueing, in progress).
        call.agent, call.queue = agent, queue
        caller_rtp.send_to(call.rtp.local_port)
        agent_rtp.send_to(leg.rtp.local_port)
        return Bridged(call, leg, caller_rtp, agent_rtp, uac, uas)

    def tone(self, frequency: float | None) -> ToneLeg:
        leg = ToneLeg(frequency)
        self.legs.append(leg)
        return leg

    def peer(self, peer: SippPeer) -> SippPeer:
        self.peers.append(peer)
        return peer

    async def supervisor_phone(self, name: str, frequency: float) -> tuple[SippPeer, ToneLeg]:
        rtp = self.tone(frequency)
        peer = self.peer(sipp_peer(self.tmp, name, rtp.port))
        await asyncio.sleep(0.2)
        return peer, rtp

    async def api(
        self, method: str, path: str, body: Any = None, token: str | None = TOKENS["root"]
    ) -> tuple[int, Any]:
        def call() -> tuple[int, Any]:
            conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=10)
            headers = {"Content-Type": "application/json"}
            if token is not None:
                headers["Authorization"] = f"Bearer {token}"
            conn.request(
                method, path, body=None if body is None else json.dumps(body), headers=headers
            )
            response = conn.getresponse()
            data = response.read()
            conn.close()
            return response.status, json.loads(data) if data else None

        return await asyncio.to_thread(call)

    async def monitor(
        self, call: Call, token: str, mode: str, target_port: int, user: str = "sup"
    ) -> dict[str, Any]:
        status, body = await self.api(
            "POST",
            f"/calls/{call.call_id}/monitor",
            {"mode": mode, "target": f"sip:{user}@127.0.0.1:{target_port}"},
            token=token,
        )
        assert status == 202, body
        return await self.until_active(body["id"], token)

    async def until_active(self, monitor_id: str, token: str) -> dict[str, Any]:
        async def active() -> dict[str, Any] | None:
            status, body = await self.api("GET", f"/monitors/{monitor_id}", token=token)
            return body if status == 200 and body["state"] == "active" else None

        return await self.until_async(active)

    @staticmethod
    async def until(probe: Callable[[], Any], timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = probe()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError("condition not met in time")

    @staticmethod
    async def until_async(probe: Callable[[], Awaitable[Any]], timeout: float = 10) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(0.05)
        raise AssertionError("condition not met in time")

    def monitor_leg_port(self, monitor_id: str) -> int:
        monitor = self.engine.supervision.monitors[monitor_id]
        assert monitor.leg is not None and monitor.leg.rtp is not None
        return int(monitor.leg.rtp.local_port)


def run_with_engine(
    tmp_path: Path, body: Callable[[Harness], Awaitable[Any]], **overrides: Any
) -> Any:
    users, roles = users_config()
    admin_port = free_port()
    config_path, _ = write_config(
        tmp_path,
        free_port(),
        users=users,
        roles=roles,
        acd=ACD,
        admin={"enabled": True, "listen": f"127.0.0.1:{admin_port}"},
        monitoring={"sip_algorithms": ["MD5"], **overrides.pop("monitoring", {})},
        store={"path": str(tmp_path / "store.db")},
        **overrides,
    )
    loaded = load_all(config_path)

    async def main() -> Any:
        engine = Engine(loaded.settings, behaviour=park)
        await engine.start()
        harness = Harness(engine, tmp_path, admin_port)
        try:
            return await body(harness)
        finally:
            await engine.shutdown()
            for leg in harness.legs:
                leg.close()
            for peer in harness.peers:
                peer.stop()

    return asyncio.run(main())


# ---- tests -----------------------------------------------------------------------------------


def test_listen_coach_barge_who_hears_what_and_the_agent_cannot_tell(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.bridged_call()
        await asyncio.sleep(0.6)
        no_monitor_start = time.monotonic()
        await asyncio.sleep(1.0)
        phone, sup = await h.supervisor_phone("sup", SUPERVISOR_HZ)
        view = await h.monitor(b.call, TOKENS["sam"], "listen", phone.port)
        sup.send_to(h.monitor_leg_port(view["id"]))
        windows: dict[str, tuple[float, float]] = {}
        t = time.monotonic()
        await asyncio.sleep(1.8)
        windows["listen"] = (t + 0.4, time.monotonic())
        for mode in ("coach", "barge", "listen"):
            status, changed = await h.api(
                "PATCH", f"/monitors/{view['id']}", {"mode": mode}, token=TOKENS["sam"]
            )
            assert status == 200 and changed["mode"] == mode, changed
            t = time.monotonic()
            await asyncio.sleep(1.8)
            windows[mode if mode != "listen" else "listen again"] = (t + 0.4, time.monotonic())
        status, details = await h.api("GET", f"/calls/{b.call.call_id}", token=TOKENS["sam"])
        assert status == 200
        monitors = [p for p in details["participants"] if p["role"] == "monitor"]
        assert monitors == [
            {
                "role": "monitor",
                "supervisor": "sam",
                "mode": "listen",
                "monitor_id": view["id"],
                "state": "active",
            }
        ]
        status, _ = await h.api("DELETE", f"/monitors/{view['id']}", token=TOKENS["sam"])
        assert status == 200
        assert await phone.wait() == 0, "the supervisor's leg was hung up with a BYE"
        t = time.monotonic()
        await asyncio.sleep(1.0)
        after = (t + 0.3, time.monotonic())

        # The supervisor hears caller and agent in every mode.
        for mode, (since, until) in windows.items():
            assert sup.hears(CALLER_HZ, since, until) > 0.15, mode
            assert sup.hears(AGENT_HZ, since, until) > 0.15, mode
        expectations = {
            "listen": (False, False),
            "coach": (True, False),
            "barge": (True, True),
            "listen again": (False, False),
        }
        for mode, (agent_hears, caller_hears) in expectations.items():
            since, until = windows[mode]
            agent_power = b.agent.hears(SUPERVISOR_HZ, since, until)
            caller_power = b.caller.hears(SUPERVISOR_HZ, since, until)
            assert (agent_power > 0.1) is agent_hears and (agent_power < 0.01) is not agent_hears, (
                mode,
                agent_power,
            )
            assert (caller_power > 0.1) is caller_hears and (
                caller_power < 0.01
            ) is not caller_hears, (mode, caller_power)
            # The call itself goes on: each hears the other throughout.
            assert b.agent.hears(CALLER_HZ, since, until) > 0.3, mode
            assert b.caller.hears(AGENT_HZ, since, until) > 0.3, mode
        assert b.agent.hears(CALLER_HZ, *after) > 0.9 and b.caller.hears(AGENT_HZ, *after) > 0.9
        assert b.agent.hears(CALLER_HZ, no_monitor_start, no_monitor_start + 0.8) > 0.9

        # The agent cannot tell: one RTP stream throughout, and no SIP request after the ACK.
        assert_one_continuous_stream(b.agent.packets)
        assert_one_continuous_stream(b.caller.packets)
        b.hangup("test done")
        assert await b.uas.wait() == 0 and await b.uac.wait() == 0
        assert b.uas.requests_received() == ["INVITE", "ACK", "BYE"]

        # Audited: start, three mode changes, stop.
        status, audit = await h.api("GET", f"/audit?call_id={b.call.call_id}")
        assert status == 200
        rows = [(r["who"], r["action"], r["details"].get("mode")) for r in audit["audit"]]
        assert rows == [
            ("sam", "monitor.start", "listen"),
            ("sam", "monitor.mode", "coach"),
            ("sam", "monitor.mode", "barge"),
            ("sam", "monitor.mode", "listen"),
            ("sam", "monitor.stop", "listen"),
        ]

    run_with_engine(tmp_path, body)


def test_five_supervisors_on_one_call_each_in_their_own_mode(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        b = await h.bridged_call()
        modes = ["listen", "listen", "coach", "listen", "listen"]
        sups: list[tuple[SippPeer, ToneLeg, dict[str, Any]]] = []
        for index, mode in enumerate(modes):
            phone, rtp = await h.supervisor_phone(f"sup{index}", SUPERVISOR_HZ + 150 * index)
            view = await h.monitor(b.call, TOKENS["root"], mode, phone.port, user=f"s{index}")
            rtp.send_to(h.monitor_leg_port(view["id"]))
            sups.append((phone, rtp, view))
        t = time.monotonic()
        await asyncio.sleep(2.0)
        since, until = t + 0.4, time.monotonic()
        for phone, rtp, _ in sups:
            assert rtp.hears(CALLER_HZ, since, until) > 0.15
            assert rtp.hears(AGENT_HZ, since, until) > 0.15
        # Only the coaching supervisor (index 2) reaches the agent; nobody reaches the caller.
        for index in range(5):
            frequency = SUPERVISOR_HZ + 150 * index
            agent_power = b.agent.hears(frequency, since, until)
            assert (agent_power > 0.1) if index == 2 else (agent_power < 0.01), (index, agent_power)
            assert b.caller.hears(frequency, since, until) < 0.01
        status, details = await h.api("GET", f"/calls/{b.call.call_id}")
        assert sorted(
            p["mode"] for p in details["participants"] if p["role"] == "monitor"
        ) == sorted(modes)
        # The call ends: every monitor is hung up cleanly (BYE answered), the monitors go.
        b.hangup("caller done")
        for phone, _, _ in sups:
            assert await phone.wait() == 0
            assert phone.requests_received() == ["INVITE", "ACK", "BYE"]
        await h.until(lambda: not h.engine.supervision.monitors)
        assert_one_continuous_stream(b.agent.packets)
        assert await b.uas.wait() == 0 and b.uas.requests_received() == ["INVITE", "ACK", "BYE"]
        status, audit = await h.api("GET", f"/audit?call_id={b.call.call_id}")
        stops = [r for r in audit["audit"] if r["action"] == "monitor.stop"]
        assert len(stops) == 5 and {r["details"]["reason"] for r in stops} == {"call ended"}

    run_with_engine(tmp_path, body)


# ---- a real phone: baresip ---------------------------------------------------------------


def start_baresip(
    tmp: Path, engine_port: int, user: str
) -> tuple[subprocess.Popen[bytes], Path, int]:
    """A headless baresip registering ``user`` to the engine, auto-answering, sending a
    2500 Hz tone from a WAV file (aufile) and dumping what it hears to files (sndfile)."""
    binary = require_peer("baresip")
    home = tmp / "baresip"
    (home / "sound").mkdir(parents=True, exist_ok=True)
    sip_port = free_port()
    rtp_port = free_port(both=False) & ~1
    tone_file = home / "tone.wav"
    with wave.open(str(tone_file), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(
            struct.pack(
                f"<{8000 * 30}h",
                *(int(6000 * math.sin(2 * math.pi * 2500 * i / 8000)) for i in range(8000 * 30)),
            )
        )
    (home / "accounts").write_text(
        f"<sip:{user}@127.0.0.1:{engine_port}>;auth_pass={SIP_PASSWORD};answermode=auto;"
        "regint=60;audio_codecs=PCMU\n"
    )
    (home / "config").write_text(
        "\n".join(
            [
                "poll_method epoll",
                f"sip_listen 127.0.0.1:{sip_port}",
                "sip_transports udp",
                "audio_player aufile,/dev/null",
                f"audio_source aufile,{tone_file}",
                "audio_alert aufile,/dev/null",
                f"rtp_ports {rtp_port}-{rtp_port + 1}",
                "module_path /usr/lib/baresip/modules",
                "module g711.so",
                "module aufile.so",
                "module sndfile.so",
                "module_app account.so",
                "module_app menu.so",
                f"snd_path {home / 'sound'}",
                "net_interface 127.0.0.1",
                "",
            ]
        )
    )
    log = tmp / "baresip.log"
    process = subprocess.Popen(
        [binary, "-f", str(home), "-v"],
        cwd=tmp,
        stdin=subprocess.DEVNULL,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, log, rtp_port


def test_baresip_supervisor_phone_registers_and_is_called_to_listen(tmp_path: Path) -> None:
    async def body(h: Harness) -> None:
        engine = h.engine
        process, log, baresip_rtp = start_baresip(h.tmp, engine.listening[0][2], "baresip")
        try:
            await h.until(
                lambda: engine.supervision.registrar.all_bindings(
                    asyncio.get_running_loop().time()
                ),
                timeout=15,
            )
            b = await h.bridged_call()
            status, view = await h.api(
                "POST",
                f"/calls/{b.call.call_id}/monitor",
                {"mode": "listen"},
                token=TOKENS["baresip"],
            )
            assert status == 202, view
            view = await h.until_active(view["id"], TOKENS["baresip"])
            monitor = engine.supervision.monitors[view["id"]]
            assert monitor.tap is not None and monitor.tap.attached
            assert b.call.bridge is not None and len(b.call.bridge.taps) == 1
            leg = monitor.leg
            assert leg is not None and leg.rtp is not None
            await asyncio.sleep(2.0)
            stats = leg.rtp.stats.as_dict()
            assert stats["packets_sent"] >= 60, stats  # the mix flows to baresip's port
            assert leg.negotiated is not None and leg.negotiated.remote_port == baresip_rtp
            assert stats["packets_received"] >= 30, stats  # and baresip's audio comes back
            # Baresip talks (2500 Hz sine) but in listen mode nobody hears it.
            since, until = time.monotonic() - 1.5, time.monotonic()
            assert b.agent.hears(2500.0, since, until) < 0.01
            assert b.caller.hears(2500.0, since, until) < 0.01
            status, _ = await h.api("DELETE", f"/monitors/{view['id']}", token=TOKENS["baresip"])
            assert status == 200
            await h.until(lambda: leg.ended.is_set())
            await h.until(
                lambda: (
                    "terminated" in log.read_text(errors="replace")
                    or "closed" in log.read_text(errors="replace")
                ),
                timeout=5,
            )
            text = log.read_text(errors="replace")
            assert "200 OK" in text or "registered" in text.lower(), text[-2000:]
            assert "established" in text.lower(), text[-2000:]
            # What baresip decoded (its sndfile dump): the caller's and the agent's tones.
            dump = next((h.tmp / "baresip" / "sound").glob("dump-*-dec.wav"))

            def read_dump() -> tuple[int, bytes] | None:
                try:  # baresip finalises the WAV header when the call's audio closes
                    with wave.open(str(dump), "rb") as heard:
                        return heard.getframerate(), heard.readframes(heard.getnframes())
                except (wave.Error, EOFError):
                    return None

            rate, pcm = await h.until(read_dump)
            assert rate == 8000 and len(pcm) > 16000
            assert relative_power(pcm[8000:], CALLER_HZ) > 0.15
            assert relative_power(pcm[8000:], AGENT_HZ) > 0.15
            b.hangup("done")
            assert_one_continuous_stream(b.agent.packets)
            assert await b.uas.wait() == 0
            assert b.uas.requests_received() == ["INVITE", "ACK", "BYE"]
        finally:
            process.terminate()
            try:
                await asyncio.to_thread(process.wait, 10)
            except subprocess.TimeoutExpired:
                process.kill()

    run_with_engine(tmp_path, body)
