"""Supervisors monitoring bridged calls (listen, coach, barge), from the admin API and by
dial-in; supervisors' phones registering; ending calls; the audit trail of both.

A monitor is one supervisor leg attached as a :class:`media.bridge.Tap` to a call's bridge.
Taps never touch the call's legs' SIP dialogs or RTP streams (see ``media.bridge``), so the
agent cannot tell. Every monitor start, mode change and stop, and every end-call, is written
to the store's audit table and published on MQTT (``AuditRecorded`` plus the monitor event).

Call views come from the engine's live calls: ``queued`` (a queue is set, not bridged),
``connected`` (bridged), ``ivr`` (neither). A call's teams are its agent's teams, else the
teams of its queue's agents: that is what manager scoping checks against.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from media.bridge import TapMode
from media.errors import BridgeError
from sipstack import ua as sip
from sipstack.auth import AuthResultKind, DigestServer
from sipstack.errors import RemoteProtocolError
from sipstack.registrar import Registrar
from sipstack.uri import Uri

from .call import OriginateFailed
from .events import AuditRecorded, MonitorModeChanged, MonitorStarted, MonitorStopped
from .logs import get_logger
from .roles import MODE_PERMISSION, Directory, Permission, User
from .store import AuditEntry, StoreError

if TYPE_CHECKING:
    from .call import Call, CallCore, MediaLeg, OutboundLeg

log = get_logger("switchhook.monitoring")

__all__ = ["Monitor", "MonitorError", "MonitorState", "Supervision"]


class MonitorError(Exception):
    """A refused or impossible supervisor action; ``status`` is the HTTP status it maps to
    (403 not allowed, 404 unknown, 409 not possible in the call's state)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class MonitorState(enum.StrEnum):
    CALLING = "calling"  # the supervisor's phone is being called
    ACTIVE = "active"  # attached to the call's bridge as a tap
    STOPPED = "stopped"
    FAILED = "failed"  # the supervisor's phone did not answer

    @property
    def live(self) -> bool:
        return self in (MonitorState.CALLING, MonitorState.ACTIVE)


class MonitorEvent(enum.Enum):
    ATTACHED = "attached"  # answered and tapped into the bridge
    CALL_FAILED = "call-failed"  # the call to the supervisor failed
    STOPPED = "stopped"  # stopped by someone, the call or the supervisor hanging up


class IllegalMonitorTransition(Exception):
    def __init__(self, state: MonitorState, event: MonitorEvent) -> None:
        super().__init__(f"{event.value} is not allowed in monitor state {state.value}")
        self.state = state
        self.event = event


# The whole monitor machine; ``Monitor.move`` is its only writer.
MONITOR_TRANSITIONS: Mapping[tuple[MonitorState, MonitorEvent], MonitorState] = {
    (MonitorState.CALLING, MonitorEvent.ATTACHED): MonitorState.ACTIVE,
    (MonitorState.CALLING, MonitorEvent.CALL_FAILED): MonitorState.FAILED,
    (MonitorState.CALLING, MonitorEvent.STOPPED): MonitorState.STOPPED,
    # A dial-in supervisor's ``*`` moves the monitor to the next call: detached from one
    # bridge, attached to the next, active throughout.
    (MonitorState.ACTIVE, MonitorEvent.ATTACHED): MonitorState.ACTIVE,
    (MonitorState.ACTIVE, MonitorEvent.STOPPED): MonitorState.STOPPED,
    # Stopping is idempotent: a stop request and the supervising task's own cleanup may both
    # report it.
    (MonitorState.STOPPED, MonitorEvent.STOPPED): MonitorState.STOPPED,
}


@dataclass(eq=False, kw_only=True)
class Monitor:
    id: str
    call: Call
    supervisor: User
    mode: TapMode
    via: str  # "api" | "dial-in"
    target: str = ""
    state: MonitorState = MonitorState.CALLING
    leg: MediaLeg | None = None
    tap: Any = None
    started_at: float = field(default_factory=time.time)
    stop_reason: str = ""
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def move(self, event: MonitorEvent) -> MonitorState:
        """Apply ``event`` by :data:`MONITOR_TRANSITIONS`, else raise."""
        target = MONITOR_TRANSITIONS.get((self.state, event))
        if target is None:
            raise IllegalMonitorTransition(self.state, event)
        self.state = target
        return target

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "call_id": self.call.call_id,
            "supervisor": self.supervisor.name,
            "mode": self.mode.value,
            "state": self.state.value,
            "via": self.via,
            "target": self.target,
            "started_at": self.started_at,
            "stop_reason": self.stop_reason or None,
        }


