"""Queues and agents at run time: the asyncio side of the sans-IO ACD core (``ivr.acd``).

One :class:`AcdRuntime` per engine owns one :class:`ivr.acd.Acd`. Every entry point into
the core is followed by :meth:`AcdRuntime._kick`: drain the commands, execute them, re-arm
ONE ``loop.call_at`` on ``Acd.get_timer()`` (the aioquic adapter pattern).

- The flow's ``queue`` node runs :func:`queue_task`: business hours (closed -> after-hours
  deflection, else ``closed``), answer, enqueue, hold audio looping with the periodic and
  position/estimated-wait announcements, until an agent answers, the caller overflows or
  hangs up.
- ``OfferCall`` -> one INVITE per registered contact of the agent (to the binding's flow:
  transport, address, connection), carrying the caller's number and name (From), the queue,
  menu path and reserved-data headers, ``Alert-Info`` with the ring tone; first 200 wins,
  the other contacts are CANCELled; ``CancelOffer`` CANCELs them all. An SMS webhook is
  called on each offer when configured.
- After the answer the agent alone hears the whisper and countdown (the caller keeps its
  hold audio), then the legs are bridged (pass-through, transcoding PCMU <-> PCMA).
- Bridged: either BYE ends both; agent hold (re-INVITE sendonly/inactive) plays hold audio
  to the caller; the agent's REFER blind-transfers to a queue (``Refer-To:
  <sip:queue-<name>@...>``, ``<sip:<name>@...>`` or ``<sip:queue:<name>@...>``) or an outside
  number, answered 202 with a NOTIFY ``message/sipfrag`` (RFC 3515).
"""

from __future__ import annotations

import asyncio
import enum
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from media.aio.bridge import Bridge, Side
from media.errors import MediaError
from media.prompts import Prompt, concat, silence, time_stretch, tone
from sipstack import ua as sip
from sipstack.errors import SipError
from sipstack.uri import NameAddr

from .acd import (
    Acd,
    AgentCommand,
    AgentStateChanged,
    AnnouncePosition,
    CancelOffer,
    OfferCall,
    Overflow,
    PlayPeriodicAnnouncement,
    TransferRefused,
    UnknownCall,
    WhisperFile,
    WhisperTts,
    build_whisper,
    check_transfer_target,
)
from .acd.models import AudioSource, QueueConfig
from .agents_runtime import AgentPhones
from .call import CallState
from .deflection import deflect_after_hours, transfer_to_number
from .events import AgentStateChanged as AgentStateEvent
from .events import QueueUpdated
from .flows.actions import StartTask
from .flows.profile import FLAG_HEADERS, USER_TO_USER
from .hours import is_open
from .tasks import TaskHandler, TaskResult
from .voicemail import leave_voicemail

if TYPE_CHECKING:
    from .call import Call, CallCore, OutboundLeg

log = structlog.get_logger("switchhook.queueing")

# Heard by callers when a queue has no hold_audio: a soft chime, never dead air.
_DEFAULT_HOLD = ((523.25, 350), (659.25, 350), (783.99, 350), (0.0, 1200))
# An INVITE to an agent outlives its ACD deadline by this much at most (the ACD CANCELs it).
_OFFER_GRACE_SECONDS = 5.0
_REFER_BYE_AFTER_SECONDS = 2.0
_FLAG_HEADER_OF = {flag: header for header, flag in FLAG_HEADERS.items()}


def _settings_error(message: str) -> RuntimeError:
    return RuntimeError(message)


class SessionState(enum.Enum):
    """Where a queue session's caller is, as the ACD core knows it."""

    NOT_QUEUED = "not-queued"  # before enqueueing, between queues, after leaving
    WAITING = "waiting"  # in a queue, hearing hold audio (offers may be ringing)
    CONNECTED = "connected"  # an agent answered: whisper, then bridged


class SessionEvent(enum.Enum):
    ENQUEUED = "enqueued"
    AGENT_CONNECTED = "agent-connected"
    TRANSFERRED_TO_QUEUE = "transferred-to-queue"  # the agent's REFER to a queue
    LEFT = "left"  # overflow, hang-up, the agent leaving, the end of the session


class IllegalSessionTransition(Exception):
    def __init__(self, state: SessionState, event: SessionEvent) -> None:
        super().__init__(f"{event.value} is not allowed in queue session state {state.value}")
        self.state = state
        self.event = event


# The whole queue-session machine; ``_Session.move`` is its only writer.
SESSION_TRANSITIONS: Mapping[tuple[SessionState, SessionEvent], SessionState] = {
    (SessionState.NOT_QUEUED, SessionEvent.ENQUEUED): SessionState.WAITING,
    (SessionState.WAITING, SessionEvent.AGENT_CONNECTED): SessionState.CONNECTED,
    (SessionState.CONNECTED, SessionEvent.TRANSFERRED_TO_QUEUE): SessionState.WAITING,
    (SessionState.WAITING, SessionEvent.LEFT): SessionState.NOT_QUEUED,
    (SessionState.CONNECTED, SessionEvent.LEFT): SessionState.NOT_QUEUED,
    # Leaving is idempotent (an overflow closes the wait when commanded and when served).
    (SessionState.NOT_QUEUED, SessionEvent.LEFT): SessionState.NOT_QUEUED,
}


