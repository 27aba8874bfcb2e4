"""Engine events on MQTT: call, agent, queue, voicemail, monitor and audit facts published
as JSON to ``<topic_prefix>/<node>/<kind>`` (QoS 1) when a broker is configured.

Events are observability, not the source of truth (the store is): while the broker is away
they wait in a bounded in-memory queue, the oldest dropped (and counted, with a warning) when
it is full, and the publisher reconnects with capped exponential backoff. ``publish`` never
blocks and never raises, so call-handling code can call it anywhere. Delivery is
at-least-once: an event in flight when the connection drops is sent again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Protocol

import aiomqtt
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from ivr.logs import get_logger
from ivr.outbox import BackoffSettings, backoff_delay
from ivr.yamlloc import ConfigPath

__all__ = [
    "AgentStateChanged",
    "AuditRecorded",
    "CallAnswered",
    "CallEnded",
    "CallStarted",
    "Event",
    "EventPublisher",
    "MonitorModeChanged",
    "MonitorStarted",
    "MonitorStopped",
    "MqttEventPublisher",
    "MqttSettings",
    "NullEventPublisher",
    "QueueUpdated",
    "VoicemailLeft",
    "make_event_publisher",
]


class MqttSettings(BaseModel):
    """``mqtt:`` section (absent: events are not published)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(default=1883, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    topic_prefix: str = "switchhook"
    client_id: str | None = None  # default: "switchhook-<node>"
    tls: bool = False
    ca_file: ConfigPath | None = None
    tls_insecure: bool = False  # skip certificate checks (test brokers only)
    keepalive_seconds: int = Field(default=30, ge=5)
    publish_timeout_seconds: float = Field(default=10.0, gt=0)
    # Events kept while the broker is unreachable; beyond, the oldest are dropped.
    queue_size: int = Field(default=10000, ge=1)
    reconnect: BackoffSettings = Field(
        default_factory=lambda: BackoffSettings(initial_seconds=1.0, max_seconds=30.0)
    )
    # On shutdown, how long to try to flush queued events.
    flush_seconds: float = Field(default=2.0, ge=0)

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, value: str) -> str:
        if (
            not value
            or any(ch in value for ch in "+#\0")
            or value.startswith("/")
            or value.endswith("/")
        ):
            raise ValueError(
                f"{value!r} is not a valid topic prefix (no wildcards, no leading/trailing '/')"
            )
        return value


