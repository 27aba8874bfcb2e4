"""The real engine on loopback, driven by SIPp: the foundation's acceptance scenarios."""

from __future__ import annotations

import audioop
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from .conftest import RunningEngine, free_port, run_sipp

pytestmark = pytest.mark.integration

RING_FLOW = """
flow: ring
entry: ring
nodes:
  ring:
    type: answer
    ring_seconds: 3
    next: bye
  bye:
    type: hangup
    reason: rang then answered
"""

LONG_WELCOME_FLOW = """
flow: long
entry: welcome
nodes:
  welcome:
    type: play
    prompts:
      - tts: >-
          Welcome to switchhook. This is a long welcome message, so that the prompt is
          still playing while the caller puts us on hold and takes us off hold again.
    next: bye
  bye:
    type: hangup
    reason: long welcome played
"""


class RtpSink:
    """A UDP socket standing in for the caller's RTP port: records every packet received."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        port = free_port(both=False)
        self.sock.bind(("127.0.0.1", port - port % 2))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.packets: list[tuple[float, bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            self.packets.append((time.monotonic(), data))

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def _rtp_fields(data: bytes) -> tuple[int, int, int, int, bytes]:
    first, second, seq, ts, ssrc = struct.unpack("!BBHII", data[:12])
    assert first >> 6 == 2, "RTP version 2"
    return second & 0x7F, seq, ts, ssrc, data[12:]


def test_call_answered_prompt_streams_and_caller_bye(engine: RunningEngine, tmp_path: Path) -> None:
    sink = RtpSink()
    try:
        result = run_sipp(
            "uac_caller_bye.xml",
            engine,
            tmp_path,
            keys={"rtp_port": str(sink.port)},
            subst={"hold_ms": "2500"},
        )
    finally:
        sink.close()
    assert result.returncode == 0, result.stderr
    assert result.successful == 1
    # The SDP answer: our media address, one of the offered codecs, telephone-event at the
    # payload type the offer used (101).
    answer = result.messages.split("SIP/2.0 200 OK", 1)[1].split("\n\n", 1)[1]
    assert "m=audio " in answer and "RTP/AVP 0 101" in answer
    assert "a=rtpmap:101 telephone-event/8000" in answer
    assert "c=IN IP4 127.0.0.1" in answer
    # The prompt's RTP: PCMU, 20 ms packets (160 samples), continuous sequence and timestamps.
    assert len(sink.packets) >= 50, f"only {len(sink.packets)} RTP packets in 2.5 s"
    fields = [_rtp_fields(data) for _, data in sink.packets]
    assert {f[0] for f in fields} == {0}
    assert len({f[3] for f in fields}) == 1, "one SSRC for the leg"
    for (_, seq_a, ts_a, _, _), (_, seq_b, ts_b, _, pay_b) in zip(fields, fields[1:], strict=False):
        assert (seq_b - seq_a) % 65536 == 1
        assert (ts_b - ts_a) % 2**32 == 160
        assert len(pay_b) == 160
    # 50 packets per second: the mean spacing of arrivals over the whole prompt.
    arrivals = [t for t, _ in sink.packets]
    mean_interval = (arrivals[-1] - arrivals[0]) / (len(arrivals) - 1)
    assert 0.018 < mean_interval < 0.022, f"mean RTP spacing {mean_interval * 1000:.2f} ms"
    # It is the spoken welcome, not silence.
    pcm = b"".join(audioop.ulaw2lin(f[4], 2) for f in fields)
    assert audioop.rms(pcm, 2) > 200
    ended = engine.wait_for("call ended")
    assert ended["reason"].startswith("remote")


def test_engine_hangs_up_after_digit_timeout(engine: RunningEngine, tmp_path: Path) -> None:
    result = run_sipp("uac_engine_bye.xml", engine, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.successful == 1
    engine.wait_for("flow node", node="no_input")
    assert engine.wait_for("flow ended")["reason"] == "default behaviour done"
    assert "BYE sip:" in result.messages


@pytest.mark.parametrize(
    ("pcap", "digit"), [("dtmf_2833_5.pcap", "5"), ("dtmf_2833_pound.pcap", "#")]
)
def test_rfc4733_dtmf_reported_as_the_right_digit(
    engine: RunningEngine, tmp_path: Path, pcap: str, digit: str
) -> None:
    result = run_sipp(
        "uac_dtmf.xml",
        engine,
        tmp_path,
        subst={"dtmf_pcap": f"/usr/share/sip-tester/{pcap}", "hold_ms": "1000"},
    )
    assert result.returncode == 0, result.stderr
    collected = engine.wait_for("flow variable", name="digit")
    assert collected["value"] == digit
    engine.wait_for("flow node", node="say_digit")
    assert len(engine.events("dtmf received")) == 1, "retransmitted end packets count once"


def test_cancel_before_answer(engine_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = engine_factory(flows={"ring.yaml": RING_FLOW}, routes={"default": "ring"})
    result = run_sipp("uac_cancel.xml", engine, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "SIP/2.0 487 Request Terminated" in result.messages
    assert "CSeq: 1 CANCEL" in result.messages.split("SIP/2.0 200 OK", 1)[1][:600]
    ended = engine.wait_for("call ended")
    assert ended["reason"] == "cancelled"
    # The ACK for the 487 is absorbed by the transaction: no 481/400 answered to it.
    time.sleep(0.5)
    assert not engine.events("malformed SIP message")


def test_lost_acks_engine_retransmits_200(engine: RunningEngine, tmp_path: Path) -> None:
    result = run_sipp("uac_lost_ack.xml", engine, tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    received_200 = [
        chunk
        for chunk in result.messages.split("received [")
        if "SIP/2.0 200 OK" in chunk and "CSeq: 1 INVITE" in chunk
    ]
    assert len(received_200) >= 3, "the engine retransmitted its 200 OK until the ACK"
    engine.wait_for("call confirmed (ACK)")
    assert engine.wait_for("call ended")["reason"].startswith("remote")


def test_options_answered_200(engine: RunningEngine, tmp_path: Path) -> None:
    result = run_sipp("uac_options.xml", engine, tmp_path, subst={"expected_status": "200"})
    assert result.returncode == 0, result.stderr
    reply = result.messages.split("SIP/2.0 200 OK", 1)[1][:800]
    assert "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS" in reply
    assert "Accept: application/sdp" in reply


def test_source_outside_every_trunk_gets_403(engine_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = engine_factory(trunks=[{"name": "carrier", "sources": ["192.0.2.0/24"]}])
    result = run_sipp("uac_rejected.xml", engine, tmp_path, subst={"expected_status": "403"})
    assert result.returncode == 0, result.stderr
    refused = engine.wait_for("call refused")
    assert "127.0.0.1" in refused["reason"]
    forbidden = result.messages.split("SIP/2.0 403", 1)[1][:600]
    assert "carrier" not in forbidden and "trunk" not in forbidden.lower(), "no detail leaked"


def test_digest_trunk_challenges_then_admits(engine_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = engine_factory(
        trunks=[
            {
                "name": "pbx",
                "auth": {
                    "username": "pbx1",
                    "password": "s3cret",
                    "realm": "switchhook",
                    "algorithms": ["MD5"],
                },
            }
        ]
    )
    result = run_sipp(
        "uac_auth.xml", engine, tmp_path, subst={"auth_user": "pbx1", "auth_pass": "s3cret"}
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "SIP/2.0 401 Unauthorized" in result.messages
    assert 'WWW-Authenticate: Digest realm="switchhook"' in result.messages
    admitted = engine.wait_for("call admitted")
    assert admitted["trunk"] == "pbx"


def test_digest_wrong_password_forbidden(engine_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = engine_factory(
        trunks=[
            {
                "name": "pbx",
                "auth": {"username": "pbx1", "password": "s3cret", "algorithms": ["MD5"]},
            }
        ]
    )
    result = run_sipp(
        "uac_auth.xml", engine, tmp_path, subst={"auth_user": "pbx1", "auth_pass": "wrong"}
    )
    assert result.returncode != 0
    assert "SIP/2.0 403 Forbidden" in result.messages
    assert not engine.events("call admitted")


MALFORMED = [
    b"\x00\x01garbage\xff\xfe",
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n\r\n",
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x\r\nCSeq: notanumber INVITE\r\n\r\n",
    b"OPTIONS sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK2\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: y\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 500\r\n\r\nshort",
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\n" + b"X-Flood: a\r\n" * 400 + b"\r\n",
    b"INVITE sip:100@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK3\r\n"
    b"X-Long: " + b"A" * 60000 + b"\r\n\r\n",
    b"SIP/2.0 200 OK\r\n\r\n",
    b"\r\n\r\n",
    bytes(range(256)) * 100,
]


def test_malformed_burst_then_normal_call(engine: RunningEngine, tmp_path: Path) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.settimeout(0.5)
    for _ in range(20):
        for template in MALFORMED:
            sock.sendto(
                template.replace(b"{port}", str(port).encode()), ("127.0.0.1", engine.sip_port)
            )
    replies = []
    while True:
        try:
            data, _ = sock.recvfrom(65535)
        except TimeoutError:
            break
        replies.append(data)
    sock.close()
    assert replies, "answerable malformed requests get a 4xx"
    assert all(r.startswith(b"SIP/2.0 4") or r.startswith(b"SIP/2.0 5") for r in replies)
    assert any(b"SIP/2.0 400 Bad CSeq" in r for r in replies)
    assert any(b"SIP/2.0 400 Truncated Body" in r for r in replies)
    assert engine.alive
    result = run_sipp("uac_caller_bye.xml", engine, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.successful == 1
    assert engine.alive


def test_same_call_over_tcp(engine: RunningEngine, tmp_path: Path) -> None:
    sink = RtpSink()
    try:
        result = run_sipp(
            "uac_caller_bye.xml",
            engine,
            tmp_path,
            transport="t1",
            keys={"rtp_port": str(sink.port)},
            subst={"hold_ms": "1500"},
        )
    finally:
        sink.close()
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.successful == 1
    assert len(sink.packets) >= 25
    assert engine.wait_for("call admitted")["transport"] == "TCP"
    assert engine.wait_for("call ended")["reason"].startswith("remote")


def test_hold_and_unhold_by_reinvite(engine_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = engine_factory(flows={"long.yaml": LONG_WELCOME_FLOW}, routes={"default": "long"})
    sink = RtpSink()
    try:
        result = run_sipp("uac_hold.xml", engine, tmp_path, keys={"rtp_port": str(sink.port)})
    finally:
        sink.close()
    assert result.returncode == 0, result.stderr + result.stdout
    answers = [
        chunk.split("\n\n", 1)[1]
        for chunk in result.messages.split("received [")
        if "SIP/2.0 200 OK" in chunk and "INVITE" in chunk.split("CSeq:")[1][:12]
    ]
    # One answer per distinct INVITE (2xx retransmissions are the same bytes).
    distinct = list(dict.fromkeys(answers))
    assert len(distinct) == 3
    assert "a=recvonly" in distinct[1], "hold (sendonly) answered recvonly (RFC 3264 §6.1)"
    assert "a=sendrecv" in distinct[2] or "a=recvonly" not in distinct[2]
    versions = [int(a.split("o=", 1)[1].split()[2]) for a in distinct]
    assert versions[1] == versions[0] + 1 and versions[2] == versions[1] + 1
    # No RTP while held; after unhold the same stream resumes: sequence continues by one,
    # the timestamp jumps by the held time (RFC 3550 §5.1), SSRC unchanged.
    fields = [_rtp_fields(data) for _, data in sink.packets]
    assert len({f[3] for f in fields}) == 1
    jumps = [(b[2] - a[2]) % 2**32 for a, b in zip(fields, fields[1:], strict=False)]
    assert all((b[1] - a[1]) % 65536 == 1 for a, b in zip(fields, fields[1:], strict=False))
    held = [j for j in jumps if j >= 8000]
    assert len(held) == 1, f"one gap of at least 1 s of media (the hold): {held}"