@dataclass(eq=False, kw_only=True)
class _Session:
    """One caller handed to the queue task (across transfers between queues)."""

    call: Call
    task: StartTask
    queue: str
    events: asyncio.Queue[tuple[str, Any]] = field(default_factory=asyncio.Queue)
    state: SessionState = SessionState.NOT_QUEUED
    enqueued_at: float = 0.0
    offered_at: float | None = None
    answered_at: float | None = None
    bridged_at: float | None = None
    agent_id: str | None = None
    agent_leg: OutboundLeg | None = None
    bridge: Bridge | None = None
    hold_since: float | None = None
    wait_total: float = 0.0
    ring_total: float = 0.0
    whisper_total: float = 0.0
    talk_total: float = 0.0
    hold_total: float = 0.0
    transfers: list[dict[str, Any]] = field(default_factory=list)
    hold_prompt: Prompt | None = None
    finished: bool = False

    def move(self, event: SessionEvent) -> SessionState:
        """Apply ``event`` by :data:`SESSION_TRANSITIONS`, else raise."""
        target = SESSION_TRANSITIONS.get((self.state, event))
        if target is None:
            raise IllegalSessionTransition(self.state, event)
        self.state = target
        return target


@dataclass(eq=False, kw_only=True)
class _Offer:
    command: OfferCall
    sip_call_ids: list[str] = field(default_factory=list)
    cancelled: bool = False
    won: bool = False


