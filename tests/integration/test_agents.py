"""Agents' phones against the real engine: REGISTER with digest (SIPp for MD5, a raw socket
for SHA-256), unregister, expiry, restore after a restart, feature codes."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from sipstack.auth import build_authorization

from .conftest import RunningEngine, free_port, run_sipp, stop_engine
from .test_queues import PASSWORDS, Sipp, acd_config, agent, caller, register, start

pytestmark = pytest.mark.integration


class RawPhone:
    """A SIP phone reduced to REGISTER over UDP (any digest algorithm sipstack speaks)."""

    def __init__(self, engine: RunningEngine, user: str) -> None:
        self.engine, self.user = engine, user
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.cseq = 0
        self.call_id = f"raw-{user}-{time.monotonic_ns()}"

    def _send(self, contact: str, expires: int, authorization: str | None) -> str:
        self.cseq += 1
        lines = [
            f"REGISTER sip:127.0.0.1:{self.engine.sip_port} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{time.monotonic_ns()}",
            f"From: <sip:{self.user}@127.0.0.1>;tag=raw{self.port}",
            f"To: <sip:{self.user}@127.0.0.1>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: {contact}",
            f"Expires: {expires}",
            "Max-Forwards: 70",
        ]
        if authorization:
            lines.append(f"Authorization: {authorization}")
        lines += ["Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(lines).encode(), ("127.0.0.1", self.engine.sip_port))
        while True:
            data, _ = self.sock.recvfrom(65535)
            text = data.decode()
            if not text.startswith("SIP/2.0 100"):
                return text

    def register(
        self,
        *,
        password: str,
        algorithm: str = "SHA-256",
        expires: int = 3600,
        contact: str | None = None,
    ) -> str:
        contact = contact or f"<sip:{self.user}@127.0.0.1:{self.port}>"
        first = self._send(contact, expires, None)
        assert first.startswith("SIP/2.0 401"), first
        challenges = [
            line.split(":", 1)[1].strip()
            for line in first.split("\r\n")
            if line.lower().startswith("www-authenticate:")
        ]
        assert any("algorithm=SHA-256" in c for c in challenges), "RFC 8760: SHA-256 offered"
        assert any("algorithm=MD5" in c for c in challenges)
        challenge = next(c for c in challenges if f"algorithm={algorithm}" in c)
        authorization = build_authorization(
            challenge,
            method="REGISTER",
            uri=f"sip:127.0.0.1:{self.engine.sip_port}",
            username=self.user,
            password=password,
            cnonce=f"c{time.monotonic_ns()}",
        )
        return self._send(contact, expires, authorization)

    def close(self) -> None:
        self.sock.close()


def all_algorithms(**extra: Any) -> dict[str, Any]:
    config = acd_config(agents=[agent("alice", ["billing"]), agent("bob", ["billing"])], **extra)
    config["registrar"] = {**config["registrar"], "algorithms": ["SHA-256", "MD5"]}
    return config


def test_register_sha256_contacts_and_unregister(engine_factory: Any) -> None:
    engine = start(engine_factory, all_algorithms())
    phone = RawPhone(engine, "alice")
    try:
        ok = phone.register(password=PASSWORDS["alice"])
        assert ok.startswith("SIP/2.0 200"), ok
        assert f"<sip:alice@127.0.0.1:{phone.port}>;expires=3600" in ok
        # A second contact for the same agent: both listed.
        second = phone.register(
            password=PASSWORDS["alice"], algorithm="MD5", contact="<sip:alice@127.0.0.1:5999>"
        )
        assert second.startswith("SIP/2.0 200") and second.count("Contact:") == 2, second
        assert engine.wait_for("agent registered", agent="alice", contacts=2)
        # Unregister everything (§10.3: "*" with Expires: 0).
        gone = phone.register(password=PASSWORDS["alice"], contact="*", expires=0)
        assert gone.startswith("SIP/2.0 200") and "Contact:" not in gone, gone
        engine.wait_for("agent unregistered", agent="alice", contacts=0)
        # Wrong password and someone else's AOR are refused.
        assert phone.register(password="wrong").startswith("SIP/2.0 403")
    finally:
        phone.close()
    thief = RawPhone(engine, "bob")
    try:
        # bob's credentials for alice's address of record.
        thief.user = "alice"
        refused = thief.register(password=PASSWORDS["bob"])
        assert refused.startswith("SIP/2.0 403"), refused
    finally:
        thief.close()


def test_sipp_register_md5_and_wrong_password(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(engine_factory, acd_config())
    sipp = register(engine, tmp_path, "alice", port=free_port())
    assert 'WWW-Authenticate: Digest realm="switchhook"' in sipp.messages
    engine.wait_for("agent registered", agent="alice", contacts=1)
    register(engine, tmp_path, "alice", port=free_port(), password="wrong", final="403")
    engine.wait_for("register refused")


def test_registration_expires_and_agent_is_not_offered(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(engine_factory, acd_config())
    register(engine, tmp_path, "alice", port=free_port(), expires=1)
    engine.wait_for("agent registered", agent="alice")
    engine.wait_for("registration expired", agent="alice", timeout=5)
    row = [r for r in engine.events("agent state") if r["agent"] == "alice"]
    assert row[-1]["new"] == "available", "expiry is not a state change: still logged in"


def test_registrations_restored_after_restart(engine_factory: Any, tmp_path: Path) -> None:
    store = {"path": str(tmp_path / "shared.db")}
    first = start(engine_factory, acd_config(), store=store)
    port = free_port()
    register(first, tmp_path, "alice", port=port)
    first.wait_for("agent registered", agent="alice")
    time.sleep(0.3)  # the store write is asynchronous
    assert stop_engine(first) == 0
    second = start(engine_factory, acd_config(), store=store)
    assert second.wait_for("registrations restored")["bindings"] == 1
    # The restored binding is offered calls without the phone registering again.
    phone = Sipp(tmp_path, "phone", "agent_uas_answer.xml", [], {}, port=port)
    uac = caller(second, tmp_path, hold_ms="2500")
    assert uac.wait(30) == 0, uac.errors
    assert phone.wait(10) == 0, phone.errors
    assert second.wait_for("offer")["agent"] == "alice"


def test_feature_codes_log_in_and_not_ready(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(engine_factory, acd_config(log_in_on_register=False))
    register(engine, tmp_path, "alice", port=free_port())
    for code, state in (
        ("*41", "available"),
        ("*44", "not_ready"),
        ("*43", "available"),
        ("*42", "logged_out"),
    ):
        result = run_sipp(
            "agent_feature_code.xml",
            engine,
            tmp_path,
            service=code,
            subst={"user": "alice", "password": PASSWORDS["alice"]},
        )
        assert result.returncode == 0, result.stderr + result.messages[-2000:]
        line = engine.wait_for("feature code", code=code)
        assert line["agent"] == "alice"
        states = [r["new"] for r in engine.events("agent state") if r["agent"] == "alice"]
        assert states[-1] == state, (code, states)
    bad = run_sipp(
        "agent_feature_code.xml",
        engine,
        tmp_path,
        service="*41",
        subst={"user": "alice", "password": "wrong"},
    )
    assert bad.returncode != 0 and "SIP/2.0 403" in bad.messages
