"""After-hours deflection on a live engine with an injected clock, driven by SIPp: message
then BYE, another queue, an outside number bridged through a trunk (SIPp UAS as the number),
SIP redirection by 302 and by REFER carrying data headers."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import SIPP_PCAPS, RunningEngine, free_port, require_peer, run_sipp, sipp_media_port

pytestmark = pytest.mark.integration

# A Monday 22:00 in Paris: closed by the calendar below.
CLOSED_AT = "2026-01-05T22:00:00+01:00"
OPEN_AT = "2026-01-05T10:00:00+01:00"

HOURS = {
    "timezone": "Europe/Paris",
    "weekly": {day: "08:00-18:00" for day in ("mon", "tue", "wed", "thu", "fri")},
}
ACD = {"queues": [{"name": "billing"}, {"name": "night"}]}

FLOWS = {
    "afterhours.yaml": """\
flow: afterhours
entry: check
language: en
variables: {deflect_queue: ""}
nodes:
  check: {type: hours, queue: billing, open: open_now, closed: deflect}
  open_now:
    type: play
    prompts: We are open.
    next: bye_open
  bye_open: {type: hangup, reason: open}
  deflect: {type: deflect, queue: billing, failed: sorry, next: routed}
  routed:
    type: branch
    conditions:
      - if: deflect_queue == 'night'
        then: to_night
    default: done
  to_night: {type: subflow, flow: night, next: done}
  sorry:
    type: play
    prompts: Sorry, the transfer failed.
    next: failed_bye
  failed_bye: {type: hangup, reason: deflection failed}
  done: {type: hangup, reason: deflection done}
""",
    "night.yaml": """\
flow: night
entry: night_hello
language: en
nodes:
  night_hello:
    type: play
    prompts: You reached the night team.
    next: night_bye
  night_bye: {type: hangup, reason: night queue reached}
""",
    "answered_then_deflect.yaml": """\
flow: answered_then_deflect
entry: hello
language: en
nodes:
  hello:
    type: play
    prompts: Hello.
    next: deflect
  deflect: {type: deflect, queue: billing, failed: failed_bye, next: done}
  failed_bye: {type: hangup, reason: deflection failed}
  done: {type: hangup, reason: deflection done}
