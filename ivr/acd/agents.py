"""Agent state machine: every transition in one table (h11 ``_state.py`` style).

An :class:`Agent` holds one agent's ACD state, its registration (how many SIP contacts it has
right now), its idle-since time for longest-idle routing and its run of missed offers. It never
reads a clock: every entry point takes ``now``. The :class:`~ivr.acd.queues.Acd` drives it and
turns each change into an ``AgentStateChanged`` command.

Registration is not a state. An agent whose phone loses its registration stays logged in, in
whatever state it was; it is simply not *offerable* until a contact registers again (an offer in
flight is withdrawn by the ACD). This keeps a phone reboot or a NAT rebinding from logging agents
out and from spoiling their idle time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from types import MappingProxyType

from .errors import IllegalTransition

__all__ = [
    "TRANSITIONS",
    "Agent",
    "AgentCommand",
    "AgentEvent",
    "AgentState",
    "Transition",
]


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    OFFERED = "offered"  # a call is ringing on the agent's phone
    ON_CALL = "on_call"  # includes the whisper and countdown before the bridge
    WRAP_UP = "wrap_up"
    NOT_READY = "not_ready"


class AgentCommand(enum.Enum):
    """What an agent asks for, by feature code or by API: both map to these."""

    LOG_IN = "log_in"
    LOG_OUT = "log_out"
    READY = "ready"
    NOT_READY = "not_ready"


class AgentEvent(enum.Enum):
    """Everything that moves an agent; the commands above plus what the ACD observes."""

    LOG_IN = "log_in"
    LOG_IN_NOT_READY = "log_in_not_ready"
    LOG_OUT = "log_out"
    READY = "ready"
    NOT_READY = "not_ready"
    OFFER = "offer"
    ACCEPT = "accept"
    # The agent let the offer ring out or declined it; counts towards the missed-offer limit.
    MISS = "miss"
    # The same, and the limit is reached: the agent goes not ready.
    MISS_LIMIT = "miss_limit"
    # Withdrawn without the agent's fault: caller hung up, another agent won a ring-all,
    # the caller overflowed, the agent's registration was lost.
    WITHDRAW = "withdraw"
    CALL_END = "call_end"
    WRAP_UP_END = "wrap_up_end"


S = AgentState
E = AgentEvent

TRANSITIONS: MappingProxyType[tuple[AgentState, AgentEvent], AgentState] = MappingProxyType(
    {
        (S.LOGGED_OUT, E.LOG_IN): S.AVAILABLE,
        (S.LOGGED_OUT, E.LOG_IN_NOT_READY): S.NOT_READY,
        (S.AVAILABLE, E.LOG_OUT): S.LOGGED_OUT,
        (S.AVAILABLE, E.NOT_READY): S.NOT_READY,
        (S.AVAILABLE, E.OFFER): S.OFFERED,
        # Logging out or going not ready while ringing withdraws the offer (not a miss).
        (S.OFFERED, E.LOG_OUT): S.LOGGED_OUT,
        (S.OFFERED, E.NOT_READY): S.NOT_READY,
        (S.OFFERED, E.ACCEPT): S.ON_CALL,
        (S.OFFERED, E.MISS): S.AVAILABLE,
        (S.OFFERED, E.MISS_LIMIT): S.NOT_READY,
        (S.OFFERED, E.WITHDRAW): S.AVAILABLE,
        (S.ON_CALL, E.CALL_END): S.WRAP_UP,
        (S.WRAP_UP, E.WRAP_UP_END): S.AVAILABLE,
        (S.WRAP_UP, E.READY): S.AVAILABLE,  # the agent ends wrap-up early
        (S.WRAP_UP, E.NOT_READY): S.NOT_READY,
        (S.WRAP_UP, E.LOG_OUT): S.LOGGED_OUT,
        (S.NOT_READY, E.READY): S.AVAILABLE,
        (S.NOT_READY, E.LOG_OUT): S.LOGGED_OUT,
    }
)
"""(state, event) -> next state. Anything missing is illegal and raises IllegalTransition."""

_COMMAND_EVENTS = {
    AgentCommand.LOG_IN: E.LOG_IN,
    AgentCommand.LOG_OUT: E.LOG_OUT,
    AgentCommand.READY: E.READY,
    AgentCommand.NOT_READY: E.NOT_READY,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One applied transition (the ACD turns it into an AgentStateChanged command)."""

    agent_id: str
    old: AgentState
    new: AgentState
    event: AgentEvent
    at: float


