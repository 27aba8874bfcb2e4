"""ivr.events: payloads and topics, the bounded queue, reconnect with backoff; an in-memory
fake stands in for the broker connection (the real broker is in the integration tests)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from typing import Any

import aiomqtt
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from ivr.events import (
    AgentStateChanged,
    AuditRecorded,
    CallEnded,
    CallStarted,
    MonitorModeChanged,
    MonitorStarted,
    MqttEventPublisher,
    MqttSettings,
    NullEventPublisher,
    VoicemailLeft,
    make_event_publisher,
)
from ivr.outbox import backoff_delay

T0 = 1_700_000_000.0


class FakeBroker:
    def __init__(
        self, *, connect_failures: int = 0, fail_publishes: set[int] | None = None
    ) -> None:
        self.connect_failures = connect_failures
        self.fail_publishes = fail_publishes or set()
        self.attempts = 0
        self.received: list[tuple[str, dict[str, Any], int]] = []
        self.sleeps: list[float] = []

    def factory(self) -> FakeConnection:
        return FakeConnection(self)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


class FakeConnection:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker

    async def __aenter__(self) -> FakeConnection:
        if self.broker.connect_failures:
            self.broker.connect_failures -= 1
            raise aiomqtt.MqttError("[code:111] Connection refused")
        return self

    async def __aexit__(self, *_exc: object) -> None:
        return None

    async def publish(
        self, topic: str, payload: bytes, qos: int = 0, *, timeout: float | None = None
    ) -> None:
        self.broker.attempts += 1
        if self.broker.attempts in self.broker.fail_publishes:
            raise aiomqtt.MqttError("Disconnected during publish")
        self.broker.received.append((topic, json.loads(payload), qos))


def publisher(broker: FakeBroker, **settings: Any) -> MqttEventPublisher:
    config = MqttSettings.model_validate({"host": "127.0.0.1", **settings})
    return MqttEventPublisher(
        config,
        node="node1",
        now=lambda: T0,
        sleep=broker.sleep,
        rng=random.Random(5),
        client_factory=broker.factory,
    )


async def until(predicate: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), timeout=5)


def test_events_are_json_on_node_topics_with_qos_1() -> None:
    broker = FakeBroker()

    async def scenario() -> None:
        events = publisher(broker)
        await events.start()
        events.publish(
            CallStarted(
                call_id="c1",
                caller="+331",
                called="+332",
                trunk="t",
                profile={"verified_customer": True},
            )
        )
        events.publish(AgentStateChanged(agent="alice", state="available", previous="wrap_up"))
        events.publish(
            VoicemailLeft(
                voicemail_id="vm1",
                queue="root",
                caller="+331",
                menu_path=("main", "3"),
                agents=("bob",),
            )
        )
        events.publish(
            MonitorStarted(call_id="c1", monitor_id="m1", supervisor="sup", mode="listen")
        )
        events.publish(
            MonitorModeChanged(
                call_id="c1", monitor_id="m1", supervisor="sup", mode="coach", previous="listen"
            )
        )
        events.publish(AuditRecorded(who="sup", action="monitor.start", call_id="c1"))
        events.publish(CallEnded(call_id="c1", outcome="answered", talk_seconds=12.5))
        await until(lambda: len(broker.received) == 7)
        await events.stop()

    asyncio.run(scenario())
    topics = [topic for topic, _payload, _qos in broker.received]
    assert topics == [
        "switchhook/node1/call",
        "switchhook/node1/agent",
        "switchhook/node1/voicemail",
        "switchhook/node1/monitor",
        "switchhook/node1/monitor",
        "switchhook/node1/audit",
        "switchhook/node1/call",
    ]
    assert {qos for _t, _p, qos in broker.received} == {1}
    first = broker.received[0][1]
    assert first == {
        "event": "call.started",
        "node": "node1",
        "seq": 1,
        "time": "2023-11-14T22:13:20+00:00",
        "call_id": "c1",
        "caller": "+331",
        "called": "+332",
        "trunk": "t",
        "profile": {"verified_customer": True},
    }
    assert [p["seq"] for _t, p, _q in broker.received] == list(range(1, 8))
    assert broker.received[2][1]["menu_path"] == ["main", "3"]
    assert broker.received[4][1]["event"] == "monitor.mode_changed"


def test_topic_prefix_is_configurable() -> None:
    broker = FakeBroker()

    async def scenario() -> None:
        events = publisher(broker, topic_prefix="acme/pbx")
        await events.start()
        events.publish(CallEnded(call_id="c1", outcome="abandoned"))
        await until(lambda: len(broker.received) == 1)
        await events.stop()

    asyncio.run(scenario())
    assert broker.received[0][0] == "acme/pbx/node1/call"


def test_full_queue_drops_the_oldest_with_a_counter_and_a_warning() -> None:
    broker = FakeBroker()

    async def scenario() -> None:
        events = publisher(broker, queue_size=3)  # not started: the broker is "away"
        with capture_logs() as logs:
            for n in range(5):
                events.publish(CallEnded(call_id=f"c{n}", outcome="answered"))
        assert (events.queued, events.dropped) == (3, 2)
        warnings = [e for e in logs if e["event"] == "mqtt_events_dropped"]
        assert len(warnings) == 1 and warnings[0]["log_level"] == "warning"
        await events.start()
        await until(lambda: len(broker.received) == 3)
        await events.stop()

    asyncio.run(scenario())
    assert [p["call_id"] for _t, p, _q in broker.received] == ["c2", "c3", "c4"]


def test_reconnects_with_backoff_and_delivers_what_was_queued() -> None:
    broker = FakeBroker(connect_failures=3)

    async def scenario() -> None:
        events = publisher(broker)
        events.publish(CallStarted(call_id="c1", caller="a", called="b"))
        await events.start()
        events.publish(CallEnded(call_id="c1", outcome="answered"))
        await until(lambda: len(broker.received) == 2)
        assert events.connects == 1 and events.connected
        await events.stop()

    asyncio.run(scenario())
    rng = random.Random(5)
    policy = MqttSettings(host="x").reconnect
    assert broker.sleeps == [backoff_delay(n, policy, rng) for n in (1, 2, 3)]
    assert [p["event"] for _t, p, _q in broker.received] == ["call.started", "call.ended"]


def test_an_event_in_flight_when_the_connection_drops_is_sent_again() -> None:
    broker = FakeBroker(fail_publishes={2})

    async def scenario() -> None:
        events = publisher(broker)
        await events.start()
        for n in range(3):
            events.publish(CallEnded(call_id=f"c{n}", outcome="answered"))
        await until(lambda: len(broker.received) == 3)
        assert events.connects == 2 and events.queued == 0 and events.dropped == 0
        await events.stop()

    asyncio.run(scenario())
    assert [p["call_id"] for _t, p, _q in broker.received] == ["c0", "c1", "c2"]


def test_no_broker_means_a_no_op_publisher() -> None:
    events = make_event_publisher(None, node="node1")
    assert isinstance(events, NullEventPublisher)

    async def scenario() -> None:
        await events.start()
        events.publish(CallEnded(call_id="c1", outcome="answered"))
        await events.stop()

    asyncio.run(scenario())
    assert isinstance(make_event_publisher(MqttSettings(host="h"), node="n"), MqttEventPublisher)


def test_settings_validation() -> None:
    with pytest.raises(ValidationError, match="topic prefix"):
        MqttSettings(host="h", topic_prefix="a/#")
    with pytest.raises(ValidationError):
        MqttSettings.model_validate({"host": "h", "qos": 2})
    settings = MqttSettings(host="h", password="s3cret")  # type: ignore[arg-type]
    assert "s3cret" not in repr(settings)
    with pytest.raises(ValueError, match="topic level"):
        MqttEventPublisher(settings, node="a/b")
