"""Calls and legs as call control sees them: the data every feature acts on.

``MediaLeg`` is one SIP leg with its RTP endpoint; ``Call`` an inbound call (the caller's leg
and the behaviour running for it); ``OutboundLeg`` a call the engine placed. ``CallState``
moves only through ``CALL_TRANSITIONS`` (the agent machine in ``ivr.acd.agents`` is the
model). ``CallCore`` names what a leg needs from the engine that owns it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from media.aio.bridge import Bridge
from media.aio.rtp import RtpEndpoint
from media.prompts import Prompt
from sipstack import sdp
from sipstack import ua as sip
from sipstack.message import Request
from sipstack.transaction import Flow

from .flows import FlowSet
from .flows.profile import CallerProfile

if TYPE_CHECKING:
    from .config import Settings
    from .tasks import TaskRegistry

log = structlog.get_logger("switchhook.engine")


class CallCore(Protocol):
    """What legs and features use of the engine that owns them (``ivr.engine.Engine``).

    This names today's de facto interface; the ``Any``-typed members are the ones features
    still reach through directly (the SIP user agent and endpoint, the feature runtimes) and
    are what the rest of issue 9 narrows down."""

    settings: Settings
    tasks: TaskRegistry
    calls: Mapping[int, Call]
    outbound: Mapping[int, OutboundLeg]
    listening: list[tuple[str, str, int]]
    ua: Any
    endpoint: Any
    store: Any
    events: Any
    outbox: Any
    prompts: Any

    def now(self) -> datetime: ...

    async def tts(
        self,
        text: str,
        *,
        voice: str | None = None,
        rate: int | None = None,
        language: str | None = None,
    ) -> Prompt: ...

    async def originate(self, **kwargs: Any) -> OutboundLeg: ...

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def bridge(self, caller: MediaLeg, other: MediaLeg) -> Bridge: ...

    async def run_bridge(
        self, caller: MediaLeg, other: MediaLeg, *, reason: str = ...
    ) -> MediaLeg: ...

    def hangup(self, call: MediaLeg, reason: str) -> None: ...

    async def answer(self, call: Call) -> bool: ...

    def ring(self, call: Call) -> None: ...

    def reject(self, call: Call, status: int, reason: str | None = None) -> None: ...


class CallState(enum.Enum):
    """A leg as call control sees it (the SIP dialog's own states are ``sipstack.ua``'s)."""

    SETTING_UP = "setting-up"
    ANSWERED = "answered"
    ENDED = "ended"


class CallEvent(enum.Enum):
    """What moves a leg: our 200 OK sent or the far end's received, or the leg ending (BYE,
    CANCEL, rejection, failure)."""

    ANSWERED = "answered"
    ENDED = "ended"


class IllegalCallTransition(Exception):
    """A leg was moved by an event its state does not allow (a bug in call control)."""

    def __init__(self, state: CallState, event: CallEvent) -> None:
        super().__init__(f"{event.value} is not allowed in state {state.value}")
        self.state = state
        self.event = event


# The whole machine: (state, event) -> next state. ``MediaLeg.move`` is its only writer.
CALL_TRANSITIONS: Mapping[tuple[CallState, CallEvent], CallState] = {
    (CallState.SETTING_UP, CallEvent.ANSWERED): CallState.ANSWERED,
    (CallState.SETTING_UP, CallEvent.ENDED): CallState.ENDED,
    (CallState.ANSWERED, CallEvent.ENDED): CallState.ENDED,
}


@dataclass(eq=False, kw_only=True)
class MediaLeg:
    """One SIP leg with its RTP endpoint: what prompts, digits and bridges act on."""

    engine: CallCore
    leg_id: int
    call_id: str
    flow: Flow
    started_at: float
    state: CallState = CallState.SETTING_UP
    rtp: RtpEndpoint | None = None
    session_version: int = 1
    session_id: int = 0
    negotiated: sdp.NegotiationResult | None = None
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end_reason: str = ""
    bridge: Bridge | None = None
    # Set once the dialog is confirmed (ACK received): in-dialog requests (REFER) may go.
    confirmed: asyncio.Event = field(default_factory=asyncio.Event)
    # Hook for whoever drives the leg's dialog (REFER transfers): sees in-dialog requests
    # (return True when it responded) and responses to requests sent in the dialog.
    on_dialog: Callable[[sip.Event], bool] | None = None
    # Hook called after a re-INVITE was answered (hold/unhold, codec change): queueing puts
    # the other party of a bridge on hold audio.
    on_reinvite: Callable[[MediaLeg], None] | None = None
    # Hook called synchronously when the leg ends, before the call record is written (the
    # queue task's metrics must be final by then; the task itself is cancelled later).
    on_ended: Callable[[MediaLeg], None] | None = None

    _log: Any = None

    def move(self, event: CallEvent) -> CallState:
        """Apply ``event`` by the table; raises :class:`IllegalCallTransition` otherwise."""
        target = CALL_TRANSITIONS.get((self.state, event))
        if target is None:
            raise IllegalCallTransition(self.state, event)
        self.state = target
        return target

    @property
    def log(self) -> Any:
        """The logger bound to this call (bound once: this is on every call's hot path)."""
        if self._log is None:
            self._log = log.bind(call_id=self.call_id, leg=self.leg_id)
        return self._log

    # ---- behaviour API (what a flow runtime uses) -------------------------------------------

    async def play(self, prompt: Prompt) -> None:
        """Play ``prompt`` on this leg and return when it has been sent (or the leg ended).
        A bridged leg plays nothing (its media belongs to the bridge: use ``bridge.hold``)."""
        if self.rtp is None or self.state is not CallState.ANSWERED or self.bridge is not None:
            return
        done = asyncio.get_running_loop().create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        self.rtp.play(prompt, on_done=finished)
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            await asyncio.wait({done, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not done.done() and self.rtp is not None:
                self.rtp.stop_playback()

    async def collect_digit(self, timeout: float) -> str | None:
        """Wait for one DTMF digit (RFC 4733 or SIP INFO) for up to ``timeout`` seconds."""
        if not self.digits.empty():
            return self.digits.get_nowait()
        getter = asyncio.ensure_future(self.digits.get())
        ended = asyncio.ensure_future(self.ended.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, ended}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            ended.cancel()
            if not getter.done():
                getter.cancel()
        return getter.result() if getter in done else None

    def hangup(self, reason: str = "normal clearing") -> None:
        self.engine.hangup(self, reason)


@dataclass(eq=False, kw_only=True)
class Call(MediaLeg):
    """An inbound call: the caller's leg and the behaviour running for it."""

    caller: str  # the From URI
    caller_number: str  # its user part ("anonymous" when withheld)
    called: str
    trunk: str
    request: Request
    task: asyncio.Task[None] | None = None
    ringing: bool = False
    # Deflected once already: deflection is one hop (docs/hours.md).
    deflected: bool = False
    menu_path: str = ""
    flows: FlowSet | None = None  # the flow set the call started with (hot reload safe)
    answered_at: float | None = None  # loop time
    queue: str | None = None
    agent: str | None = None
    # wait/ring/talk/hold seconds and transfers, filled by queueing (ivr.acd metrics)
    metrics: dict[str, Any] = field(default_factory=dict)
    profile: CallerProfile = field(default_factory=CallerProfile)

    async def answer(self) -> bool:
        return await self.engine.answer(self)

    def ring(self) -> None:
        self.engine.ring(self)

    def reject(self, status: int, reason: str | None = None) -> None:
        self.engine.reject(self, status, reason)


class OriginateFailed(Exception):
    """An outbound call was not answered: ``status_code`` is the final SIP status (408 when
    it timed out, 503 when no media port was free)."""

    def __init__(self, status_code: int, reason: str) -> None:
        super().__init__(f"{status_code} {reason}")
        self.status_code = status_code
        self.reason = reason


@dataclass(eq=False, kw_only=True)
class OutboundLeg(MediaLeg):
    """A call the engine placed (B2BUA side): to an outside number, an agent, a supervisor."""

    target: str
    offer: sdp.SessionDescription
    answered: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


Behaviour = Callable[[Call], Awaitable[None]]