class Agent:
    """One agent's ACD state. ``max_missed`` (0 = never) is the run of consecutive missed
    offers after which the agent goes not ready."""

    def __init__(self, agent_id: str, *, max_missed: int = 3) -> None:
        self.agent_id = agent_id
        self.max_missed = max_missed
        self._state = AgentState.LOGGED_OUT
        self._contacts = 0
        self._idle_since: float | None = None
        self._state_since: float | None = None
        self._missed_in_a_row = 0

    # -- read-only view

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def registered(self) -> bool:
        """True while at least one SIP contact is registered."""
        return self._contacts > 0

    @property
    def contacts(self) -> int:
        return self._contacts

    @property
    def idle_since(self) -> float | None:
        """When the agent last became available after login, not-ready or a call (wrap-up
        included); None unless AVAILABLE or OFFERED. A missed or withdrawn offer does not
        reset it: the agent has still been idle since then."""
        return self._idle_since

    @property
    def state_since(self) -> float | None:
        return self._state_since

    @property
    def missed_in_a_row(self) -> int:
        return self._missed_in_a_row

    @property
    def offerable(self) -> bool:
        return self._state is AgentState.AVAILABLE and self.registered

    @property
    def logged_in(self) -> bool:
        return self._state is not AgentState.LOGGED_OUT

    # -- transitions

    def can(self, event: AgentEvent) -> bool:
        return (self._state, event) in TRANSITIONS

    def apply(self, event: AgentEvent, now: float) -> Transition:
        """Apply ``event``; raises IllegalTransition when the table does not allow it."""
        try:
            new = TRANSITIONS[(self._state, event)]
        except KeyError:
            raise IllegalTransition(self.agent_id, self._state, event) from None
        old = self._state
        self._state = new
        self._state_since = now
        if new is AgentState.AVAILABLE and old is not AgentState.OFFERED:
            self._idle_since = now
        elif new not in (AgentState.AVAILABLE, AgentState.OFFERED):
            self._idle_since = None
        if event is E.ACCEPT or event in (E.LOG_IN, E.LOG_IN_NOT_READY, E.READY):
            self._missed_in_a_row = 0
        elif event in (E.MISS, E.MISS_LIMIT):
            self._missed_in_a_row += 1
        if event is E.MISS_LIMIT:
            # Not ready clears the run: when the agent comes back, it starts again.
            self._missed_in_a_row = 0
        return Transition(agent_id=self.agent_id, old=old, new=new, event=event, at=now)

    def command(self, command: AgentCommand, now: float) -> Transition:
        """A feature code or API request (log in/out, ready/not ready)."""
        return self.apply(_COMMAND_EVENTS[command], now)

    def miss(self, now: float, *, limit: int | None = None) -> Transition:
        """The offer rang out or was declined: MISS, or MISS_LIMIT when the run of
        consecutive misses reaches ``limit`` (default ``max_missed``; 0 = never)."""
        limit = self.max_missed if limit is None else limit
        reached = limit > 0 and self._missed_in_a_row + 1 >= limit
        return self.apply(E.MISS_LIMIT if reached else E.MISS, now)

    def set_contacts(self, contacts: int) -> bool:
        """Record how many contacts are registered; True when offerability may have changed."""
        if contacts < 0:
            raise ValueError("contacts must be >= 0")
        was = self.registered
        self._contacts = contacts
        return was != self.registered
