"""Voicemail on a live engine (after-hours deflection, injected clock), driven by SIPp
playing real audio and RFC 4733 keys: the stored WAV, the store row, the callback number,
the MQTT notification on a real Mosquitto, the CRM record on a real local HTTP server, and
the withheld-number refusal."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sqlite3
import threading
import time
import warnings
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from .conftest import SIPP_PCAPS, RunningEngine
from .test_deflection import ACD, CLOSED_AT, HOURS, uac
from .test_flows import key_actions
from .test_mqtt_crm import API_KEY, Crm, Mosquitto, crm, mosquitto, multipart  # noqa: F401

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

pytestmark = pytest.mark.integration

FLOWS = {
    "vm.yaml": """\
flow: vm
entry: check
language: en
nodes:
  check: {type: hours, queue: billing, open: done, closed: deflect}
  deflect: {type: deflect, queue: billing, failed: done, next: done}
  done: {type: hangup, reason: flow done}
"""
}

AGENTS = {
    **ACD,
    "agents": [
        {
            "id": "alice",
            "display_name": "Alice",
            "sip": {"username": "alice", "password": "secret"},
            "queues": ["billing"],
        }
    ],
}


def voicemail_option(**extra: Any) -> dict[str, Any]:
    return {"voicemail": {"greeting": {"en": "Leave a message."}, "silence_seconds": 4, **extra}}


def start(
    engine_factory: Any, option: dict[str, Any], *, acd: dict[str, Any] = AGENTS, **extra: Any
) -> RunningEngine:
    engine: RunningEngine = engine_factory(
        clock=CLOSED_AT,
        flows=FLOWS,
        hours=HOURS,
        acd=acd,
        after_hours={"queues": {"billing": {"deflect": True, "option": option}}},
        routes={"default": "vm", "rules": []},
        **extra,
    )
    return engine


def talk_then(keys: str, *, gap_ms: int = 1000) -> str:
    """After the greeting: 7 s of speech (SIPp's G.711 A-law pcap), then keys."""
    return "\n".join(
        [
            '  <pause milliseconds="3000"/>',
            f'  <nop><action><exec play_pcap_audio="{SIPP_PCAPS / "g711a.pcap"}"/></action></nop>',
            '  <pause milliseconds="7500"/>',
            key_actions(keys, first_ms=0, gap_ms=gap_ms) if keys else "",
        ]
    )


def rows(engine: RunningEngine) -> list[dict[str, Any]]:
    db = Path(engine.config_path).parent / "var" / "switchhook.db"
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM voicemails")]


def wav_stats(path: Path) -> tuple[float, int]:
    with wave.open(str(path)) as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
        frames = wav.readframes(wav.getnframes())
        return wav.getnframes() / 8000, audioop.rms(frames, 2)


class Subscriber:
    """An MQTT subscriber on its own thread and event loop, collecting JSON messages."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Task[None] | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._task = self._loop.create_task(self._collect())
        try:
            self._loop.run_until_complete(self._task)
        except asyncio.CancelledError:
            pass

    async def _collect(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, identifier="vm-test") as client:
            await client.subscribe("switchhook/#", qos=1)
            self.ready.set()
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                self.messages.append((str(message.topic), json.loads(message.payload)))

    def __enter__(self) -> Subscriber:
        self._thread.start()
        assert self.ready.wait(10), "MQTT subscriber did not connect"
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(10)

    def wait_for(self, name: str, timeout: float = 15) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _, payload in list(self.messages):
                if payload.get("event") == name:
                    return payload
            time.sleep(0.05)
        raise AssertionError(f"no {name} on MQTT; got {self.messages}")


@pytest.fixture
def subscriber(mosquitto: Mosquitto) -> Iterator[Subscriber]:  # noqa: F811
    with Subscriber(mosquitto.port) as sub:
        yield sub


def mqtt_config(broker: Mosquitto) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": broker.port,
        "client_id": "switchhook-vm",
        "reconnect": {"initial_seconds": 0.1, "max_seconds": 0.5, "jitter": 0.2},
    }


def test_voicemail_records_collects_the_callback_number_and_notifies_agents(
    engine_factory: Any,
    tmp_path: Path,
    mosquitto: Mosquitto,  # noqa: F811
    subscriber: Subscriber,
) -> None:
    engine = start(
        engine_factory, voicemail_option(ask_callback_number=True), mqtt=mqtt_config(mosquitto)
    )
    result = uac(
        engine,
        tmp_path,
        "deflect_uac_engine_bye.xml",
        codecs="8",
        actions=talk_then("#0612345678#"),
        bye_timeout="40000",
    )
    assert result.returncode == 0, result.stderr + result.stdout
    recorded = engine.wait_for("voicemail recorded")
    assert recorded["reason"] == "dtmf" and recorded["had_speech"] is True
    assert engine.wait_for("callback number collected")["callback_number"] == "0612345678"
    stored = engine.wait_for("voicemail stored")
    assert stored["crm"] is False and stored["agents"] == ["alice"]
    # The confirmation was played after the row was stored, then BYE.
    ended = engine.wait_for("call ended", reason="voicemail left")
    assert ended["timestamp"] > stored["timestamp"]

    (row,) = rows(engine)
    assert (row["queue"], row["caller"], row["callback_number"]) == (
        "billing",
        "+15550001111",
        "0612345678",
    )
    assert row["started_at"] == dt.datetime.fromisoformat(CLOSED_AT).timestamp()
    assert json.loads(row["menu_path"]) == []
    seconds, rms = wav_stats(Path(row["wav_path"]))
    assert 5.5 <= seconds <= 9.5, seconds  # ~7 s of speech, trailing silence trimmed
    assert abs(seconds - row["duration_seconds"]) < 0.05
    assert rms > 300, "the caller's audio, not silence"

    event = subscriber.wait_for("voicemail.left")
    assert event["voicemail_id"] == row["id"] and event["queue"] == "billing"
    assert event["callback_number"] == "0612345678" and event["agents"] == ["alice"]


def test_voicemail_is_kept_when_the_caller_hangs_up_while_recording(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine = start(engine_factory, voicemail_option())
    result = uac(engine, tmp_path, "deflect_uac_caller_bye.xml", codecs="8", actions=talk_then(""))
    assert result.returncode == 0, result.stderr + result.stdout
    assert engine.wait_for("voicemail recorded")["reason"] == "hangup"
    engine.wait_for("voicemail stored")
    (row,) = rows(engine)
    seconds, rms = wav_stats(Path(row["wav_path"]))
    assert seconds >= 5.0 and rms > 300
    assert row["callback_number"] is None


def test_voicemail_on_a_queue_without_agents_creates_a_crm_record(
    engine_factory: Any, tmp_path: Path, crm: Crm
) -> None:
    engine = start(
        engine_factory,
        voicemail_option(),
        acd=ACD,
        crm={"url": crm.url, "api_key": API_KEY, "timeout_seconds": 5},
    )
    result = uac(engine, tmp_path, "deflect_uac_engine_bye.xml", codecs="8", actions=talk_then("#"))
    assert result.returncode == 0, result.stderr + result.stdout
    stored = engine.wait_for("voicemail stored")
    assert stored["crm"] is True and stored["agents"] == []
    deadline = time.monotonic() + 15
    while not crm.requests and time.monotonic() < deadline:
        time.sleep(0.05)
    assert crm.requests, "the CRM got the voicemail"
    headers, body = crm.requests[0]
    assert headers["Authorization"] == f"Bearer {API_KEY}"
    metadata, audio = multipart(headers, body)
    (row,) = rows(engine)
    assert json.dumps(metadata).find(row["id"]) >= 0
    assert audio[:4] == b"RIFF" and len(audio) > 8000 * 2 * 5
    assert Path(row["wav_path"]).exists(), "the voicemail keeps its own WAV"


def test_withheld_caller_hears_the_blocked_number_message_and_nothing_is_recorded(
    engine_factory: Any, tmp_path: Path
) -> None:
    engine = start(
        engine_factory,
        voicemail_option(
            blocked_number_message={"en": "Sorry, we cannot take messages from hidden numbers."}
        ),
    )
    result = uac(
        engine,
        tmp_path,
        "deflect_uac_engine_bye.xml",
        codecs="8",
        from_user="anonymous",
        display='"Anonymous" ',
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert "BYE sip:" in result.messages
    ended = engine.wait_for("call ended", reason="voicemail refused: number withheld")
    assert ended["rtp"]["packets_sent"] >= 100, "the message was played before the BYE"
    assert not engine.events("voicemail recording")
    assert rows(engine) == []
    audio_dir = Path(engine.config_path).parent / "var" / "audio" / "voicemail"
    assert not audio_dir.exists() or not list(audio_dir.iterdir())
