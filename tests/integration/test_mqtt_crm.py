"""Events on a real Mosquitto broker and CRM deliveries to a real local HTTP server.

Mosquitto is a required peer: missing, these tests fail under CI
(``CI=true`` / ``SWITCHHOOK_REQUIRE_PEERS=1``) and skip elsewhere.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from ivr.crm import CrmSettings, HttpCrmClient
from ivr.events import CallEnded, CallStarted, MqttEventPublisher, MqttSettings, VoicemailLeft
from ivr.outbox import Outbox, OutboxSettings
from ivr.store import Store

from .conftest import free_port, require_peer

pytestmark = pytest.mark.integration

API_KEY = "test-key-123"


# -- Mosquitto -------------------------------------------------------------------------------


class Mosquitto:
    """A broker on 127.0.0.1:<port> that can be stopped and started again (same port, same
    persistence file, so persistent sessions survive the restart)."""

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self.binary = binary
        self.port = port
        self.directory = directory
        self.config = directory / "mosquitto.conf"
        lines = [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {directory}/",
            f"log_dest file {directory}/broker.log",
        ]
        if os.geteuid() == 0:
            lines.append(f"user {getpass.getuser()}")  # don't drop to a user that can't write
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "broker.log").read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited: {log[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: saves the persistence file
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    binary = require_peer("mosquitto")
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(binary, directory, free_port(socket.SOCK_STREAM))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def mqtt_settings(broker: Mosquitto) -> MqttSettings:
    return MqttSettings.model_validate(
        {
            "host": "127.0.0.1",
            "port": broker.port,
            "client_id": "switchhook-it",
            "reconnect": {"initial_seconds": 0.1, "max_seconds": 0.5, "jitter": 0.2},
        }
    )


async def receive(
    client: aiomqtt.Client, count: int, timeout: float = 15.0
) -> list[tuple[str, dict[str, Any]]]:
    got: list[tuple[str, dict[str, Any]]] = []

    async def collect() -> None:
        async for message in client.messages:
            assert isinstance(message.payload, bytes)
            got.append((str(message.topic), json.loads(message.payload)))
            if len(got) == count:
                return

    await asyncio.wait_for(collect(), timeout)
    return got


def test_event_arrives_on_the_broker(mosquitto: Mosquitto) -> None:
    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="it-sub") as sub:
            await sub.subscribe("switchhook/#", qos=1)
            events = MqttEventPublisher(mqtt_settings(mosquitto), node="it")
            await events.start()
            events.publish(CallStarted(call_id="c1", caller="+331", called="+332"))
            events.publish(
                VoicemailLeft(voicemail_id="vm1", queue="root", caller="+331", agents=("alice",))
            )
            try:
                return await receive(sub, 2)
            finally:
                await events.stop()

    got = asyncio.run(scenario())
    assert [topic for topic, _ in got] == ["switchhook/it/call", "switchhook/it/voicemail"]
    assert got[0][1]["event"] == "call.started" and got[0][1]["call_id"] == "c1"
    assert got[1][1]["agents"] == ["alice"]


def test_events_queued_while_the_broker_is_down_are_delivered_when_it_is_back(
    mosquitto: Mosquitto,
) -> None:
    async def persistent_subscriber() -> aiomqtt.Client:
        return aiomqtt.Client(
            "127.0.0.1", mosquitto.port, identifier="it-durable-sub", clean_session=False
        )

    async def subscribe_then_leave() -> None:
        async with await persistent_subscriber() as sub:
            await sub.subscribe("switchhook/it/#", qos=1)

    asyncio.run(subscribe_then_leave())
    mosquitto.stop()

    async def scenario() -> list[tuple[str, dict[str, Any]]]:
        events = MqttEventPublisher(mqtt_settings(mosquitto), node="it")
        await events.start()
        for n in range(3):
            events.publish(CallEnded(call_id=f"c{n}", outcome="answered"))
        await asyncio.sleep(0.5)  # a few failed connection attempts
        assert not events.connected and events.queued == 3
        await asyncio.get_running_loop().run_in_executor(None, mosquitto.start)
        try:
            deadline = time.monotonic() + 15
            while events.queued and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert events.queued == 0 and events.dropped == 0
        finally:
            await events.stop()
        async with await persistent_subscriber() as sub:
            return await receive(sub, 3)

    got = asyncio.run(scenario())
    assert [payload["call_id"] for _topic, payload in got] == ["c0", "c1", "c2"]


# -- the CRM: a real HTTP server -------------------------------------------------------------


@dataclass
class Crm:
    """Answers each POST with the next scripted (status, headers), then 200."""

    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    requests: list[tuple[Message, bytes]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def crm() -> Iterator[Crm]:
    state = Crm()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append((self.headers, body))
            status, headers = state.script.pop(0) if state.script else (200, {})
            reply = b'{"ok": true}' if status == 200 else b"try later"
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *_args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/switchhook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def multipart(headers: Message, body: bytes) -> tuple[dict[str, Any], bytes]:
    raw = f"Content-Type: {headers['Content-Type']}\r\n\r\n".encode() + body
    message = BytesParser(policy=HTTP).parsebytes(raw)
    fields = {
        part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
        for part in message.iter_parts()
    }
    return json.loads(fields["metadata"]), fields["file"]


def crm_client(crm: Crm, **settings: Any) -> HttpCrmClient:
    return HttpCrmClient(
        CrmSettings.model_validate(
            {"url": crm.url, "api_key": API_KEY, "timeout_seconds": 5, **settings}
        ),
        node="it",
    )


FAST = {"backoff": {"initial_seconds": 0.05, "max_seconds": 0.2, "jitter": 0.0}}


def test_crm_down_twice_then_delivered_with_the_api_key(crm: Crm, tmp_path: Path) -> None:
    crm.script = [(503, {}), (503, {})]
    wav = tmp_path / "rec.wav"
    wav.write_bytes(b"RIFF" + os.urandom(1000))
    audio = wav.read_bytes()

    async def scenario() -> None:
        client = crm_client(crm)
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = Outbox(store, client, OutboxSettings.model_validate(FAST))
            item_id = await outbox.enqueue(
                "recording", {"call_id": "c1", "queue": "billing"}, [wav]
            )
            task = asyncio.create_task(outbox.run())
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                item = await store.outbox.get(item_id)
                if item is not None and item.state != "pending":
                    break
                await asyncio.sleep(0.02)
            outbox.stop()
            await asyncio.wait_for(task, 10)
            item = await store.outbox.get(item_id)
            assert item is not None and (item.state, item.attempts) == ("done", 3)
        client.close()

    asyncio.run(scenario())
    assert len(crm.requests) == 3
    for headers, _body in crm.requests:
        assert headers["Authorization"] == f"Bearer {API_KEY}"
        assert headers["X-Switchhook-Part-Index"] == "1"
        assert headers["X-Switchhook-Part-Count"] == "1"
    assert len({h["Idempotency-Key"] for h, _b in crm.requests}) == 1  # same part, retried
    meta, data = multipart(*crm.requests[-1])
    assert meta["record"] == {"call_id": "c1", "queue": "billing"}
    assert meta["part"]["index"] == 1 and meta["part"]["file_name"] == "rec.wav"
    assert data == audio
    assert not wav.exists()  # deleted once acknowledged


def test_large_recording_goes_as_ordered_parts(crm: Crm, tmp_path: Path) -> None:
    wav = tmp_path / "long.wav"
    audio = os.urandom(5000)
    wav.write_bytes(audio)

    async def scenario() -> None:
        client = crm_client(crm, api_key_header="X-Api-Key", api_key_prefix="")
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = Outbox(
                store, client, OutboxSettings.model_validate({**FAST, "split_mb": 2048 / 2**20})
            )
            await outbox.enqueue("recording", {"call_id": "c2"}, [wav])
            assert await outbox.run_once() is None
        client.close()

    asyncio.run(scenario())
    parts = [multipart(headers, body) for headers, body in crm.requests]
    assert [(m["part"]["index"], m["part"]["count"]) for m, _ in parts] == [(1, 3), (2, 3), (3, 3)]
    assert b"".join(data for _m, data in parts) == audio
    assert {h["X-Api-Key"] for h, _b in crm.requests} == {API_KEY}
    assert "Authorization" not in crm.requests[0][0]
    assert list(tmp_path.glob("long.wav*")) == []


def test_voicemail_record_without_audio_is_json(crm: Crm, tmp_path: Path) -> None:
    async def scenario() -> None:
        client = crm_client(crm)
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = Outbox(store, client)
            await outbox.enqueue("voicemail", {"voicemail_id": "vm1", "callback": "+336"})
            await outbox.run_once()
        client.close()

    asyncio.run(scenario())
    headers, body = crm.requests[0]
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert document["kind"] == "voicemail" and document["part"] is None
    assert document["record"] == {"voicemail_id": "vm1", "callback": "+336"}


def test_rejection_is_permanent_and_retry_after_is_honoured(crm: Crm, tmp_path: Path) -> None:
    crm.script = [(400, {}), (429, {"Retry-After": "120"})]
    now = [1_700_000_000.0]

    async def scenario() -> None:
        client = crm_client(crm)
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = Outbox(store, client, now=lambda: now[0])
            rejected = await outbox.enqueue("call_record", {"call_id": "bad"})
            await outbox.run_once()
            item = await store.outbox.get(rejected)
            assert item is not None and item.state == "failed"
            assert item.last_error == "CRM answered 400: try later"
            limited = await outbox.enqueue("call_record", {"call_id": "later"})
            assert await outbox.run_once() == pytest.approx(120.0)
            item = await store.outbox.get(limited)
            assert item is not None and item.state == "pending"
        client.close()

    asyncio.run(scenario())
    assert len(crm.requests) == 2


def test_unreachable_crm_is_retried(tmp_path: Path) -> None:
    port = free_port(socket.SOCK_STREAM)  # nothing listens there

    async def scenario() -> None:
        client = HttpCrmClient(
            CrmSettings(url=f"http://127.0.0.1:{port}/x", api_key=API_KEY), node="it"
        )  # type: ignore[arg-type]
        async with await Store.open(tmp_path / "s.db") as store:
            outbox = Outbox(store, client)
            item_id = await outbox.enqueue("call_record", {})
            assert await outbox.run_once() is not None
            item = await store.outbox.get(item_id)
            assert item is not None and item.state == "pending"
            assert item.last_error is not None and "unreachable" in item.last_error
        client.close()

    asyncio.run(scenario())