""",
}


def start(
    engine_factory: Any,
    option: dict[str, Any],
    *,
    flow: str = "afterhours",
    clock: str = CLOSED_AT,
    **extra: Any,
) -> RunningEngine:
    after_hours = {"queues": {"billing": {"deflect": True, "option": option}}}
    engine: RunningEngine = engine_factory(
        clock=clock,
        flows=FLOWS,
        hours=HOURS,
        acd=ACD,
        after_hours=after_hours,
        routes={"default": flow, "rules": []},
        **extra,
    )
    return engine


def uac(
    engine: RunningEngine,
    tmp_path: Path,
    scenario: str,
    *,
    actions: str = "",
    headers: tuple[str, ...] = (),
    from_user: str = "+15550001111",
    display: str = '"SIPp caller" ',
    codecs: str = "0 8",
    **subst: str,
) -> Any:
    extra = "".join(f"\n      {h}" for h in headers)
    return run_sipp(
        scenario,
        engine,
        tmp_path,
        subst={
            "actions": actions,
            "extra_headers": extra,
            "from_user": from_user,
            "display": display,
            "codecs": codecs,
            "bye_timeout": "30000",
            "answer_timeout": "20000",
            **subst,
        },
        timeout=60,
    )


def ended(engine: RunningEngine, **match: Any) -> dict[str, Any]:
    return engine.wait_for("call ended", **match)


def test_open_hours_do_not_deflect(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(engine_factory, {"message": {}}, clock=OPEN_AT)
    result = uac(engine, tmp_path, "deflect_uac_engine_bye.xml")
    assert result.returncode == 0, result.stderr + result.stdout
    assert engine.wait_for("flow ended")["reason"] == "open"
    assert not engine.events("deflecting")


def test_message_only_plays_the_message_then_bye(engine_factory: Any, tmp_path: Path) -> None:
    engine = start(
        engine_factory,
        {"message": {"prompt": {"en": "We are closed tonight. Please call again tomorrow."}}},
    )
    result = uac(engine, tmp_path, "deflect_uac_engine_bye.xml")
    assert result.returncode == 0, result.stderr + result.stdout
    assert engine.wait_for("business hours")["open"] is False
    assert engine.wait_for("deflecting")["option"] == "message"
    call_end = ended(engine, reason="after-hours message played")
    # The BYE came after the whole message had been sent: ~2.5 s of speech at 50 packets/s.
    assert call_end["rtp"]["packets_sent"] >= 100, call_end
    assert call_end["duration"] >= 2.0
    assert "BYE sip:" in result.messages


def test_queue_deflection_reaches_the_other_queues_flow(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine = start(engine_factory, {"queue": {"queue": "night"}})
    result = uac(engine, tmp_path, "deflect_uac_engine_bye.xml")
    assert result.returncode == 0, result.stderr + result.stdout
    task = engine.wait_for("flow task finished", kind="deflect")
    assert task["result"] == "queue"
    assert engine.wait_for("flow variable", name="deflect_queue")["value"] == "night"
    assert engine.wait_for("flow ended")["reason"] == "night queue reached"


def sipp_uas(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    sipp = require_peer("sipp")
    return subprocess.Popen(
        [
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
            str(tmp_path / "uas.log"),
            "-timeout",
            "40s",
            "-timeout_error",
            "-mi",
            "127.0.0.1",
            "-mp",
            str(sipp_media_port()),
            *args,
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_number_deflection_bridges_audio_through_the_trunk(
    engine_factory: Any, tmp_path: Path
) -> None:
    port = free_port()
    uas = sipp_uas(tmp_path, port, "-sn", "uas", "-rtp_echo")
    try:
        trunks = [
            {"name": "local", "sources": ["127.0.0.0/8"]},
            {
                "name": "carrier",
                "outbound": {"host": "127.0.0.1", "port": port, "caller_id": "+15550009999"},
            },
        ]
        engine = start(
            engine_factory,
            {"number": {"number": "+33123456789", "trunk": "carrier"}},
            trunks=trunks,
        )
        # The caller talks (an audio pcap) through the bridge; the far end echoes it.
        actions = (
            f'  <nop><action><exec play_pcap_audio="{SIPP_PCAPS / "g711a.pcap"}"/>'
            '</action></nop>\n  <pause milliseconds="8000"/>'
        )
        result = uac(
            engine,
            tmp_path,
            "deflect_uac_caller_bye.xml",
            actions=actions,
            codecs="8",
            headers=("X-Reserved-Verified-Customer: true",),
        )
        assert result.returncode == 0, result.stderr + result.stdout
        assert uas.wait(timeout=30) == 0, uas.stderr.read() if uas.stderr else ""
    finally:
        if uas.poll() is None:
            uas.kill()
    far_end = (tmp_path / "uas.log").read_text()
    invite = far_end.split("INVITE sip:", 1)[1][:2000]
    assert invite.startswith(f"+33123456789@127.0.0.1:{port}")
    assert "From: <sip:+15550009999@" in invite
    assert "X-Reserved-Verified-Customer: true" in invite
    assert "BYE sip:" in far_end, "the engine hung up the number when the caller left"
    engine.wait_for("bridging to outside number")
    caller = engine.wait_for("call ended", reason="remote: BYE")
    outside = [
        e
        for e in engine.events("call ended")
        if e is not caller and e.get("call_id") != caller["call_id"]
    ]
    assert outside, engine.events("call ended")
    # Both ways: the caller's audio reached the number and the echo came back to the caller.
    assert caller["rtp"]["packets_received"] >= 150, caller
    assert caller["rtp"]["packets_sent"] >= 150, caller
    assert outside[0]["rtp"]["packets_sent"] >= 150, outside[0]
    assert outside[0]["rtp"]["packets_received"] >= 150, outside[0]


def test_number_deflection_fails_over_to_the_failed_node(
    engine_factory: Any, tmp_path: Path
) -> None:
    port = free_port()  # the number is busy (486)
    uas = subprocess.Popen(
        [
            require_peer("sipp"),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "1",
            "-nostdin",
            "-sf",
            str(Path(__file__).parent / "scenarios" / "uas_reject.xml"),
            "-timeout",
            "30s",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        trunks = [
            {"name": "local", "sources": ["127.0.0.0/8"]},
            {"name": "carrier", "outbound": {"host": "127.0.0.1", "port": port}},
        ]
        engine = start(
            engine_factory,
            {"number": {"number": "+33123456789", "trunk": "carrier"}},
            trunks=trunks,
        )
        result = uac(engine, tmp_path, "deflect_uac_engine_bye.xml")
        assert result.returncode == 0, result.stderr + result.stdout
    finally:
        uas.wait(timeout=20)
    assert engine.wait_for("flow task finished", kind="deflect")["result"] == "failed"
    assert engine.wait_for("flow ended")["reason"] == "deflection failed"


SIP_OPTION = {
    "sip": {
        "uri": "sip:afterhours@127.0.0.1:5099",
        "data": [
            {"field": "X-Origin", "type": "static", "value": "switchhook night desk"},
            {
                "field": "X-Verified",
                "type": "dynamic",
                "source": "profile",
                "source_field": "verified_customer",
            },
            {"field": "X-Caller", "type": "dynamic", "source": "call", "source_field": "caller"},
            {
                "field": "X-Account",
                "type": "dynamic",
                "source": "call",
                "source_field": "X-Reserved-Account",
            },
        ],
        "data_records": {"metadata": True, "crm": False},
    }
}


def _contact(messages: str, status: str) -> str:
    response = messages.split(f"SIP/2.0 {status}", 1)[1][:2000]
    return next(
        line for line in response.splitlines() if line.lower().startswith(("contact:", "refer-to:"))
    )


def test_sip_redirection_before_answer_is_a_302_carrying_the_data(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine = start(engine_factory, SIP_OPTION)
    result = uac(
        engine,
        tmp_path,
        "deflect_uac_redirect.xml",
        headers=("X-Reserved-Verified-Customer: yes", "X-Reserved-Account: A&B 42"),
    )
    assert result.returncode == 0, result.stderr + result.stdout
    contact = _contact(result.messages, "302")
    assert contact == (
        "Contact: <sip:afterhours@127.0.0.1:5099?X-Origin=switchhook%20night"
        "%20desk&X-Verified=true&X-Caller=+15550001111&X-Account=A%26B%2042>"
    )
    call_end = ended(engine, reason="redirected 302")
    # data_records.metadata: the data is in the call record.
    db = Path(engine.config_path).parent / "var" / "switchhook.db"
    deadline = time.monotonic() + 5
    row = None
    while row is None and time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT transfers FROM call_records WHERE call_id=?", (call_end["call_id"],)
            ).fetchone()
        time.sleep(0.05)
    assert row is not None
    (record,) = json.loads(row[0])
    assert record["to"] == "sip" and record["target"] == "sip:afterhours@127.0.0.1:5099"
    assert record["data"] == {
        "X-Origin": "switchhook night desk",
        "X-Verified": "true",
        "X-Caller": "+15550001111",
        "X-Account": "A&B 42",
    }


def test_sip_redirection_after_answer_is_a_refer_carrying_the_data(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine = start(engine_factory, SIP_OPTION, flow="answered_then_deflect")
    result = uac(
        engine, tmp_path, "deflect_uac_refer.xml", headers=("X-Reserved-Verified-Customer: false",)
    )
    assert result.returncode == 0, result.stderr + result.stdout
    refer = result.messages.split("REFER sip:", 1)[1][:2000]
    refer_to = next(line for line in refer.splitlines() if line.startswith("Refer-To:"))
    assert refer_to == (
        "Refer-To: <sip:afterhours@127.0.0.1:5099?X-Origin=switchhook%20night"
        "%20desk&X-Verified=false&X-Caller=+15550001111>"
    )
    assert engine.wait_for("transferred by REFER")["notify_status"] == 200
    ended(engine, reason="transferred")


def test_transfer_node_to_a_sip_uri_redirects_before_answer(
    engine_factory: Any, tmp_path: Path
) -> None:
    flows = {
        **FLOWS,
        "xfer.yaml": """\
flow: xfer
entry: go
nodes:
  go: {type: transfer, uri: "sip:desk@127.0.0.1:5098", failed: bye, next: bye}
  bye: {type: hangup, reason: transfer over}
""",
    }
    engine: RunningEngine = engine_factory(flows=flows, routes={"default": "xfer", "rules": []})
    result = uac(engine, tmp_path, "deflect_uac_redirect.xml")
    assert result.returncode == 0, result.stderr + result.stdout
    assert _contact(result.messages, "302") == "Contact: <sip:desk@127.0.0.1:5098>"
    assert engine.wait_for("flow task finished", kind="transfer")["result"] == "redirected"
