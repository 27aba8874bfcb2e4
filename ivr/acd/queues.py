"""The ACD core: queues of waiting callers, agents, offers and their timers. Sans-IO.

:class:`Acd` never reads a clock, opens a socket or sleeps. Every entry point takes ``now``
(seconds on the engine's monotonic clock); the engine drains the resulting commands with
:meth:`Acd.drain`, and arms ONE timer at :meth:`Acd.get_timer`, calling
:meth:`Acd.handle_timer` when it fires (the aioquic pattern).

Matching runs after every entry point: waiting callers, highest priority first then FIFO
across all queues, are offered to offerable agents (AVAILABLE, registered, not inside a
re-notify pause) chosen by the queue's strategy (:mod:`ivr.acd.strategies`). Because callers are
taken in that global order, an agent in several queues gets the highest-priority, then oldest,
caller among its queues. A caller is offered to one agent at a time (all of them for
ring-all); an agent who misses a caller's offer is skipped for that caller until every other
offerable agent has had it (the rotation), then the rotation starts again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .agents import Agent, AgentCommand, AgentEvent, AgentState, Transition
from .commands import (
    AcdCommand,
    AgentStateChanged,
    AnnouncePosition,
    CancelOffer,
    CancelReason,
    OfferCall,
    Overflow,
    OverflowReason,
    PlayPeriodicAnnouncement,
)
from .errors import LocalProtocolError, UnknownCall, UnknownName
from .metrics import QueueCounters
from .models import AcdSettings, AgentConfig, QueueConfig, parse_overflow_target
from .strategies import Candidate, choose_agents

__all__ = ["Acd", "caller_priority"]

_FALSE_TEXT = frozenset({"", "false", "no", "0"})


def _truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_TEXT
    return bool(value)


def caller_priority(
    queue: QueueConfig, profile: Mapping[str, object], variables: Mapping[str, object]
) -> int:
    """The highest priority among the queue's rules that match, else 0.

    A rule matches when any of its names is truthy: ``profile.<field>`` reads the caller
    profile, any other name a flow variable. Missing names are false.
    """
    best = 0
    for rule in queue.priority_rules:
        for name in rule.when:
            if name.startswith("profile."):
                value = profile.get(name.removeprefix("profile."))
            else:
                value = variables.get(name)
            if _truthy(value):
                best = max(best, rule.priority)
                break
    return best


@dataclass(frozen=True, slots=True, kw_only=True)
class _CallInfo:
    caller_number: str | None
    caller_name: str | None
    menu_path: tuple[str, ...]
    language: str | None
    profile: Mapping[str, bool | str]
    variables: Mapping[str, object]


@dataclass(slots=True, kw_only=True)
class _Offer:
    offer_id: str
    agent_id: str
    started_at: float
    deadline: float


@dataclass(slots=True, kw_only=True)
class _Waiting:
    call_id: str
    queue: str
    seq: int
    priority: int
    enqueued_at: float
    info: _CallInfo
    transfers: int
    attempts: int = 0
    tried: set[str] = field(default_factory=set)
    offers: dict[str, _Offer] = field(default_factory=dict)
    next_periodic_at: float | None = None
    next_position_at: float | None = None
    overflow_at: float | None = None

    @property
    def order(self) -> tuple[int, float, int]:
        return (-self.priority, self.enqueued_at, self.seq)


@dataclass(slots=True, kw_only=True)
class _Connected:
    call_id: str
    queue: str
    agent_id: str
    priority: int
    enqueued_at: float
    offered_at: float
    accepted_at: float
    info: _CallInfo
    transfers: int
    bridged_at: float | None = None


@dataclass(slots=True, kw_only=True)
class _AgentSlot:
    agent: Agent
    config: AgentConfig
    renotify_at: float | None = None
    wrap_up_until: float | None = None
    call_id: str | None = None
    handle_queue: str | None = None
    handle_started: float | None = None


@dataclass(slots=True, kw_only=True)
class _QueueState:
    config: QueueConfig
    members: tuple[str, ...]  # agent ids in config order
    counters: QueueCounters
    pointer: int | None = None  # round robin: member order of the agent offered last


class Acd:
    """Queues, agents and offers for one engine. See the module docstring for the rules."""

    def __init__(self, settings: AcdSettings) -> None:
        self._settings = settings
        self._agents: dict[str, _AgentSlot] = {
            a.id: _AgentSlot(agent=Agent(a.id), config=a) for a in settings.agents
        }
        self._queues: dict[str, _QueueState] = {}
        for queue in settings.queues:
            members = tuple(a.id for a in settings.agents if a.level_in(queue.name) is not None)
            self._queues[queue.name] = _QueueState(
                config=queue, members=members, counters=QueueCounters()
            )
        self._waiting: dict[str, _Waiting] = {}
        self._connected: dict[str, _Connected] = {}
        self._commands: list[AcdCommand] = []
        self._seq = 0
        self._offer_seq = 0
        codes = settings.feature_codes
        self._feature_codes: Mapping[str, AgentCommand] = MappingProxyType(
            {
                codes.log_in: AgentCommand.LOG_IN,
                codes.log_out: AgentCommand.LOG_OUT,
                codes.ready: AgentCommand.READY,
                codes.not_ready: AgentCommand.NOT_READY,
            }
        )

    # ----------------------------------------------------------------------------------------
    # sans-IO plumbing

    def drain(self) -> list[AcdCommand]:
        """Commands produced since the last drain, in the order to execute them."""
        commands, self._commands = self._commands, []
        return commands

    def get_timer(self) -> float | None:
        """The earliest deadline the engine must call :meth:`handle_timer` at, or None."""
        deadlines: list[float] = []
        for waiting in self._waiting.values():
            deadlines.extend(o.deadline for o in waiting.offers.values())
            for deadline in (
                waiting.next_periodic_at,
                waiting.next_position_at,
                waiting.overflow_at,
            ):
                if deadline is not None:
                    deadlines.append(deadline)
        for slot in self._agents.values():
            if slot.wrap_up_until is not None:
                deadlines.append(slot.wrap_up_until)
            if slot.renotify_at is not None:
                deadlines.append(slot.renotify_at)
        return min(deadlines) if deadlines else None

    def handle_timer(self, now: float) -> None:
        """Fire every deadline at or before ``now``: offer timeouts, wrap-up ends, re-notify
        pauses, max waits and announcements; then match callers to agents."""
        for waiting in sorted(self._waiting.values(), key=lambda w: w.order):
            for offer in sorted(waiting.offers.values(), key=lambda o: o.agent_id):
                if offer.deadline <= now:
                    self._offer_missed(waiting, offer, now, cancel="timeout")
        for slot in self._agents.values():
            if slot.wrap_up_until is not None and slot.wrap_up_until <= now:
                self._apply(slot, AgentEvent.WRAP_UP_END, now)
            if slot.renotify_at is not None and slot.renotify_at <= now:
                slot.renotify_at = None
        for waiting in sorted(self._waiting.values(), key=lambda w: w.order):
            queue = self._queues[waiting.queue].config
            if waiting.overflow_at is not None and waiting.overflow_at <= now:
                self._overflow(waiting, "max_wait", now)
                continue
            if waiting.next_periodic_at is not None and waiting.next_periodic_at <= now:
                announcement = queue.periodic_announcement
                assert announcement is not None
                self._commands.append(
                    PlayPeriodicAnnouncement(
                        call_id=waiting.call_id, queue=waiting.queue, audio=announcement.audio
                    )
                )
                waiting.next_periodic_at = _next_tick(
                    waiting.next_periodic_at, announcement.every_seconds, now
                )
            if waiting.next_position_at is not None and waiting.next_position_at <= now:
                self._announce_position(waiting)
                waiting.next_position_at = _next_tick(
                    waiting.next_position_at, queue.position_every_seconds, now
                )
        self._dispatch(now)

    # ----------------------------------------------------------------------------------------
    # agents

    def agent(self, agent_id: str) -> Agent:
        """The agent's state machine, for reading (state, idle_since, registered...)."""
        return self._slot(agent_id).agent

    def agent_command(self, agent_id: str, command: AgentCommand, now: float) -> None:
        """Log in/out, ready/not ready, from the API or a feature code. Raises
        IllegalTransition when the agent's state does not allow it (e.g. log out on a call).

        Logging out or going not ready while ringing withdraws the offer (not a miss) and the
        caller is offered elsewhere; during wrap-up, ready ends wrap-up early.
        """
        slot = self._slot(agent_id)
        offered = slot.agent.state is AgentState.OFFERED
        event = {
            AgentCommand.LOG_IN: AgentEvent.LOG_IN,
            AgentCommand.LOG_OUT: AgentEvent.LOG_OUT,
            AgentCommand.READY: AgentEvent.READY,
            AgentCommand.NOT_READY: AgentEvent.NOT_READY,
        }[command]
        if not slot.agent.can(event):
            slot.agent.apply(event, now)  # raises IllegalTransition
        if offered:
            reason: CancelReason = (
                "agent_logged_out" if command is AgentCommand.LOG_OUT else "agent_not_ready"
            )
            self._cancel_agent_offer(slot, reason)
        self._apply(slot, event, now)
        self._dispatch(now)

    def log_in(self, agent_id: str, now: float, *, ready: bool = True) -> None:
        """Log in as AVAILABLE, or as NOT_READY with ``ready=False``."""
        slot = self._slot(agent_id)
        if ready:
            self.agent_command(agent_id, AgentCommand.LOG_IN, now)
        else:
            self._apply(slot, AgentEvent.LOG_IN_NOT_READY, now)

    def feature_code(self, agent_id: str, digits: str, now: float) -> AgentCommand | None:
        """Apply the feature code an agent dialled; None when ``digits`` is not one (the
        engine routes the call normally)."""
        command = self._feature_codes.get(digits)
        if command is not None:
            self.agent_command(agent_id, command, now)
        return command

    def registration_changed(self, agent_id: str, contacts: int, now: float) -> None:
        """The registrar now holds ``contacts`` live bindings for this agent. With none, the
        agent stays in its state but is not offered calls; a ringing offer is withdrawn."""
        slot = self._slot(agent_id)
        if not slot.agent.set_contacts(contacts):
            return
        if not slot.agent.registered and slot.agent.state is AgentState.OFFERED:
            self._cancel_agent_offer(slot, "registration_lost")
            self._apply(slot, AgentEvent.WITHDRAW, now)
        self._dispatch(now)

    # ----------------------------------------------------------------------------------------
    # callers

    def enqueue(
        self,
        call_id: str,
        queue: str,
        *,
        now: float,
        priority: int | None = None,
        menu_path: Sequence[str] = (),
        language: str | None = None,
        profile: Mapping[str, bool | str] | None = None,
        variables: Mapping[str, object] | None = None,
        caller_number: str | None = None,
        caller_name: str | None = None,
        transfers: int = 0,
    ) -> int | None:
        """Put a caller in ``queue``; returns its 1-based position, or None when the queue is
        full (an :class:`Overflow` command says where the caller goes instead).

        ``priority`` None computes it from the queue's priority rules
        (:func:`caller_priority`).
        """
        state = self._queue(queue)
        if call_id in self._waiting or call_id in self._connected:
            raise LocalProtocolError(f"call {call_id!r} is already in the ACD")
        config = state.config
        profile = MappingProxyType(dict(profile or {}))
        variables = MappingProxyType(dict(variables or {}))
        if priority is None:
            priority = caller_priority(config, profile, variables)
        self._seq += 1
        waiting = _Waiting(
            call_id=call_id,
            queue=queue,
            seq=self._seq,
            priority=priority,
            enqueued_at=now,
            info=_CallInfo(
                caller_number=caller_number,
                caller_name=caller_name,
                menu_path=tuple(menu_path),
                language=language,
                profile=profile,
                variables=variables,
            ),
            transfers=transfers,
        )
        if config.max_queue_size is not None:
            if len(self.waiting_calls(queue)) >= config.max_queue_size:
                self._overflow(waiting, "queue_full", now, held=False)
                return None
        if config.max_wait_seconds is not None:
            waiting.overflow_at = now + config.max_wait_seconds
        if config.periodic_announcement is not None:
            waiting.next_periodic_at = now + config.periodic_announcement.every_seconds
        self._waiting[call_id] = waiting
        if config.announce_position or config.announce_estimated_wait:
            self._announce_position(waiting)
            waiting.next_position_at = now + config.position_every_seconds
        position = self.position(call_id)
        self._dispatch(now)
        return position

    def abandon(self, call_id: str, now: float) -> None:
        """The caller hung up while waiting or ringing: withdraw offers, forget the call.
        (A caller who hangs up during the whisper is :meth:`call_ended` instead.)"""
        waiting = self._waiting.pop(call_id, None)
        if waiting is None:
            raise UnknownCall(f"call {call_id!r} is not waiting in a queue")
        self._withdraw_offers(waiting, now, "abandoned")
        self._queues[waiting.queue].counters.record_abandoned()
        self._dispatch(now)

    def offer_accepted(self, call_id: str, agent_id: str, now: float) -> bool:
        """The agent answered the offer. True: the call is the agent's (ON_CALL); other
        ring-all offers are cancelled; the engine plays the whisper, then bridges and calls
        :meth:`call_bridged`. False: the offer was already withdrawn (a 200 OK crossing our
        CANCEL or the timeout): the engine must hang up the agent's leg."""
        waiting = self._waiting.get(call_id)
        offer = waiting.offers.get(agent_id) if waiting is not None else None
        if waiting is None or offer is None:
            return False
        slot = self._agents[agent_id]
        del waiting.offers[agent_id]
        self._withdraw_offers(waiting, now, "answered_elsewhere")
        del self._waiting[call_id]
        self._apply(slot, AgentEvent.ACCEPT, now, call_id=call_id)
        slot.renotify_at = None
        slot.call_id = call_id
        slot.handle_queue = waiting.queue
        slot.handle_started = now
        self._connected[call_id] = _Connected(
            call_id=call_id,
            queue=waiting.queue,
            agent_id=agent_id,
            priority=waiting.priority,
            enqueued_at=waiting.enqueued_at,
            offered_at=offer.started_at,
            accepted_at=now,
            info=waiting.info,
            transfers=waiting.transfers,
        )
        self._dispatch(now)
        return True

    def offer_failed(self, call_id: str, agent_id: str, now: float, *, missed: bool = True) -> None:
        """The offer ended without an answer before its deadline: the agent declined
        (486/603: ``missed=True``, counts towards not ready) or the INVITE failed for a reason
        that is not the agent's doing (``missed=False``). Stale offers are ignored."""
        waiting = self._waiting.get(call_id)
        offer = waiting.offers.get(agent_id) if waiting is not None else None
        if waiting is None or offer is None:
            return
        if missed:
            self._offer_missed(waiting, offer, now, cancel=None)
        else:
            del waiting.offers[agent_id]
            waiting.tried.add(agent_id)
            self._apply(self._agents[agent_id], AgentEvent.WITHDRAW, now, call_id=call_id)
        self._dispatch(now)

    def call_bridged(self, call_id: str, now: float) -> None:
        """Whisper and countdown are done and the caller is connected: the wait ends here."""
        connected = self._connected_call(call_id)
        if connected.bridged_at is not None:
            raise LocalProtocolError(f"call {call_id!r} is already bridged")
        connected.bridged_at = now
        self._queues[connected.queue].counters.record_answered(now - connected.enqueued_at)

    def call_ended(self, call_id: str, now: float) -> None:
        """The agent's call ended (either side hung up, or the agent transferred it away).
        The agent enters wrap-up for the queue's ``wrap_up_seconds`` (none: available at once).
        A caller who leaves before the bridge (during the whisper) counts as abandoned."""
        connected = self._connected.pop(call_id, None)
        if connected is None:
            raise UnknownCall(f"call {call_id!r} is not connected to an agent")
        if connected.bridged_at is None:
            self._queues[connected.queue].counters.record_abandoned()
        slot = self._agents[connected.agent_id]
        slot.call_id = None
        self._apply(slot, AgentEvent.CALL_END, now, call_id=call_id)
        slot.wrap_up_until = now + self._queues[connected.queue].config.wrap_up_seconds
        if slot.wrap_up_until <= now:
            self._apply(slot, AgentEvent.WRAP_UP_END, now)
        self._dispatch(now)

    def transfer_to_queue(self, call_id: str, queue: str, now: float) -> int | None:
        """Blind transfer of a connected call to ``queue`` (check the target first with
        :func:`ivr.acd.transfer.check_transfer_target`): the agent's call ends (wrap-up) and the
        caller joins ``queue`` with the same menu path, language, profile and variables, one
        more transfer counted. Returns the position, or None when the queue overflowed."""
        self._queue(queue)
        connected = self._connected_call(call_id)
        self.call_ended(call_id, now)
        info = connected.info
        return self.enqueue(
            call_id,
            queue,
            now=now,
            menu_path=info.menu_path,
            language=info.language,
            profile=info.profile,
            variables=info.variables,
            caller_number=info.caller_number,
            caller_name=info.caller_name,
            transfers=connected.transfers + 1,
        )

    # ----------------------------------------------------------------------------------------
    # queries

    def position(self, call_id: str) -> int:
        """1-based place of a waiting caller in its queue (priority, then arrival)."""
        waiting = self._waiting.get(call_id)
        if waiting is None:
            raise UnknownCall(f"call {call_id!r} is not waiting in a queue")
        return 1 + sum(
            1
            for other in self._waiting.values()
            if other.queue == waiting.queue and other.order < waiting.order
        )

    def waiting_calls(self, queue: str) -> list[str]:
        """Call ids waiting in ``queue`` (ringing ones included), in service order."""
        self._queue(queue)
        found = [w for w in self._waiting.values() if w.queue == queue]
        return [w.call_id for w in sorted(found, key=lambda w: w.order)]

    def staffed_agents(self, queue: str) -> int:
        """Agents of ``queue`` who are registered and working: available, ringing, on a call
        or in wrap-up (not logged out, not not-ready)."""
        working = {AgentState.AVAILABLE, AgentState.OFFERED, AgentState.ON_CALL, AgentState.WRAP_UP}
        return sum(
            1
            for agent_id in self._queue(queue).members
            if self._agents[agent_id].agent.registered
            and self._agents[agent_id].agent.state in working
        )

    def estimated_wait(self, queue: str, position: int) -> float | None:
        """Estimated wait for the caller at ``position``, in seconds:

            position x average handle time / staffed agents

        where the average handle time (answer -> end of wrap-up) is the mean of the queue's
        last HANDLE_TIME_SAMPLES calls and staffed agents is :meth:`staffed_agents`. None
        when there is no handled call yet or nobody is staffed: no estimate beats a made-up
        one.
        """
        state = self._queue(queue)
        handle = state.counters.average_handle
        staffed = self.staffed_agents(queue)
        if handle is None or staffed == 0:
            return None
        return position * handle / staffed

    def queue_snapshot(self, now: float) -> list[dict[str, Any]]:
        """Per queue, for ``switchhook queues`` and the admin API."""
        rows: list[dict[str, Any]] = []
        for name, state in self._queues.items():
            waiting = [w for w in self._waiting.values() if w.queue == name]
            slots = [self._agents[a] for a in state.members]
            counters = state.counters
            rows.append(
                {
                    "queue": name,
                    "strategy": state.config.strategy,
                    "callers_waiting": len(waiting),
                    "longest_wait_seconds": (
                        round(max(now - w.enqueued_at for w in waiting), 3) if waiting else 0.0
                    ),
                    "agents_logged_in": sum(1 for s in slots if s.agent.logged_in),
                    "agents_available": sum(1 for s in slots if s.agent.offerable),
                    "agents_on_call": sum(1 for s in slots if s.agent.state is AgentState.ON_CALL),
                    "answered": counters.answered,
                    "abandoned": counters.abandoned,
                    "overflowed": counters.overflowed,
                    "average_wait_seconds": _round(counters.average_wait),
                    "average_handle_seconds": _round(counters.average_handle),
                }
            )
        return rows

    def agents_snapshot(self, now: float) -> list[dict[str, Any]]:
        """Per agent, for the admin API."""
        rows: list[dict[str, Any]] = []
        for agent_id, slot in self._agents.items():
            agent = slot.agent
            rows.append(
                {
                    "agent_id": agent_id,
                    "display_name": slot.config.display_name,
                    "state": agent.state.value,
                    "registered": agent.registered,
                    "contacts": agent.contacts,
                    "idle_seconds": (
                        round(now - agent.idle_since, 3) if agent.idle_since is not None else None
                    ),
                    "missed_in_a_row": agent.missed_in_a_row,
                    "call_id": slot.call_id,
                    "queues": [m.queue for m in slot.config.queues],
                }
            )
        return rows

    def calls_snapshot(self, now: float) -> list[dict[str, Any]]:
        """Every call the ACD holds, waiting or connected, for ``switchhook calls``."""
        rows: list[dict[str, Any]] = []
        for waiting in sorted(self._waiting.values(), key=lambda w: w.order):
            rows.append(
                {
                    "call_id": waiting.call_id,
                    "queue": waiting.queue,
                    "status": "ringing" if waiting.offers else "waiting",
                    "position": self.position(waiting.call_id),
                    "priority": waiting.priority,
                    "wait_seconds": round(now - waiting.enqueued_at, 3),
                    "agents": sorted(waiting.offers),
                    "transfers": waiting.transfers,
                }
            )
        for connected in self._connected.values():
            rows.append(
                {
                    "call_id": connected.call_id,
                    "queue": connected.queue,
                    "status": "bridged" if connected.bridged_at is not None else "whisper",
                    "position": None,
                    "priority": connected.priority,
                    "wait_seconds": round(
                        (connected.bridged_at if connected.bridged_at is not None else now)
                        - connected.enqueued_at,
                        3,
                    ),
                    "agents": [connected.agent_id],
                    "transfers": connected.transfers,
                }
            )
        return rows

    # ----------------------------------------------------------------------------------------
    # internals

    def _slot(self, agent_id: str) -> _AgentSlot:
        try:
            return self._agents[agent_id]
        except KeyError:
            raise UnknownName(f"unknown agent {agent_id!r}") from None

    def _queue(self, name: str) -> _QueueState:
        try:
            return self._queues[name]
        except KeyError:
            raise UnknownName(f"unknown queue {name!r}") from None

    def _connected_call(self, call_id: str) -> _Connected:
        try:
            return self._connected[call_id]
        except KeyError:
            raise UnknownCall(f"call {call_id!r} is not connected to an agent") from None

    def _apply(
        self, slot: _AgentSlot, event: AgentEvent, now: float, *, call_id: str | None = None
    ) -> Transition:
        transition = slot.agent.apply(event, now)
        self._after_transition(slot, transition, call_id)
        return transition

    def _after_transition(
        self, slot: _AgentSlot, transition: Transition, call_id: str | None
    ) -> None:
        if transition.old is AgentState.WRAP_UP:
            slot.wrap_up_until = None
            if slot.handle_queue is not None and slot.handle_started is not None:
                self._queues[slot.handle_queue].counters.record_handle(
                    transition.at - slot.handle_started
                )
            slot.handle_queue = slot.handle_started = None
        if transition.new in (AgentState.LOGGED_OUT, AgentState.NOT_READY):
            slot.renotify_at = None
        self._commands.append(
            AgentStateChanged(
                agent_id=transition.agent_id,
                old=transition.old,
                new=transition.new,
                event=transition.event,
                at=transition.at,
                call_id=call_id,
            )
        )

    def _offer_missed(
        self, waiting: _Waiting, offer: _Offer, now: float, *, cancel: CancelReason | None
    ) -> None:
        del waiting.offers[offer.agent_id]
        if cancel is not None:
            self._commands.append(
                CancelOffer(
                    offer_id=offer.offer_id,
                    call_id=waiting.call_id,
                    agent_id=offer.agent_id,
                    reason=cancel,
                )
            )
        waiting.tried.add(offer.agent_id)
        slot = self._agents[offer.agent_id]
        config = self._queues[waiting.queue].config.offer
        transition = slot.agent.miss(now, limit=config.max_missed_offers_before_not_ready)
        self._after_transition(slot, transition, waiting.call_id)
        if config.renotify_every_seconds is not None and slot.agent.state is AgentState.AVAILABLE:
            slot.renotify_at = offer.started_at + config.renotify_every_seconds

    def _withdraw_offers(self, waiting: _Waiting, now: float, reason: CancelReason) -> None:
        for agent_id in sorted(waiting.offers):
            offer = waiting.offers.pop(agent_id)
            self._commands.append(
                CancelOffer(
                    offer_id=offer.offer_id,
                    call_id=waiting.call_id,
                    agent_id=agent_id,
                    reason=reason,
                )
            )
            self._apply(self._agents[agent_id], AgentEvent.WITHDRAW, now, call_id=waiting.call_id)

    def _cancel_agent_offer(self, slot: _AgentSlot, reason: CancelReason) -> None:
        """Withdraw the offer ringing ``slot``; the caller keeps its place."""
        for waiting in self._waiting.values():
            offer = waiting.offers.pop(slot.agent.agent_id, None)
            if offer is not None:
                self._commands.append(
                    CancelOffer(
                        offer_id=offer.offer_id,
                        call_id=waiting.call_id,
                        agent_id=offer.agent_id,
                        reason=reason,
                    )
                )
                return

    def _overflow(
        self, waiting: _Waiting, reason: OverflowReason, now: float, *, held: bool = True
    ) -> None:
        state = self._queues[waiting.queue]
        target = state.config.overflow
        assert target is not None  # the config requires it with max_wait or max_queue_size
        if held:
            self._withdraw_offers(waiting, now, "overflow")
            del self._waiting[waiting.call_id]
        kind, name = parse_overflow_target(target)
        state.counters.record_overflow()
        self._commands.append(
            Overflow(
                call_id=waiting.call_id,
                queue=waiting.queue,
                target=target,
                kind=kind,
                name=name,
                reason=reason,
            )
        )

    def _announce_position(self, waiting: _Waiting) -> None:
        config = self._queues[waiting.queue].config
        position = self.position(waiting.call_id)
        self._commands.append(
            AnnouncePosition(
                call_id=waiting.call_id,
                queue=waiting.queue,
                position=position if config.announce_position else None,
                estimated_wait_seconds=(
                    self.estimated_wait(waiting.queue, position)
                    if config.announce_estimated_wait
                    else None
                ),
            )
        )

    def _offerable(self, slot: _AgentSlot, now: float) -> bool:
        return slot.agent.offerable and (slot.renotify_at is None or slot.renotify_at <= now)

    def _dispatch(self, now: float) -> None:
        for waiting in sorted(self._waiting.values(), key=lambda w: w.order):
            if waiting.offers:
                continue  # one offer (or one ring-all round) at a time per caller
            state = self._queues[waiting.queue]
            candidates = self._candidates(state, now)
            if not candidates:
                continue
            fresh = [c for c in candidates if c.agent_id not in waiting.tried]
            if not fresh:
                # Everyone offerable has missed this caller: start the rotation again.
                waiting.tried.clear()
                fresh = candidates
            if state.config.strategy == "ring_all":
                fresh = candidates
            chosen = choose_agents(state.config.strategy, fresh, last_offered=state.pointer)
            waiting.attempts += 1
            for candidate in chosen:
                self._offer(waiting, state, candidate, now)

    def _candidates(self, state: _QueueState, now: float) -> list[Candidate]:
        found: list[Candidate] = []
        for order, agent_id in enumerate(state.members):
            slot = self._agents[agent_id]
            if not self._offerable(slot, now):
                continue
            idle = slot.agent.idle_since
            level = slot.config.level_in(state.config.name)
            assert idle is not None and level is not None
            found.append(Candidate(agent_id=agent_id, level=level, idle_since=idle, order=order))
        return found

    def _offer(
        self, waiting: _Waiting, state: _QueueState, candidate: Candidate, now: float
    ) -> None:
        config = state.config
        slot = self._agents[candidate.agent_id]
        self._offer_seq += 1
        offer = _Offer(
            offer_id=f"{waiting.call_id}/{self._offer_seq}",
            agent_id=candidate.agent_id,
            started_at=now,
            deadline=now + config.offer.timeout_seconds,
        )
        waiting.offers[candidate.agent_id] = offer
        state.pointer = candidate.order
        self._apply(slot, AgentEvent.OFFER, now, call_id=waiting.call_id)
        info = waiting.info
        self._commands.append(
            OfferCall(
                offer_id=offer.offer_id,
                call_id=waiting.call_id,
                agent_id=candidate.agent_id,
                queue=config.name,
                queue_display_name=config.spoken_name,
                offered_at=now,
                deadline=offer.deadline,
                attempt=waiting.attempts,
                ring_all=config.strategy == "ring_all",
                ring_tone=config.offer.ring_tone,
                sms_number=slot.config.sms_number if config.sms.enabled else None,
                caller_number=info.caller_number,
                caller_name=info.caller_name,
                menu_path=info.menu_path,
                language=info.language,
                profile=info.profile,
                priority=waiting.priority,
            )
        )


def _next_tick(previous: float, every: float, now: float) -> float:
    """The first tick of the series ``previous + k x every`` after ``now`` (a late engine
    skips missed ticks rather than bursting them)."""
    tick = previous + every
    while tick <= now:
        tick += every
    return tick


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