class AcdRuntime:
    """The engine's ACD: queues, agents' phones, offers, whisper, bridge, transfers."""

    def __init__(self, engine: CallCore) -> None:
        self.engine = engine
        self.settings = engine.settings.acd
        self.acd = Acd(self.settings)
        self.phones = AgentPhones(engine, self)
        self._timer: asyncio.TimerHandle | None = None
        self._sessions: dict[str, _Session] = {}  # caller Call-ID -> session
        self._offers: dict[str, _Offer] = {}
        self._hold_prompts: dict[str, Prompt] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tone_server: Any = None
        self.tone_base_url: str | None = None

    @classmethod
    async def start(cls, engine: CallCore) -> AcdRuntime:
        runtime = cls(engine)
        await runtime.phones.start()
        if runtime.settings.tone_server is not None:
            await runtime._start_tone_server()
        return runtime

    async def close(self) -> None:
        self.phones.close()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._tone_server is not None:
            self._tone_server.close()
            await self._tone_server.wait_closed()
        for task in list(self._tasks):
            task.cancel()

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _spawn(self, work: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- the sans-IO plumbing ---------------------------------------------------------------

    def _kick(self) -> None:
        """Execute what the core asked for and re-arm the one timer."""
        for command in self.acd.drain():
            try:
                self._execute(command)
            except Exception:
                log.exception("ACD command failed", command=type(command).__name__)
        deadline = self.acd.get_timer()
        if self._timer is not None and (deadline is None or self._timer.when() != deadline):
            self._timer.cancel()
            self._timer = None
        if deadline is not None and self._timer is None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self.acd.handle_timer(self._now())
        self._kick()

    def _execute(self, command: Any) -> None:
        if isinstance(command, OfferCall):
            offer = _Offer(command=command)
            self._offers[command.offer_id] = offer
            self._spawn(self._run_offer(offer))
        elif isinstance(command, CancelOffer):
            self._cancel_offer(command)
        elif isinstance(command, Overflow):
            session = self._sessions.get(command.call_id)
            if session is not None:
                self._close_wait(session)
                session.events.put_nowait(("overflow", command))
        elif isinstance(command, AnnouncePosition):
            session = self._sessions.get(command.call_id)
            if session is not None:
                text = _position_text(command.position, command.estimated_wait_seconds)
                if text:
                    self._spawn(self._announce(session, AudioSource(tts=text)))
        elif isinstance(command, PlayPeriodicAnnouncement):
            session = self._sessions.get(command.call_id)
            if session is not None:
                self._spawn(self._announce(session, command.audio))
        elif isinstance(command, AgentStateChanged):
            log.info(
                "agent state",
                agent=command.agent_id,
                old=command.old.value,
                new=command.new.value,
                cause=command.event.value,
                call_id=command.call_id,
            )
            self.engine.events.publish(
                AgentStateEvent(
                    agent=command.agent_id,
                    state=command.new.value,
                    previous=command.old.value,
                    call_id=command.call_id,
                    reason=command.event.value,
                )
            )

    # ---- API (feature codes, admin API) -----------------------------------------------------

    def registration_changed(self, agent_id: str, contacts: int) -> None:
        now = self._now()
        self.acd.registration_changed(agent_id, contacts, now)
        if contacts and self.settings.log_in_on_register and not self.acd.agent(agent_id).logged_in:
            self.acd.log_in(agent_id, now)
        self._kick()

    def agent_command(self, agent_id: str, command: str) -> dict[str, Any]:
        """Log in/out, ready/not ready (``log_in``, ``log_out``, ``ready``, ``not_ready``).
        Raises ValueError (unknown command), ``ivr.acd.UnknownName`` (unknown agent) or
        ``ivr.acd.IllegalTransition`` (not allowed in the agent's state, e.g. log out on a
        call). Returns the agent's row as :meth:`snapshot_agents` shows it."""
        cmd = AgentCommand(command)
        try:
            self.acd.agent_command(agent_id, cmd, self._now())
        finally:
            self._kick()
        return next(row for row in self.snapshot_agents() if row["agent_id"] == agent_id)

    def snapshot_agents(self) -> list[dict[str, Any]]:
        """Per agent: state, registered contacts, idle seconds, current call, queues."""
        rows = self.acd.agents_snapshot(self._now())
        for row in rows:
            row["bindings"] = [
                {
                    "contact": b.contact,
                    "transport": b.flow.transport,
                    "source": f"{b.flow.remote[0]}:{b.flow.remote[1]}",
                    "expires_in": b.expires_in(self._now()),
                }
                for b in self.phones.bindings(row["agent_id"])
            ]
        return rows

    def snapshot_queues(self) -> list[dict[str, Any]]:
        """Per queue: callers waiting, longest wait, agents logged in/available/on call,
        answered/abandoned/overflowed, average wait and handle time."""
        return self.acd.queue_snapshot(self._now())

    def snapshot_calls(self) -> list[dict[str, Any]]:
        """Every queued or connected call: queue, status (waiting, ringing, whisper,
        bridged), position, priority, wait so far, agent(s), caller, transfers."""
        rows = self.acd.calls_snapshot(self._now())
        for row in rows:
            session = self._sessions.get(row["call_id"])
            if session is not None:
                row["caller"] = session.call.caller_number
                row["menu_path"] = session.call.menu_path
                row["on_hold"] = session.hold_since is not None
        return rows

    def bridge_of(self, agent_id: str) -> Bridge | None:
        """The running bridge of the agent's current call (monitoring taps attach here)."""
        for session in self._sessions.values():
            if session.agent_id == agent_id and session.bridge is not None:
                return session.bridge
        return None

    # ---- the queue task ---------------------------------------------------------------------

    async def run(self, call: Call, task: StartTask) -> TaskResult:
        queue = str(task.params.get("queue") or "")
        if self.settings.queue(queue) is None:
            call.log.error("unknown queue", queue=queue)
            return TaskResult("failed")
        queue_or_result = await self._check_hours(call, task, queue)
        if isinstance(queue_or_result, TaskResult):
            return queue_or_result
        queue = queue_or_result
        if not await call.answer():
            return TaskResult("failed")
        session = _Session(call=call, task=task, queue=queue)
        if call.call_id in self._sessions:
            call.log.error("call is already queued")
            return TaskResult("failed")
        self._sessions[call.call_id] = session
        call.on_ended = lambda _leg: self._caller_ended(session)
        try:
            self._enqueue(session, queue, priority=task.params.get("priority"))
            return await self._serve(session)
        finally:
            self._finish(session)

    async def _check_hours(self, call: Call, task: StartTask, queue: str) -> str | TaskResult:
        """The queue to join, or the task's result when it is closed."""
        hours = self.engine.settings.hours
        if hours is None:
            return queue
        decision = is_open(hours, self.engine.now(), queue=queue, language=task.language)
        if decision.open:
            return queue
        call.log.info("queue closed", queue=queue, rule=decision.rule)
        result = await deflect_after_hours(call, queue, task)
        if result is None:
            return TaskResult("closed")
        other = result.data.get("deflect_queue") if result.result == "queue" else None
        if other and self.settings.queue(str(other)) is not None:
            return str(other)
        return result

    def _enqueue(self, session: _Session, queue: str, *, priority: Any = None) -> None:
        call, task = session.call, session.task
        now = self._now()
        session.queue = queue
        session.enqueued_at = now
        session.move(SessionEvent.ENQUEUED)
        call.queue = queue
        request = call.request
        caller_name = request.from_.display_name if request is not None else None
        profile: dict[str, bool | str] = {
            "verified_customer": call.profile.verified_customer,
            "bad_actor": call.profile.bad_actor,
            "repeat_customer": call.profile.repeat_customer,
            **dict(call.profile.extra),
        }
        position = self.acd.enqueue(
            call.call_id,
            queue,
            now=now,
            priority=int(priority) if priority is not None else None,
            menu_path=tuple(p for p in task.menu_path.split(" > ") if p),
            language=task.language,
            profile=profile,
            variables=dict(task.variables),
            caller_number=call.caller_number,
            caller_name=caller_name,
            transfers=len(session.transfers),
        )
        call.log.info("queued", queue=queue, position=position)
        self._publish_queue(queue)
        self._kick()

    async def _serve(self, session: _Session) -> TaskResult:
        call = session.call
        while True:
            await self._start_hold(session)
            kind, value = await session.events.get()
            if kind == "overflow":
                result = await self._overflow(session, value)
                if result is None:
                    continue
                return result
            if kind == "connected":
                leg, offer = value
                outcome = await self._connected(session, leg, offer)
                if outcome is None:
                    continue  # transferred to a queue, or the agent left during the whisper
                return outcome
            call.log.error("unexpected queue event", kind=kind)
            return TaskResult("failed")

    async def _overflow(self, session: _Session, command: Overflow) -> TaskResult | None:
        call = session.call
        self._close_wait(session)
        call.log.info(
            "queue overflow", queue=command.queue, target=command.target, reason=command.reason
        )
        session.transfers.append(
            {
                "kind": "overflow",
                "from": command.queue,
                "to": command.target,
                "reason": command.reason,
            }
        )
        if command.kind == "queue":
            self._enqueue(session, command.name)
            return None
        if call.rtp is not None:
            call.rtp.stop_playback()
        if command.kind == "voicemail":
            return await leave_voicemail(call, command.name, task=session.task)
        return TaskResult("overflow", {"target": command.target})

    # ---- caller audio -----------------------------------------------------------------------

    async def _render_audio(self, audio: AudioSource, language: str | None) -> Prompt:
        engine = self.engine
        if audio.file is not None:
            path = Path(audio.file)
            if not path.is_absolute():
                path = Path(engine.settings.media.prompts_dir) / path
            return await asyncio.get_running_loop().run_in_executor(
                None, engine.prompts.from_file, path
            )
        if audio.tts is not None:
            return await engine.tts(audio.tts, voice=audio.voice, language=language)
        assert audio.tone is not None
        parts = [tone(audio.tone, audio.ms)]
        if audio.pause_ms:
            parts.append(silence(audio.pause_ms))
        return concat(*parts)

    async def _hold_prompt(self, queue: str, language: str | None) -> Prompt:
        prompt = self._hold_prompts.get(queue)
        if prompt is not None:
            return prompt
        config = self.settings.queue(queue)
        if config is not None and config.hold_audio is not None:
            try:
                prompt = await self._render_audio(config.hold_audio, language)
            except MediaError as exc:
                log.error("hold audio unusable; default chime", queue=queue, error=str(exc))
        if prompt is None:
            prompt = concat(*[tone((f,), ms) if f else silence(ms) for f, ms in _DEFAULT_HOLD])
        self._hold_prompts[queue] = prompt
        return prompt

    async def _start_hold(self, session: _Session) -> None:
        call = session.call
        session.hold_prompt = await self._hold_prompt(session.queue, session.task.language)
        if call.rtp is not None and call.bridge is None and session.state is SessionState.WAITING:
            call.rtp.play(session.hold_prompt, loop=True)

    async def _announce(self, session: _Session, audio: AudioSource) -> None:
        """Interrupt the hold audio with an announcement, then resume the hold audio."""
        try:
            prompt = await self._render_audio(audio, session.task.language)
        except MediaError as exc:
            session.call.log.error("announcement unusable", error=str(exc))
            return
        call = session.call
        if session.state is not SessionState.WAITING or call.rtp is None or call.bridge is not None:
            return
        hold = session.hold_prompt

        def resume() -> None:
            if (
                session.state is SessionState.WAITING
                and call.rtp is not None
                and call.bridge is None
                and hold is not None
            ):
                call.rtp.play(hold, loop=True)

        call.rtp.play(prompt, on_done=resume)

    # ---- offers -----------------------------------------------------------------------------

    def _offer_headers(self, command: OfferCall) -> list[tuple[str, str]]:
        headers = [("X-Switchhook-Queue", command.queue), ("X-Switchhook-Call-ID", command.call_id)]
        if command.menu_path:
            headers.append(("X-Switchhook-Menu-Path", " > ".join(command.menu_path)))
        if command.language:
            headers.append(("X-Switchhook-Language", command.language))
        profile = command.profile
        for flag, header in _FLAG_HEADER_OF.items():
            headers.append((header, "true" if profile.get(flag) else "false"))
        for header, name in self.engine.settings.profile.headers.items():
            value = profile.get(name)
            if value not in (None, "", False) and name not in _FLAG_HEADER_OF:
                headers.append((header, str(value)))
            elif name in _FLAG_HEADER_OF and header not in FLAG_HEADERS:
                headers.append((header, "true" if value else "false"))
        session = self._sessions.get(command.call_id)
        if session is not None and session.call.request is not None:
            uui = session.call.request.headers.get(USER_TO_USER)
            if uui:
                headers.append((USER_TO_USER, uui))
        if command.ring_tone:
            headers.append(("Alert-Info", f"<{self._ring_tone_url(command.ring_tone)}>"))
        return headers

    def _ring_tone_url(self, ring_tone: str) -> str:
        if ring_tone.startswith(("http://", "https://")) or self.tone_base_url is None:
            return ring_tone
        return f"{self.tone_base_url}/{ring_tone.lstrip('/')}"

    def _local_host(self) -> str:
        advertised = self.engine.settings.sip.public_address
        if advertised is not None:
            return str(advertised)
        return self.engine.listening[0][1] if self.engine.listening else "127.0.0.1"

    async def _run_offer(self, offer: _Offer) -> None:
        command = offer.command
        try:
            await self._ring_agent(offer)
        finally:
            self._offers.pop(command.offer_id, None)

    async def _ring_agent(self, offer: _Offer) -> None:
        command = offer.command
        engine = self.engine
        bindings = self.phones.bindings(command.agent_id)
        session = self._sessions.get(command.call_id)
        if not bindings or session is None:
            self.acd.offer_failed(command.call_id, command.agent_id, self._now(), missed=False)
            self._kick()
            return
        if command.sms_number and self.settings.sms_gateway is not None:
            self._spawn(self._send_sms(command))
        number = command.caller_number or "anonymous"
        display = (command.caller_name or number).replace('"', "'")
        from_uri = f'"{display}" <sip:{number}@{self._local_host()}>'
        headers = tuple(self._offer_headers(command))
        timeout = max(1.0, command.deadline - self._now()) + _OFFER_GRACE_SECONDS
        attempts: list[asyncio.Task[OutboundLeg]] = []
        for binding in bindings:
            sip_call_id = f"{secrets.token_hex(12)}"
            offer.sip_call_ids.append(sip_call_id)
            attempts.append(
                asyncio.ensure_future(
                    engine.originate(
                        request_uri=binding.contact,
                        to_uri=f"<{binding.aor}>",
                        from_uri=from_uri,
                        destination=binding.flow.remote,
                        flow=binding.flow,
                        headers=headers,
                        timeout=timeout,
                        call_id=sip_call_id,
                    )
                )
            )
        session.call.log.info(
            "offer",
            agent=command.agent_id,
            offer_id=command.offer_id,
            contacts=len(bindings),
            attempt=command.attempt,
        )
        winner: OutboundLeg | None = None
        statuses: list[int] = []
        pending: set[asyncio.Future[OutboundLeg]] = set(attempts)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for attempt in done:
                    exc = attempt.exception()
                    if exc is not None:
                        statuses.append(getattr(exc, "status_code", 500))
                        continue
                    leg = attempt.result()
                    if winner is not None or offer.cancelled:
                        leg.hangup("offer withdrawn")
                        continue
                    winner = leg
                    # First 200 wins: CANCEL the agent's other phones.
                    for other in list(pending):
                        other.add_done_callback(_hang_up_if_answered)
                    self._cancel_sip_calls(offer, keep=leg.call_id)
                if winner is not None:
                    break
        finally:
            for attempt in pending:
                attempt.add_done_callback(_hang_up_if_answered)
        now = self._now()
        if winner is None:
            if not offer.cancelled:
                declined = any(s in (486, 600, 603) for s in statuses)
                session.call.log.info(
                    "offer failed", agent=command.agent_id, statuses=statuses, declined=declined
                )
                self.acd.offer_failed(command.call_id, command.agent_id, now, missed=True)
                self._kick()
            return
        accepted = self.acd.offer_accepted(command.call_id, command.agent_id, now)
        self._kick()
        if not accepted or session.finished:
            winner.hangup("offer withdrawn")
            return
        offer.won = True
        session.move(SessionEvent.AGENT_CONNECTED)
        session.events.put_nowait(("connected", (winner, offer)))

    def _cancel_sip_calls(self, offer: _Offer, *, keep: str | None = None) -> None:
        wanted = {c for c in offer.sip_call_ids if c != keep}
        if not wanted:
            return
        for leg in list(self.engine.outbound.values()):
            if leg.call_id in wanted:
                self.engine.hangup(leg, "offer cancelled")

    def _cancel_offer(self, command: CancelOffer) -> None:
        offer = self._offers.get(command.offer_id)
        if offer is None:
            return
        offer.cancelled = True
        log.info(
            "offer cancelled",
            call_id=command.call_id,
            agent=command.agent_id,
            reason=command.reason,
        )
        self._cancel_sip_calls(offer)

    async def _send_sms(self, command: OfferCall) -> None:
        gateway = self.settings.sms_gateway
        assert gateway is not None and command.sms_number is not None
        text = gateway.text.format(
            queue=command.queue_display_name,
            caller=command.caller_name or command.caller_number or "",
        )
        body = json.dumps(
            {
                "to": command.sms_number,
                "text": text,
                "call_id": command.call_id,
                "queue": command.queue,
                "agent_id": command.agent_id,
            }
        ).encode()

        def post() -> int:
            request = urllib.request.Request(
                gateway.url, data=body, method="POST", headers={"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=gateway.timeout_seconds) as response:
                return int(response.status)

        try:
            status = await asyncio.get_running_loop().run_in_executor(None, post)
            log.info(
                "offer sms sent", agent=command.agent_id, status=status, call_id=command.call_id
            )
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("offer sms failed", agent=command.agent_id, error=str(exc))

    # ---- connected: whisper, bridge, hold, transfer -----------------------------------------

    async def _whisper_prompt(self, session: _Session, queue: QueueConfig) -> Prompt | None:
        call = session.call
        items = build_whisper(
            queue,
            self.settings.whisper,
            call_type="Transferred call" if session.transfers else None,
            caller_number=call.caller_number,
            caller_name=call.request.from_.display_name,
            language=session.task.language,
            menu_path=tuple(p for p in call.menu_path.split(" > ") if p),
        )
        parts: list[Prompt] = []
        loop = asyncio.get_running_loop()
        for item in items:
            try:
                if isinstance(item, WhisperTts):
                    prompt = await self.engine.tts(item.text, language=session.task.language)
                else:
                    assert isinstance(item, WhisperFile)
                    path = Path(item.file)
                    if not path.is_absolute():
                        path = Path(self.engine.settings.media.prompts_dir) / path
                    prompt = await loop.run_in_executor(None, self.engine.prompts.from_file, path)
            except MediaError as exc:
                call.log.error("whisper item unusable", error=str(exc))
                continue
            if item.speed != 1.0:
                prompt = await loop.run_in_executor(None, time_stretch, prompt, item.speed)
            parts.append(prompt)
        return concat(*parts) if parts else None

    async def _connected(
        self, session: _Session, leg: OutboundLeg, offer: _Offer
    ) -> TaskResult | None:
        call, command = session.call, offer.command
        now = self._now()
        session.agent_id = command.agent_id
        session.agent_leg = leg
        session.offered_at = command.offered_at
        session.answered_at = now
        session.ring_total += now - command.offered_at
        call.agent = command.agent_id
        call.log.info(
            "agent answered",
            agent=command.agent_id,
            agent_call_id=leg.call_id,
            ring_seconds=round(now - command.offered_at, 3),
        )
        leg.on_reinvite = lambda _leg: self._agent_reinvite(session)
        leg.on_dialog = lambda event: self._agent_dialog(session, event)
        queue = self.settings.queue(session.queue)
        assert queue is not None
        whisper = await self._whisper_prompt(session, queue)
        if whisper is not None:
            call.log.info(
                "whisper", agent=command.agent_id, seconds=round(whisper.duration_ms / 1000, 3)
            )
            await leg.play(whisper)
        if leg.state is CallState.ENDED:
            # The agent left during the whisper: the caller keeps its place in the queue.
            self._connected_ended(session)
            call.log.info("agent left before the bridge; queued again", agent=command.agent_id)
            self._enqueue(session, session.queue)
            return None
        now = self._now()
        session.bridged_at = now
        session.whisper_total += now - (session.answered_at or now)
        session.wait_total += now - session.enqueued_at
        self.acd.call_bridged(call.call_id, now)
        self._kick()
        bridge = self.engine.bridge(call, leg)
        session.bridge = bridge
        call.log.info(
            "queue call bridged",
            queue=session.queue,
            agent=command.agent_id,
            wait_seconds=round(now - session.enqueued_at, 3),
            whisper_seconds=round(session.whisper_total, 3),
        )
        self._publish_queue(session.queue)
        transfer = asyncio.ensure_future(self._transfer_requested(session))
        caller_gone = asyncio.ensure_future(call.ended.wait())
        agent_gone = asyncio.ensure_future(leg.ended.wait())
        try:
            done, _ = await asyncio.wait(
                {transfer, caller_gone, agent_gone}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for future in (transfer, caller_gone, agent_gone):
                future.cancel()
        if transfer in done and not transfer.cancelled():
            return await self._do_transfer(session, transfer.result())
        self._unbridge(session)
        self._connected_ended(session)
        if call.state.value != "ended":
            call.hangup("agent hung up")
            return TaskResult("bridged", {"agent": command.agent_id})
        self.engine.hangup(leg, "caller hung up")
        return TaskResult("bridged", {"agent": command.agent_id})

    async def _transfer_requested(self, session: _Session) -> Any:
        while True:
            kind, value = await session.events.get()
            if kind == "transfer":
                return value

    def _unbridge(self, session: _Session) -> None:
        """Stop the bridge, close the talk (and hold) interval."""
        now = self._now()
        if session.hold_since is not None:
            session.hold_total += now - session.hold_since
            session.hold_since = None
        if session.bridged_at is not None:
            session.talk_total += now - session.bridged_at
            session.bridged_at = None
        bridge = session.bridge
        session.bridge = None
        if bridge is not None:
            bridge.stop()
        call, leg = session.call, session.agent_leg
        call.bridge = None
        if leg is not None:
            leg.bridge = None
            leg.on_dialog = None
            leg.on_reinvite = None

    def _connected_ended(self, session: _Session) -> None:
        if session.state is SessionState.CONNECTED:
            session.move(SessionEvent.LEFT)
            try:
                self.acd.call_ended(session.call.call_id, self._now())
            except UnknownCall:
                pass
            self._kick()

    def _agent_reinvite(self, session: _Session) -> None:
        leg, bridge = session.agent_leg, session.bridge
        if leg is None or leg.negotiated is None or bridge is None:
            return
        held = leg.negotiated.on_hold or not leg.negotiated.local_direction.receives
        now = self._now()
        if held and session.hold_since is None:
            session.hold_since = now
            bridge.hold(Side.CALLER, session.hold_prompt)
            session.call.log.info("agent hold", agent=session.agent_id)
        elif not held and session.hold_since is not None:
            session.hold_total += now - session.hold_since
            session.hold_since = None
            bridge.unhold(Side.CALLER)
            session.call.log.info("agent unhold", agent=session.agent_id)
        bridge.refresh()

    def _agent_dialog(self, session: _Session, event: sip.Event) -> bool:
        """REFER from the agent: a blind transfer (RFC 3515)."""
        if not isinstance(event, sip.InDialogRequestReceived):
            return False
        request = event.request
        if request.method != "REFER":
            return False
        engine, now = self.engine, self._now()
        refer_to = request.headers.get("Refer-To") or request.headers.get("r")
        try:
            target_uri = NameAddr.parse(refer_to or "").uri
        except (SipError, ValueError):
            engine.ua.respond(event.transaction_id, 400, now, reason="Bad Refer-To")
            return True
        user = target_uri.user or ""
        if target_uri.scheme == "tel":
            user = str(target_uri).split(":", 1)[1].split(";", 1)[0]
        names = [q.name for q in self.settings.queues]
        if user.startswith("queue-") and user.removeprefix("queue-") in names:
            user = "queue:" + user.removeprefix("queue-")
        try:
            target = check_transfer_target(
                user,
                queues=names,
                queue_visible=self._queue_visible,
                number_allowed=self._number_allowed,
            )
        except TransferRefused as exc:
            session.call.log.info(
                "transfer refused", target=user, reason=str(exc), status=exc.status
            )
            engine.ua.respond(event.transaction_id, exc.status, now)
            return True
        engine.ua.respond(event.transaction_id, 202, now)
        session.call.log.info(
            "transfer requested", agent=session.agent_id, kind=target.kind, target=target.value
        )
        session.events.put_nowait(("transfer", target))
        return True

    def _queue_visible(self, name: str) -> bool:
        engine = self.engine
        hours = engine.settings.hours
        if hours is None:
            return True
        from .hours import QueueState, deflection_enabled, transferable_queues

        rows = {row["queue"]: row for row in self.acd.queue_snapshot(self._now())}
        states = [
            QueueState(
                name=name,
                deflection_enabled=deflection_enabled(engine.settings.after_hours, name),
                agents_logged_in=rows.get(name, {}).get("agents_logged_in", 0),
            )
        ]
        options = transferable_queues(
            states,
            now=engine.now(),
            config=hours,
            allow_transfers_outside_hours=engine.settings.after_hours.allow_transfers_outside_hours,
        )
        return bool(options)

    def transfer_targets(self) -> list[dict[str, Any]]:
        """The queues an agent may transfer to right now (the after-hours transfer rules:
        ``ivr.hours.transferable_queues``), each with the reason it is listed."""
        engine = self.engine
        rows = {row["queue"]: row for row in self.acd.queue_snapshot(self._now())}
        names = [q.name for q in engine.settings.acd.queues]
        hours = engine.settings.hours
        if hours is None:
            return [
                {"queue": name, "reason": "no business hours configured: always open"}
                for name in names
            ]
        from .hours import QueueState, deflection_enabled, transferable_queues

        states = [
            QueueState(
                name=name,
                deflection_enabled=deflection_enabled(engine.settings.after_hours, name),
                agents_logged_in=rows.get(name, {}).get("agents_logged_in", 0),
            )
            for name in names
        ]
        options = transferable_queues(
            states,
            now=engine.now(),
            config=hours,
            allow_transfers_outside_hours=engine.settings.after_hours.allow_transfers_outside_hours,
        )
        return [
            {"queue": o.queue, "reason": str(getattr(o.reason, "value", o.reason))} for o in options
        ]

    def _number_allowed(self, number: str) -> bool:
        # Outside numbers need an outbound trunk to leave through.
        return any(getattr(t, "outbound", None) for t in self.engine.settings.trunks)

    async def _do_transfer(self, session: _Session, target: Any) -> TaskResult | None:
        call, leg = session.call, session.agent_leg
        assert leg is not None
        now = self._now()
        self._unbridge(session)
        entry = {
            "kind": "agent_transfer",
            "agent": session.agent_id,
            "to": f"{target.kind}:{target.value}",
            "from": session.queue,
        }
        session.transfers.append(entry)
        self._notify_sipfrag(leg, b"SIP/2.0 200 OK\r\n")
        self._spawn(self._bye_transferor(session, leg))
        if target.kind == "queue":
            session.move(SessionEvent.TRANSFERRED_TO_QUEUE)
            session.queue = target.value
            session.enqueued_at = now
            call.queue = target.value
            self.acd.transfer_to_queue(call.call_id, target.value, now)
            call.log.info("transferred to queue", queue=target.value, agent=session.agent_id)
            session.agent_id = None
            session.agent_leg = None
            self._publish_queue(target.value)
            self._kick()
            return None
        self._connected_ended(session)
        session.agent_id = None
        session.agent_leg = None
        return await transfer_to_number(call, target.value, None, "bridge")

    def _notify_sipfrag(self, leg: OutboundLeg, frag: bytes) -> None:
        """RFC 3515 §2.4.5: the transfer's outcome as a message/sipfrag NOTIFY."""
        engine = self.engine
        if engine.endpoint is None or leg.state is CallState.ENDED:
            return
        try:
            engine.endpoint.run_command(
                lambda now: engine.ua.send_in_dialog(
                    leg.leg_id,
                    "NOTIFY",
                    now,
                    headers=[
                        ("Event", "refer"),
                        ("Subscription-State", "terminated;reason=noresource"),
                    ],
                    body=frag,
                    content_type="message/sipfrag;version=2.0",
                )
            )
        except SipError as exc:
            leg.log.warning("NOTIFY not sent", error=str(exc))

    async def _bye_transferor(self, session: _Session, leg: OutboundLeg) -> None:
        """The transferor normally hangs up after the NOTIFY; end its leg if it does not."""
        try:
            await asyncio.wait_for(leg.ended.wait(), _REFER_BYE_AFTER_SECONDS)
        except TimeoutError:
            self.engine.hangup(leg, "transferred")

    # ---- ending -----------------------------------------------------------------------------

    def _close_wait(self, session: _Session) -> None:
        if session.state is SessionState.WAITING:
            session.wait_total += self._now() - session.enqueued_at
        session.move(SessionEvent.LEFT)

    def _caller_ended(self, session: _Session) -> None:
        """The caller's leg ended (synchronously, before its call record is written)."""
        now = self._now()
        call = session.call
        if session.state is SessionState.WAITING:
            session.wait_total += now - session.enqueued_at
            session.move(SessionEvent.LEFT)
            try:
                self.acd.abandon(call.call_id, now)
            except UnknownCall:
                pass
            call.log.info(
                "queue call abandoned",
                queue=session.queue,
                wait_seconds=round(now - session.enqueued_at, 3),
            )
            self._kick()
        elif session.state is SessionState.CONNECTED:
            if session.bridged_at is None:
                # Gone during the whisper: the whole wait counts.
                session.wait_total += now - session.enqueued_at
            self._unbridge(session)
            self._connected_ended(session)
            if session.agent_leg is not None:
                self.engine.hangup(session.agent_leg, "caller hung up")
        self._write_metrics(session, report=False)

    def _finish(self, session: _Session) -> None:
        call = session.call
        if session.finished:
            return
        if session.state is SessionState.WAITING:
            session.wait_total += self._now() - session.enqueued_at
            try:
                self.acd.abandon(call.call_id, self._now())
            except UnknownCall:
                pass
            session.move(SessionEvent.LEFT)
            self._kick()
        elif session.state is SessionState.CONNECTED:
            self._unbridge(session)
            self._connected_ended(session)
        self._write_metrics(session)
        session.finished = True
        self._sessions.pop(call.call_id, None)
        if call.on_ended is not None:
            call.on_ended = None
        self._publish_queue(session.queue)

    def _write_metrics(self, session: _Session, *, report: bool = True) -> None:
        call = session.call
        if session.bridged_at is not None:
            now = self._now()
            if session.hold_since is not None:
                session.hold_total += now - session.hold_since
                session.hold_since = None
            session.talk_total += now - session.bridged_at
            session.bridged_at = None
        talk = max(0.0, session.talk_total - session.hold_total)
        earlier = [
            t
            for t in call.metrics.get("transfers", ())
            if t.get("kind") not in ("overflow", "agent_transfer")
        ]
        call.metrics.update(
            {
                "wait_seconds": round(session.wait_total, 3),
                "ring_seconds": round(session.ring_total, 3),
                "talk_seconds": round(talk, 3),
                "hold_seconds": round(session.hold_total, 3),
                "transfers": (*earlier, *session.transfers),
            }
        )
        if not report:
            return
        call.log.info(
            "queue call metrics",
            queue=session.queue,
            agent=call.agent,
            wait_seconds=round(session.wait_total, 3),
            ring_seconds=round(session.ring_total, 3),
            whisper_seconds=round(session.whisper_total, 3),
            talk_seconds=round(talk, 3),
            hold_seconds=round(session.hold_total, 3),
            transfers=len(session.transfers),
        )

    def _publish_queue(self, queue: str) -> None:
        row = next((r for r in self.acd.queue_snapshot(self._now()) if r["queue"] == queue), None)
        if row is not None:
            self.engine.events.publish(
                QueueUpdated(
                    queue=queue,
                    waiting=row["callers_waiting"],
                    longest_wait_seconds=row["longest_wait_seconds"],
                    agents_available=row["agents_available"],
                    answered=row["answered"],
                    abandoned=row["abandoned"],
                )
            )

    # ---- ring tones over HTTP ---------------------------------------------------------------

    async def _start_tone_server(self) -> None:
        """A minimal static file server (GET/HEAD of ``tone_server.dir``/*.mp3|*.wav) for
        ``Alert-Info`` ring tones."""
        config = self.settings.tone_server
        assert config is not None
        host, port_text = config.listen.rsplit(":", 1)
        directory = Path(config.dir)
        if not directory.is_absolute() and self.engine.config_path is not None:
            directory = self.engine.config_path.parent / directory
        directory = directory.resolve()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                line = await asyncio.wait_for(reader.readline(), 5)
                while (await asyncio.wait_for(reader.readline(), 5)) not in (b"\r\n", b"\n", b""):
                    pass
                parts = line.decode("latin-1").split()
                status, body, ctype = 404, b"not found\n", "text/plain"
                if len(parts) >= 2 and parts[0] in ("GET", "HEAD"):
                    name = parts[1].split("?", 1)[0].lstrip("/")
                    path = (directory / name).resolve()
                    if (
                        path.parent == directory
                        and path.suffix.lower() in (".mp3", ".wav")
                        and path.is_file()
                    ):
                        status, body = 200, path.read_bytes()
                        ctype = "audio/mpeg" if path.suffix.lower() == ".mp3" else "audio/wav"
                    if parts[0] == "HEAD":
                        body = b"" if status != 200 else body
                head = (
                    f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                ).encode()
                writer.write(head + (body if parts and parts[0] != "HEAD" else b""))
                await writer.drain()
            except (TimeoutError, ConnectionError, OSError):
                pass
            finally:
                writer.close()

        self._tone_server = await asyncio.start_server(handle, host, int(port_text))
        bound = self._tone_server.sockets[0].getsockname()
        self.tone_base_url = (
            config.base_url.rstrip("/") if config.base_url else f"http://{bound[0]}:{bound[1]}"
        )
        log.info("ring tones served", url=self.tone_base_url, dir=str(directory))


def _hang_up_if_answered(attempt: asyncio.Future[Any]) -> None:
    """A late 200 from a contact that lost the race: hang it up."""
    if attempt.cancelled() or attempt.exception() is not None:
        return
    attempt.result().hangup("answered elsewhere")


def _position_text(position: int | None, wait: float | None) -> str:
    parts: list[str] = []
    if position is not None:
        parts.append(f"You are number {position} in the queue.")
    if wait is not None:
        minutes = round(wait / 60)
        parts.append(
            "Your estimated wait is less than a minute."
            if minutes < 1
            else f"Your estimated wait is about {minutes} minute{'s' if minutes != 1 else ''}."
        )
    return " ".join(parts)


async def queue_task(call: Call, task: StartTask) -> TaskResult:
    """The flow's ``queue`` node (see :class:`AcdRuntime`)."""
    runtime = call.engine.acd_runtime
    if runtime is None:
        return TaskResult("failed")
    result: TaskResult = await runtime.run(call, task)
    return result


# The flow tasks this module provides (registered by the engine's composition).
TASKS: Mapping[str, TaskHandler] = {"queue": queue_task}
