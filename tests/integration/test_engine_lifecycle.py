"""Engine lifecycle on loopback: media port exhaustion, graceful shutdown, TLS, logging."""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from sipstack.message import StreamFramer, parse_message

from .conftest import RunningEngine, SippResult, free_port, rtp_range, run_sipp

pytestmark = pytest.mark.integration


def _in_thread(fn: Any, *args: Any, **kwargs: Any) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn(*args, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def test_rtp_port_exhaustion_answers_503_and_keeps_serving(
    engine_factory: Any, tmp_path: Path
) -> None:
    port, _ = rtp_range()  # one RTP port pair, not shared with any other engine of the run
    engine: RunningEngine = engine_factory(media={"rtp_port_min": port, "rtp_port_max": port})
    first, results = _in_thread(
        run_sipp, "uac_caller_bye.xml", engine, tmp_path, subst={"hold_ms": "4000"}
    )
    engine.wait_for("call answered")
    second = run_sipp("uac_rejected.xml", engine, tmp_path, subst={"expected_status": "503"})
    assert second.returncode == 0, second.stderr
    engine.wait_for("no RTP port available")
    first.join(timeout=30)
    assert results and results[0].returncode == 0, "the call holding the port was unaffected"
    # The port came back on hangup: the next call is answered.
    third = run_sipp("uac_caller_bye.xml", engine, tmp_path)
    assert third.returncode == 0, third.stderr
    assert engine.alive


def test_drain_shutdown_rejects_new_calls_and_lets_active_ones_finish(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine: RunningEngine = engine_factory(shutdown={"mode": "drain", "grace_seconds": 20})
    active, results = _in_thread(run_sipp, "uac_engine_bye.xml", engine, tmp_path)
    engine.wait_for("call answered")
    engine.process.send_signal(signal.SIGTERM)
    engine.wait_for("shutting down")
    refused = run_sipp("uac_rejected.xml", engine, tmp_path, subst={"expected_status": "503"})
    assert refused.returncode == 0, refused.stderr
    assert "Retry-After:" in refused.messages
    active.join(timeout=40)
    result: SippResult = results[0]
    assert result.returncode == 0, "the active call ended normally (the engine's own BYE)"
    assert engine.process.wait(timeout=20) == 0
    assert engine.wait_for("call ended")["reason"] == "default behaviour done"
    assert engine.events("stopped")


def test_hangup_shutdown_sends_bye_to_active_calls(engine_factory: Any, tmp_path: Path) -> None:
    engine: RunningEngine = engine_factory(shutdown={"mode": "hangup", "grace_seconds": 20})
    active, results = _in_thread(run_sipp, "uac_engine_bye.xml", engine, tmp_path)
    engine.wait_for("call answered")
    started = time.monotonic()
    engine.process.send_signal(signal.SIGTERM)
    active.join(timeout=30)
    assert results[0].returncode == 0, results[0].stderr
    assert 'Reason: SIP;cause=200;text="shutdown"' in results[0].messages
    assert engine.process.wait(timeout=20) == 0
    assert time.monotonic() - started < 15, "hangup mode does not wait for the grace period"


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class TlsPeer:
    """A minimal SIP-over-TLS client: sends requests, reads framed responses."""

    def __init__(self, port: int, cafile: Path) -> None:
        context = ssl.create_default_context(cafile=str(cafile))
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.local_port = self.sock.getsockname()[1]
        self.framer = StreamFramer()
        self.pending: list[bytes] = []

    def send(self, text: str, body: bytes = b"") -> None:
        head = text.strip().replace("\n", "\r\n") + f"\r\nContent-Length: {len(body)}\r\n\r\n"
        self.sock.sendall(head.encode() + body)

    def receive(self) -> Any:
        while not self.pending:
            self.pending.extend(self.framer.feed(self.sock.recv(65535)))
        return parse_message(self.pending.pop(0))

    def receive_final(self) -> Any:
        while True:
            message = self.receive()
            if getattr(message, "status_code", 0) >= 200 or hasattr(message, "method"):
                return message


def test_tls_listener_answers_options_and_a_call(engine_factory: Any, tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    tls_port = free_port()
    engine: RunningEngine = engine_factory()
    engine_tls: RunningEngine = engine_factory(
        sip={
            "listen": [
                {"transport": "udp", "host": "127.0.0.1", "port": free_port()},
                {
                    "transport": "tls",
                    "host": "127.0.0.1",
                    "port": tls_port,
                    "certificate": str(cert),
                    "private_key": str(key),
                },
            ]
        }
    )
    del engine
    peer = TlsPeer(tls_port, cert)
    via = f"SIP/2.0/TLS 127.0.0.1:{peer.local_port};branch=z9hG4bK-tls"
    peer.send(f"""OPTIONS sip:100@127.0.0.1:{tls_port};transport=tls SIP/2.0
Via: {via}1
From: <sips:ping@127.0.0.1>;tag=t1
To: <sips:100@127.0.0.1>
Call-ID: tls-options
CSeq: 1 OPTIONS
Max-Forwards: 70""")
    assert peer.receive_final().status_code == 200
    sdp = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    peer.send(
        f"""INVITE sip:100@127.0.0.1:{tls_port};transport=tls SIP/2.0
Via: {via}2
From: <sip:caller@127.0.0.1>;tag=t2
To: <sip:100@127.0.0.1>
Call-ID: tls-call
CSeq: 1 INVITE
Contact: <sip:caller@127.0.0.1:{peer.local_port};transport=tls>
Max-Forwards: 70
Content-Type: application/sdp""",
        sdp,
    )
    ok = peer.receive_final()
    assert ok.status_code == 200
    assert b"RTP/AVP 8 101" in ok.body
    assert ";transport=tls" in (ok.headers.get("Contact") or "")
    to = ok.headers.get("To")
    peer.send(f"""ACK sip:100@127.0.0.1:{tls_port};transport=tls SIP/2.0
Via: {via}3
From: <sip:caller@127.0.0.1>;tag=t2
To: {to}
Call-ID: tls-call
CSeq: 1 ACK
Max-Forwards: 70""")
    engine_tls.wait_for("call confirmed (ACK)")
    peer.send(f"""BYE sip:100@127.0.0.1:{tls_port};transport=tls SIP/2.0
Via: {via}4
From: <sip:caller@127.0.0.1>;tag=t2
To: {to}
Call-ID: tls-call
CSeq: 2 BYE
Max-Forwards: 70""")
    bye_ok = peer.receive_final()
    assert (bye_ok.status_code, bye_ok.cseq.method) == (200, "BYE")
    assert engine_tls.wait_for("call admitted")["transport"] == "TLS"


def test_every_log_line_of_a_call_carries_its_call_id(
    engine: RunningEngine, tmp_path: Path
) -> None:
    result = run_sipp("uac_dtmf.xml", engine, tmp_path)
    assert result.returncode == 0, result.stderr
    engine.wait_for("call ended")
    lines = engine.read_logs()
    start = next(i for i, line in enumerate(lines) if line.get("event") == "call admitted")
    end = next(i for i, line in enumerate(lines) if line.get("event") == "call ended")
    call_id = lines[start]["call_id"]
    during = [
        line
        for line in lines[start : end + 1]
        if str(line.get("logger", "")).startswith(("switchhook", "media"))
    ]
    assert len(during) >= 5
    assert all(line.get("call_id") == call_id for line in during), during


def test_call_record_kept_in_the_store(engine_factory: Any, tmp_path: Path) -> None:
    import sqlite3

    from .conftest import stop_engine

    engine: RunningEngine = engine_factory()
    result = run_sipp("uac_dtmf.xml", engine, tmp_path)
    assert result.returncode == 0, result.stderr
    engine.wait_for("call ended")
    assert stop_engine(engine) == 0
    db = engine.config_path.parent / "var" / "switchhook.db"
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT caller, called, outcome, trunk FROM call_records").fetchall()
    assert rows == [("+15550001111", "100", "default behaviour done", "local")]
