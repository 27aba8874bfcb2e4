"""What the ACD core asks the engine to do (imperative commands) and reports (past-tense facts).

All are frozen dataclasses. The engine drains them with :meth:`ivr.acd.queues.Acd.drain` after
every call into the core and executes them in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from .agents import AgentEvent, AgentState
from .models import AudioSource, OverflowKind

__all__ = [
    "AcdCommand",
    "AgentStateChanged",
    "AnnouncePosition",
    "CancelOffer",
    "CancelReason",
    "OfferCall",
    "Overflow",
    "OverflowReason",
    "PlayPeriodicAnnouncement",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class OfferCall:
    """Ring ``agent_id``'s registered contacts with this call until ``deadline`` (the ACD
    times the offer out itself; the engine CANCELs the INVITE on :class:`CancelOffer`).

    One command per agent; a ring-all offer is several commands with ``ring_all`` set and the
    same ``call_id``. ``ring_tone`` goes in ``Alert-Info``; ``sms_number`` is set when the
    queue sends SMS notifications and the agent has a number.
    """

    offer_id: str
    call_id: str
    agent_id: str
    queue: str
    queue_display_name: str
    offered_at: float
    deadline: float
    attempt: int
    ring_all: bool
    ring_tone: str | None
    sms_number: str | None
    caller_number: str | None
    caller_name: str | None
    menu_path: tuple[str, ...]
    language: str | None
    profile: Mapping[str, bool | str]
    priority: int


CancelReason = Literal[
    "timeout",
    "answered_elsewhere",
    "abandoned",
    "overflow",
    "agent_logged_out",
    "agent_not_ready",
    "registration_lost",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelOffer:
    """Stop ringing ``agent_id`` for ``call_id`` (CANCEL the INVITE of ``offer_id``)."""

    offer_id: str
    call_id: str
    agent_id: str
    reason: CancelReason


OverflowReason = Literal["max_wait", "queue_full"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Overflow:
    """The caller left ``queue`` for ``target`` (``kind``:``name``); the ACD no longer holds
    the call. For a ``queue`` target the engine calls ``Acd.enqueue`` again."""

    call_id: str
    queue: str
    target: str
    kind: OverflowKind
    name: str
    reason: OverflowReason


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnouncePosition:
    """Tell the caller their place. ``position`` is None unless ``announce_position``;
    ``estimated_wait_seconds`` is None unless ``announce_estimated_wait`` and an estimate
    exists (see :meth:`Acd.estimated_wait`): say nothing rather than a made-up figure."""

    call_id: str
    queue: str
    position: int | None
    estimated_wait_seconds: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayPeriodicAnnouncement:
    """Interrupt hold audio for the queue's periodic announcement, then resume hold audio."""

    call_id: str
    queue: str
    audio: AudioSource


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStateChanged:
    """An agent moved from ``old`` to ``new`` at ``at`` (publish on MQTT, log, metrics)."""

    agent_id: str
    old: AgentState
    new: AgentState
    event: AgentEvent
    at: float
    call_id: str | None = None


AcdCommand = (
    OfferCall
    | CancelOffer
    | Overflow
    | AnnouncePosition
    | PlayPeriodicAnnouncement
    | AgentStateChanged
)