# --------------------------------------------------------------------------------------------
# The event vocabulary: past-tense facts. KIND is the topic's last level, NAME the
# ``event`` field of the payload.


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    KIND: ClassVar[str]
    NAME: ClassVar[str]

    def fields(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    KIND: ClassVar[str] = "call"
    NAME: ClassVar[str] = "call.started"
    call_id: str
    caller: str
    called: str
    trunk: str | None = None
    profile: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered(Event):
    KIND: ClassVar[str] = "call"
    NAME: ClassVar[str] = "call.answered"
    call_id: str
    queue: str | None = None
    agent: str | None = None
    wait_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    KIND: ClassVar[str] = "call"
    NAME: ClassVar[str] = "call.ended"
    call_id: str
    outcome: str
    queue: str | None = None
    agent: str | None = None
    duration_seconds: float = 0.0
    wait_seconds: float = 0.0
    talk_seconds: float = 0.0
    hold_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged(Event):
    KIND: ClassVar[str] = "agent"
    NAME: ClassVar[str] = "agent.state_changed"
    agent: str
    state: str
    previous: str | None = None
    call_id: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueUpdated(Event):
    KIND: ClassVar[str] = "queue"
    NAME: ClassVar[str] = "queue.updated"
    queue: str
    waiting: int
    longest_wait_seconds: float = 0.0
    agents_available: int = 0
    answered: int = 0
    abandoned: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailLeft(Event):
    KIND: ClassVar[str] = "voicemail"
    NAME: ClassVar[str] = "voicemail.left"
    voicemail_id: str
    queue: str
    caller: str
    callback_number: str | None = None
    duration_seconds: float = 0.0
    menu_path: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()  # agents assigned to the queue, to notify


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorStarted(Event):
    KIND: ClassVar[str] = "monitor"
    NAME: ClassVar[str] = "monitor.started"
    call_id: str
    monitor_id: str
    supervisor: str
    mode: Literal["listen", "coach", "barge"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorModeChanged(Event):
    KIND: ClassVar[str] = "monitor"
    NAME: ClassVar[str] = "monitor.mode_changed"
    call_id: str
    monitor_id: str
    supervisor: str
    mode: Literal["listen", "coach", "barge"]
    previous: Literal["listen", "coach", "barge"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorStopped(Event):
    KIND: ClassVar[str] = "monitor"
    NAME: ClassVar[str] = "monitor.stopped"
    call_id: str
    monitor_id: str
    supervisor: str
    reason: str = "stopped"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditRecorded(Event):
    KIND: ClassVar[str] = "audit"
    NAME: ClassVar[str] = "audit.recorded"
    who: str
    action: str
    call_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Publishers


class EventPublisher(Protocol):
    def publish(self, event: Event) -> None:
        """Queue ``event``; never blocks, never raises."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class NullEventPublisher:
    """No broker configured: events go nowhere."""

    def publish(self, event: Event) -> None:
        return None

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None


class _Client(Protocol):
    async def publish(
        self, topic: str, payload: bytes, qos: int = ..., *, timeout: float | None = ...
    ) -> None: ...


ClientFactory = Callable[[], AbstractAsyncContextManager[_Client]]


@dataclass(slots=True)
class _Queued:
    topic: str
    payload: bytes


class MqttEventPublisher:
    """Publishes to an MQTT broker through aiomqtt; see the module docstring."""

    DROP_WARNING_EVERY = 1000

    def __init__(
        self,
        settings: MqttSettings,
        *,
        node: str,
        now: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        if not node or any(ch in node for ch in "/+#\0"):
            raise ValueError(f"node {node!r} cannot be an MQTT topic level")
        self._settings = settings
        self._node = node
        self._now = now
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._client_factory = client_factory or self._aiomqtt_client
        self._queue: deque[_Queued] = deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._connected = False
        self.dropped = 0
        self.published = 0
        self.connects = 0
        self._log = get_logger(__name__)

    # -- what the engine calls -----------------------------------------------------------

    def topic(self, kind: str) -> str:
        return f"{self._settings.topic_prefix}/{self._node}/{kind}"

    def publish(self, event: Event) -> None:
        self.publish_raw(event.KIND, event.NAME, event.fields())

    def publish_raw(self, kind: str, name: str, fields: Mapping[str, Any]) -> None:
        """Publish a fact that has no Event class (yet)."""
        self._seq += 1
        body = {
            "event": name,
            "node": self._node,
            "seq": self._seq,
            "time": datetime.fromtimestamp(self._now(), UTC).isoformat(),
            **fields,
        }
        payload = json.dumps(body, default=str, separators=(",", ":")).encode()
        self._queue.append(_Queued(self.topic(kind), payload))
        if len(self._queue) > self._settings.queue_size:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped % self.DROP_WARNING_EVERY == 1 or self.DROP_WARNING_EVERY == 1:
                self._log.warning(
                    "mqtt_events_dropped",
                    dropped_total=self.dropped,
                    queue_size=self._settings.queue_size,
                    connected=self._connected,
                )
        self._ready.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="mqtt-events")

    async def stop(self) -> None:
        """Give queued events ``flush_seconds`` to go out, then disconnect."""
        if self._task is None:
            return
        deadline = time.monotonic() + self._settings.flush_seconds
        while self._queue and self._connected and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        task, self._task = self._task, None
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        if self._queue:
            self._log.warning("mqtt_events_unsent", count=len(self._queue))

    # -- the connection loop -------------------------------------------------------------

    def _aiomqtt_client(self) -> AbstractAsyncContextManager[_Client]:
        s = self._settings
        context: ssl.SSLContext | None = None
        if s.tls:
            context = ssl.create_default_context(cafile=str(s.ca_file) if s.ca_file else None)
            if s.tls_insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        client = aiomqtt.Client(
            s.host,
            s.port,
            username=s.username,
            password=s.password.get_secret_value() if s.password else None,
            identifier=s.client_id or f"switchhook-{self._node}",
            keepalive=s.keepalive_seconds,
            timeout=s.publish_timeout_seconds,
            tls_context=context,
            tls_insecure=s.tls_insecure if s.tls else None,
        )
        return client

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async with self._client_factory() as client:
                    self._connected = True
                    self.connects += 1
                    failures = 0
                    self._log.info(
                        "mqtt_connected",
                        host=self._settings.host,
                        port=self._settings.port,
                        queued=len(self._queue),
                    )
                    await self._drain(client)
            except aiomqtt.MqttError as error:
                failures += 1
                delay = backoff_delay(failures, self._settings.reconnect, self._rng)
                log = self._log.warning if self._connected or failures == 1 else self._log.debug
                log(
                    "mqtt_unavailable",
                    error=str(error),
                    retry_in_seconds=round(delay, 3),
                    queued=len(self._queue),
                    failures=failures,
                )
                self._connected = False
                await self._sleep(delay)
            finally:
                self._connected = False

    async def _drain(self, client: _Client) -> None:
        while True:
            if not self._queue:
                self._ready.clear()
                await self._ready.wait()
                continue
            entry = self._queue[0]
            await client.publish(
                entry.topic, entry.payload, qos=1, timeout=self._settings.publish_timeout_seconds
            )
            # The entry may have been dropped as the oldest while we awaited the PUBACK.
            if self._queue and self._queue[0] is entry:
                self._queue.popleft()
            self.published += 1


def make_event_publisher(settings: MqttSettings | None, *, node: str) -> EventPublisher:
    """The publisher the engine uses: MQTT when configured, else a no-op."""
    if settings is None:
        return NullEventPublisher()
    return MqttEventPublisher(settings, node=node)