@dataclass(frozen=True, slots=True)
class _Pending:
    token: str
    user: str
    call_id: str
    expires_at: float


class Supervision:
    """Owns monitors, the supervisors' registrar and the admin API for one engine."""

    def __init__(self, engine: CallCore) -> None:
        self.engine = engine
        settings = engine.settings
        self.settings = settings.monitoring
        self.directory = Directory(settings.users, settings.roles)
        self.registrar = Registrar(min_expires=1)
        self.digest = DigestServer(
            self.settings.realm, secrets.token_bytes(32), algorithms=self.settings.sip_algorithms
        )
        self.monitors: dict[str, Monitor] = {}
        self._monitor_legs: set[int] = set()  # engine leg ids of supervisor legs
        self._pending: dict[str, _Pending] = {}
        self._agents = {a.id: a for a in settings.acd.agents}
        self._stuck_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, engine: CallCore) -> Supervision:
        self = cls(engine)
        engine.request_hooks.append(self._on_request)
        engine.invite_hooks.append(self._on_invite)
        if self.settings.stuck_calls.enabled:
            self._stuck_task = asyncio.get_running_loop().create_task(self._end_stuck_calls())
        return self

    async def close(self) -> None:
        if self._stuck_task is not None:
            self._stuck_task.cancel()
        for monitor in list(self.monitors.values()):
            self._stop(monitor, "shutdown")

    # ---- views ------------------------------------------------------------------------------

    def _acd(self) -> Any:
        return getattr(self.engine, "acd_runtime", None)

    def customer_calls(self) -> list[Call]:
        """Live inbound calls that are not supervisors' own legs, oldest first."""
        calls = [c for c in self.engine.calls.values() if c.leg_id not in self._monitor_legs]
        return sorted(calls, key=lambda c: c.started_at)

    def find_call(self, call_id: str) -> Call | None:
        return next((c for c in self.customer_calls() if c.call_id == call_id), None)

    @staticmethod
    def call_state(call: Call) -> str:
        if call.bridge is not None and call.bridge.running:
            return "connected"
        if call.queue:
            return "queued"
        return "ivr"

    def agent_leg(self, call: Call) -> OutboundLeg | None:
        bridge = call.bridge
        if bridge is None:
            return None
        return next(
            (
                leg
                for leg in self.engine.outbound.values()
                if leg.bridge is bridge and leg.leg_id not in self._monitor_legs
            ),
            None,
        )

    def call_teams(self, call: Call) -> set[str]:
        if call.agent and call.agent in self._agents:
            return set(self._agents[call.agent].teams)
        teams: set[str] = set()
        if call.queue:
            for agent in self._agents.values():
                if any(m.queue == call.queue for m in agent.queues):
                    teams.update(agent.teams)
        return teams

    def call_summary(self, call: Call) -> dict[str, Any]:
        now = _now()
        return {
            "id": call.call_id,
            "state": self.call_state(call),
            "caller": call.caller_number,
            "called": call.called,
            "queue": call.queue,
            "agent": call.agent,
            "age_seconds": round(now - call.started_at, 1),
            "issue": call.menu_path or None,
            "monitors": sum(1 for m in self.monitors.values() if m.call is call and m.state.live),
        }

    def call_details(self, call: Call) -> dict[str, Any]:
        now = _now()
        metrics = dict(call.metrics)
        state = self.call_state(call)
        agent_leg = self.agent_leg(call)
        participants: list[dict[str, Any]] = [
            {"role": "caller", "number": call.caller_number, "uri": call.caller}
        ]
        if call.agent or agent_leg is not None:
            participants.append(
                {
                    "role": "agent",
                    "agent": call.agent,
                    "uri": agent_leg.target if agent_leg else None,
                }
            )
        for monitor in self.monitors.values():
            if monitor.call is call and monitor.state.live:
                participants.append(
                    {
                        "role": "monitor",
                        "supervisor": monitor.supervisor.name,
                        "mode": monitor.mode.value,
                        "monitor_id": monitor.id,
                        "state": monitor.state.value,
                    }
                )
        talk = metrics.get("talk_seconds")
        if talk is None and state == "connected" and call.answered_at is not None:
            talk = None  # the ACD fills talk time; without it we do not guess
        profile = call.profile
        return {
            **self.call_summary(call),
            "trunk": call.trunk or None,
            "teams": sorted(self.call_teams(call)),
            "metrics": {
                "wait_seconds": metrics.get("wait_seconds"),
                "talk_seconds": talk,
                "hold_seconds": metrics.get("hold_seconds"),
                "ring_seconds": metrics.get("ring_seconds"),
                "duration_seconds": round(now - call.started_at, 1),
            },
            "transfers": list(metrics.get("transfers", ()) or ()),
            "participants": participants,
            "menu_path": [p for p in call.menu_path.split(" > ") if p],
            "profile": {
                "verified_customer": profile.verified_customer,
                "bad_actor": profile.bad_actor,
                "repeat_customer": profile.repeat_customer,
                **dict(profile.extra),
            },
        }

    def agents_view(self) -> list[dict[str, Any]]:
        acd = self._acd()
        snapshot: dict[str, dict[str, Any]] = {}
        if acd is not None and hasattr(acd, "snapshot_agents"):
            for row in acd.snapshot_agents():
                row = dict(row) if not isinstance(row, dict) else row
                snapshot[str(row.get("agent_id") or row.get("id") or row.get("agent"))] = row
        out = []
        calls = {c.agent: c for c in self.customer_calls() if c.agent}
        for agent_id, agent in self._agents.items():
            row = {
                "id": agent_id,
                "display_name": agent.display_name,
                "teams": list(agent.teams),
                "queues": [m.queue for m in agent.queues],
                "state": "unknown",
                **snapshot.get(agent_id, {}),
            }
            call = calls.get(agent_id)
            row["current_call"] = self.call_summary(call) if call is not None else None
            if call is not None and row["state"] == "unknown":
                row["state"] = "on-call"
            out.append(row)
        return out

    def queues_view(self) -> list[dict[str, Any]]:
        acd = self._acd()
        if acd is not None and hasattr(acd, "snapshot_queues"):
            return [dict(q) for q in acd.snapshot_queues()]
        calls = self.customer_calls()
        out = []
        for queue in self.engine.settings.acd.queues:
            waiting = [c for c in calls if c.queue == queue.name and self.call_state(c) == "queued"]
            out.append(
                {
                    "name": queue.name,
                    "waiting": len(waiting),
                    "connected": sum(
                        1
                        for c in calls
                        if c.queue == queue.name and self.call_state(c) == "connected"
                    ),
                }
            )
        return out

    # ---- authorisation ------------------------------------------------------------------------

    def require(self, user: User, permission: Permission, call: Call | None = None) -> None:
        if not user.can(permission):
            raise MonitorError(403, f"{user.name} lacks {permission.value}")
        if call is not None and not user.covers(self.call_teams(call)):
            raise MonitorError(403, f"call {call.call_id} is outside {user.name}'s teams")

    def visible(self, user: User, call: Call) -> bool:
        return user.can(Permission.CALLS_VIEW) and user.covers(self.call_teams(call))

    # ---- monitors -----------------------------------------------------------------------------

    def start_monitor(
        self, call: Call, user: User, mode: TapMode, target: str | None = None
    ) -> Monitor:
        """Call the supervisor (``target`` URI, else their registered phone, else their
        configured ``phone``) and attach them when they answer. Returns at once (state
        ``calling``); refusals raise :class:`MonitorError`."""
        self.require(user, MODE_PERMISSION[mode.value], call)
        self._require_monitorable(call)
        request_uri, destination = self._destination(user, target)
        monitor = Monitor(
            id="mon_" + secrets.token_hex(6),
            call=call,
            supervisor=user,
            mode=mode,
            via="api",
            target=request_uri,
        )
        self.monitors[monitor.id] = monitor
        monitor.task = asyncio.get_running_loop().create_task(
            self._run_api_monitor(monitor, request_uri, destination)
        )
        return monitor

    def _require_monitorable(self, call: Call) -> None:
        if self.call_state(call) != "connected":
            raise MonitorError(409, f"call {call.call_id} is not connected to an agent")
        limit = self.settings.max_monitors_per_call
        if (
            limit
            and sum(1 for m in self.monitors.values() if m.call is call and m.state.live) >= limit
        ):
            raise MonitorError(409, f"call {call.call_id} already has {limit} monitors")

    def _destination(self, user: User, target: str | None) -> tuple[str, tuple[str, int]]:
        if target:
            try:
                uri = Uri.parse(target.strip("<>"))
            except RemoteProtocolError as exc:
                raise MonitorError(400, f"bad SIP URI {target!r}: {exc}") from None
            return str(uri), (uri.host.strip("[]"), uri.port or 5060)
        if user.config.sip is not None:
            now = _now()
            for binding in self.registrar.all_bindings(now):
                if binding.aor.startswith(f"sip:{user.config.sip.username}@"):
                    return binding.contact, binding.flow.remote
        if user.config.phone:
            uri = Uri.parse(user.config.phone)
            return str(uri), (uri.host.strip("[]"), uri.port or 5060)
        raise MonitorError(409, f"{user.name} has no registered phone; give a SIP URI")

    async def _run_api_monitor(
        self, monitor: Monitor, request_uri: str, destination: tuple[str, int]
    ) -> None:
        engine = self.engine
        try:
            leg = await engine.originate(
                request_uri=request_uri,
                to_uri=f"<{request_uri}>",
                from_uri=f"<{self.settings.from_uri}>",
                destination=destination,
                timeout=self.settings.ring_timeout_seconds,
                headers=(("Subject", f"monitor {monitor.call.caller_number}"),),
            )
        except OriginateFailed as exc:
            monitor.move(MonitorEvent.CALL_FAILED)
            monitor.stop_reason = f"{exc.status_code} {exc.reason}"
            log.info("monitor call failed", monitor_id=monitor.id, status=exc.status_code)
            self.monitors.pop(monitor.id, None)
            return
        self._monitor_legs.add(leg.leg_id)
        monitor.leg = leg
        await self._supervise(monitor)

    async def dial_in(self, leg: Call, user: User, agent_id: str) -> None:
        """Behaviour of a supervisor's dial-in call (already authorised for listening)."""
        self._monitor_legs.add(leg.leg_id)
        call = self._agent_call(agent_id)
        if call is None or not self.visible_for_monitor(user, call):
            leg.reject(404, "No monitorable call")
            return
        if not await leg.answer():
            return
        monitor = Monitor(
            id="mon_" + secrets.token_hex(6),
            call=call,
            supervisor=user,
            mode=TapMode.LISTEN,
            via="dial-in",
            target=leg.caller,
            leg=leg,
        )
        self.monitors[monitor.id] = monitor
        await self._supervise(monitor)

    def visible_for_monitor(self, user: User, call: Call) -> bool:
        return (
            user.can(Permission.MONITOR_LISTEN)
            and user.covers(self.call_teams(call))
            and self.call_state(call) == "connected"
        )

    def _agent_call(self, agent_id: str) -> Call | None:
        return next(
            (
                c
                for c in self.customer_calls()
                if c.agent == agent_id and self.call_state(c) == "connected"
            ),
            None,
        )

    def _attach(self, monitor: Monitor) -> bool:
        leg, call = monitor.leg, monitor.call
        assert leg is not None and leg.rtp is not None
        bridge = call.bridge
        if bridge is None or not bridge.running:
            return False
        try:
            monitor.tap = bridge.add_tap(leg.rtp, monitor.mode, name=monitor.supervisor.name)
        except BridgeError as exc:
            log.warning("monitor not attached", monitor_id=monitor.id, error=str(exc))
            return False
        monitor.move(MonitorEvent.ATTACHED)
        self._audit(
            monitor.supervisor.name,
            "monitor.start",
            call,
            {
                "monitor_id": monitor.id,
                "mode": monitor.mode.value,
                "via": monitor.via,
                "agent": call.agent,
                "target": monitor.target,
            },
        )
        self.engine.events.publish(
            MonitorStarted(
                call_id=call.call_id,
                monitor_id=monitor.id,
                supervisor=monitor.supervisor.name,
                mode=monitor.mode.value,
            )
        )  # type: ignore[arg-type]
        log.info(
            "monitor attached",
            monitor_id=monitor.id,
            call_id=call.call_id,
            supervisor=monitor.supervisor.name,
            mode=monitor.mode.value,
        )
        return True

    def _detach(self, monitor: Monitor, reason: str) -> None:
        if monitor.tap is not None:
            monitor.tap.remove()
            monitor.tap = None
            self._audit(
                monitor.supervisor.name,
                "monitor.stop",
                monitor.call,
                {
                    "monitor_id": monitor.id,
                    "mode": monitor.mode.value,
                    "reason": reason,
                    "agent": monitor.call.agent,
                },
            )
            self.engine.events.publish(
                MonitorStopped(
                    call_id=monitor.call.call_id,
                    monitor_id=monitor.id,
                    supervisor=monitor.supervisor.name,
                    reason=reason,
                )
            )

    async def _supervise(self, monitor: Monitor) -> None:
        """Attach, then follow the supervisor's keys until they hang up, the call ends or the
        monitor is stopped; then detach and hang up the supervisor leg."""
        leg = monitor.leg
        assert leg is not None
        reason = "stopped"
        try:
            if monitor.call.ended.is_set() or not self._attach(monitor):
                reason = "call ended" if monitor.call.ended.is_set() else "not connected"
                return
            while True:
                waits: dict[asyncio.Future[Any], str] = {
                    asyncio.ensure_future(monitor.call.ended.wait()): "call ended",
                    asyncio.ensure_future(leg.ended.wait()): "supervisor hung up",
                    asyncio.ensure_future(monitor.stopped.wait()): "stop",
                    asyncio.ensure_future(leg.digits.get()): "digit",
                }
                try:
                    done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for future in waits:
                        future.cancel()
                kinds = {waits[f] for f in done}
                digit_future = next(f for f, k in waits.items() if k == "digit")
                if "stop" in kinds:
                    reason = monitor.stop_reason or "stopped"
                    break
                if "call ended" in kinds:
                    reason = "call ended"
                    break
                if "supervisor hung up" in kinds:
                    reason = "supervisor hung up"
                    break
                if digit_future in done:
                    self._on_key(monitor, digit_future.result())
        except asyncio.CancelledError:
            # A dial-in leg's behaviour task is cancelled when the supervisor hangs up.
            reason = "supervisor hung up" if leg.ended.is_set() else "cancelled"
            raise
        finally:
            self._detach(monitor, reason)
            monitor.move(MonitorEvent.STOPPED)
            monitor.stop_reason = monitor.stop_reason or reason
            self.monitors.pop(monitor.id, None)
            self._monitor_legs.discard(leg.leg_id)
            if not leg.ended.is_set():
                self.engine.hangup(leg, f"monitor {reason}")

    def _on_key(self, monitor: Monitor, digit: str) -> None:
        user = monitor.supervisor
        mode_name = self.settings.mode_keys.get(digit)
        if mode_name is not None:
            try:
                self.set_mode(monitor, TapMode(mode_name), user)
            except MonitorError as exc:
                log.info("monitor key refused", monitor_id=monitor.id, key=digit, error=exc.message)
        elif digit == self.settings.next_key:
            self._move_to_next(monitor)

    def _move_to_next(self, monitor: Monitor) -> None:
        user = monitor.supervisor
        candidates = [c for c in self.customer_calls() if self.visible_for_monitor(user, c)]
        if not candidates or candidates == [monitor.call]:
            return
        index = candidates.index(monitor.call) if monitor.call in candidates else -1
        target = candidates[(index + 1) % len(candidates)]
        if target is monitor.call:
            return
        if not user.allowed(MODE_PERMISSION[monitor.mode.value], self.call_teams(target)):
            monitor.mode = TapMode.LISTEN
        self._detach(monitor, "moved to next call")
        monitor.call = target
        if not self._attach(monitor):
            monitor.stop_reason = "next call not connected"
            monitor.stopped.set()

    def set_mode(self, monitor: Monitor, mode: TapMode, user: User) -> None:
        self.require(user, MODE_PERMISSION[mode.value], monitor.call)
        previous = monitor.mode
        if previous is mode:
            return
        monitor.mode = mode
        if monitor.tap is not None:
            monitor.tap.set_mode(mode)
        self._audit(
            user.name,
            "monitor.mode",
            monitor.call,
            {
                "monitor_id": monitor.id,
                "mode": mode.value,
                "previous": previous.value,
                "supervisor": monitor.supervisor.name,
            },
        )
        self.engine.events.publish(
            MonitorModeChanged(
                call_id=monitor.call.call_id,
                monitor_id=monitor.id,
                supervisor=monitor.supervisor.name,
                mode=mode.value,  # type: ignore[arg-type]
                previous=previous.value,
            )
        )  # type: ignore[arg-type]

    def stop_monitor(self, monitor: Monitor, user: User, reason: str = "stopped") -> None:
        if user is not monitor.supervisor:
            self.require(user, MODE_PERMISSION["listen"], monitor.call)
        self._stop(monitor, f"{reason} by {user.name}")

    def _stop(self, monitor: Monitor, reason: str) -> None:
        monitor.stop_reason = reason
        monitor.stopped.set()
        if monitor.leg is None and monitor.task is not None:
            monitor.task.cancel()  # still ringing: originate's CANCEL path
            monitor.move(MonitorEvent.STOPPED)
            self.monitors.pop(monitor.id, None)

    # ---- ending calls -------------------------------------------------------------------------

    def request_end(self, call: Call, user: User) -> dict[str, Any]:
        """First step of an end-call: a one-time confirmation token for this user and call."""
        self.require(user, Permission.CALLS_END, call)
        if self.call_state(call) not in ("queued", "connected"):
            raise MonitorError(409, f"call {call.call_id} is neither queued nor connected")
        now = time.time()
        self._pending = {k: p for k, p in self._pending.items() if p.expires_at > now}
        token = secrets.token_urlsafe(16)
        ttl = self.settings.confirm_ttl_seconds
        self._pending[token] = _Pending(token, user.name, call.call_id, now + ttl)
        return {"confirm": token, "expires_in": ttl, "call": self.call_summary(call)}

    def confirm_end(self, call: Call, user: User, token: str) -> dict[str, Any]:
        self.require(user, Permission.CALLS_END, call)
        pending = self._pending.get(token)
        if (
            pending is None
            or pending.expires_at < time.time()
            or pending.user != user.name
            or pending.call_id != call.call_id
        ):
            raise MonitorError(409, "unknown or expired confirmation token")
        del self._pending[token]
        return self.end_call(call, user.name, f"ended by {user.name}")

    def end_call(self, call: Call, who: str, reason: str) -> dict[str, Any]:
        state = self.call_state(call)
        agent_leg = self.agent_leg(call)
        self._audit(
            who,
            "call.end",
            call,
            {"reason": reason, "state": state, "agent": call.agent, "queue": call.queue},
        )
        log.info("call ended by supervisor", call_id=call.call_id, who=who, reason=reason)
        self.engine.hangup(call, reason)
        if agent_leg is not None:
            self.engine.hangup(agent_leg, reason)
        return {"id": call.call_id, "ended": True, "state": state, "reason": reason}

    async def _end_stuck_calls(self) -> None:
        cfg = self.settings.stuck_calls
        while True:
            await asyncio.sleep(cfg.check_every_seconds)
            self.end_stuck_calls()

    def end_stuck_calls(self) -> list[str]:
        cfg = self.settings.stuck_calls
        now = _now()
        ended = []
        for call in self.customer_calls():
            state = self.call_state(call)
            age = now - call.started_at
            limit = {"queued": cfg.queued_seconds, "connected": cfg.connected_seconds}.get(state)
            if limit is not None and age > limit:
                self.end_call(call, "system", f"stuck: {state} for more than {limit:g} s")
                ended.append(call.call_id)
        return ended

    # ---- audit --------------------------------------------------------------------------------

    def _audit(self, who: str, action: str, call: Call, details: dict[str, Any]) -> None:
        entry = AuditEntry(
            who=who, at=time.time(), action=action, call_id=call.call_id, details=details
        )
        self.engine.events.publish(
            AuditRecorded(who=who, action=action, call_id=call.call_id, details=details)
        )
        store = self.engine.store
        if store is None:
            return

        async def write() -> None:
            try:
                await store.audit.add(entry)
            except StoreError as exc:
                log.error("audit not stored", action=action, call_id=call.call_id, error=str(exc))

        asyncio.get_running_loop().create_task(write())

    # ---- SIP: supervisors' phones ---------------------------------------------------------------

    def _authenticate(self, request: Any, now: float) -> tuple[User | None, list[str] | None]:
        """(user, None) when authenticated; (None, challenge) to challenge; (None, None) for
        wrong credentials."""
        credentials = request.headers.get("Authorization")
        if not credentials:
            return None, self.digest.challenge(now)
        result = self.digest.verify(
            credentials, method=request.method, now=now, lookup_ha1=self.directory.sip_ha1
        )
        if result.kind is AuthResultKind.STALE:
            return None, self.digest.challenge(now, stale=True)
        if not result.ok or result.username is None:
            return None, None
        return self.directory.by_sip_username(result.username), None

    def _on_request(self, event: sip.RequestReceived) -> bool:
        request = event.request
        if request.method != "REGISTER":
            return False
        username = request.to.uri.user or ""
        if self.directory.by_sip_username(username) is None:
            return False  # not a supervisor's phone (agents' phones are the ACD's)
        ua, now = self.engine.ua, event.received_at
        user, challenge = self._authenticate(request, now)
        if challenge is not None:
            ua.respond(
                event.transaction_id, 401, now, headers=[("WWW-Authenticate", v) for v in challenge]
            )
            return True
        if user is None or user.config.sip is None or user.config.sip.username != username:
            ua.respond(event.transaction_id, 403, now)
            return True
        result = self.registrar.register(request, event.flow, now)
        ua.respond(
            event.transaction_id,
            result.status_code,
            now,
            reason=result.reason,
            headers=list(result.headers),
        )
        log.info(
            "supervisor phone registered",
            user=user.name,
            aor=result.aor,
            contacts=len(result.headers),
        )
        return True

    def _on_invite(
        self, event: sip.InviteReceived
    ) -> Callable[[Call], Awaitable[None]] | bool | None:
        request = event.request
        dialled = request.request_uri.user or ""
        code, pin_code = self.settings.feature_code, self.settings.pin_feature_code
        ua, now = self.engine.ua, event.received_at
        if dialled.startswith(code) and len(dialled) > len(code):
            agent_id = dialled[len(code) :]
            user, challenge = self._authenticate(request, now)
            if challenge is not None:
                ua.reject(
                    event.leg_id, 401, now, headers=[("WWW-Authenticate", v) for v in challenge]
                )
                return True
            if user is None:
                ua.reject(event.leg_id, 403, now, reason="Bad Credentials")
                return True
            refusal = self._dial_in_refusal(user, agent_id)
            if refusal is not None:
                ua.reject(event.leg_id, refusal[0], now, reason=refusal[1])
                log.info(
                    "dial-in monitor refused",
                    user=user.name,
                    agent=agent_id,
                    status=refusal[0],
                    reason=refusal[1],
                )
                return True

            async def behaviour(call: Call) -> None:
                await self.dial_in(call, user, agent_id)

            return behaviour
        if dialled.startswith(pin_code) and len(dialled) > len(pin_code):
            from .admission import Admitted

            # Any admitted caller; the PIN authenticates (the engine re-runs admission for
            # the others and challenges or refuses them itself).
            if not isinstance(
                self.engine.admission.admit(request, event.flow.remote[0], now), Admitted
            ):
                return None
            agent_id = dialled[len(pin_code) :]

            async def pin_behaviour(call: Call) -> None:
                await self._pin_dial_in(call, agent_id)

            return pin_behaviour
        return None

    def _dial_in_refusal(self, user: User, agent_id: str) -> tuple[int, str] | None:
        if not user.can(Permission.MONITOR_LISTEN):
            return 403, "Not Allowed To Monitor"
        call = self._agent_call(agent_id)
        if call is None:
            return 404, "No Monitorable Call"
        if not user.covers(self.call_teams(call)):
            return 403, "Call Outside Your Teams"
        return None

    async def _pin_dial_in(self, leg: Call, agent_id: str) -> None:
        """``<extension>*<pin>#`` by DTMF, then the same as a registered phone's dial-in."""
        self._monitor_legs.add(leg.leg_id)
        if not await leg.answer():
            return
        keyed = ""
        while not keyed.endswith("#") and len(keyed) < 32:
            digit = await leg.collect_digit(15.0)
            if digit is None:
                return
            keyed += digit
        extension, _, pin = keyed[:-1].partition("*")
        user = self.directory.by_extension(extension)
        from .roles import verify_pin

        if (
            user is None
            or user.config.pin is None
            or not await asyncio.to_thread(verify_pin, pin, user.config.pin)
        ):
            log.info("dial-in PIN refused", extension=extension)
            return
        if self._dial_in_refusal(user, agent_id) is not None:
            return
        call = self._agent_call(agent_id)
        assert call is not None
        monitor = Monitor(
            id="mon_" + secrets.token_hex(6),
            call=call,
            supervisor=user,
            mode=TapMode.LISTEN,
            via="dial-in-pin",
            target=leg.caller,
            leg=leg,
        )
        self.monitors[monitor.id] = monitor
        with contextlib.suppress(asyncio.CancelledError):
            await self._supervise(monitor)


def _now() -> float:
    """The engine's clock (the event loop's), as call start times use."""
    return asyncio.get_running_loop().time()
