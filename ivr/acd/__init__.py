"""Queues and agents (ACD): config models, the agent state machine, the sans-IO ``Acd`` core,
whisper prompts, metrics and transfer checks. Pure: no sockets, no asyncio, no clock reads."""

from .agents import TRANSITIONS, Agent, AgentCommand, AgentEvent, AgentState
from .commands import (
    AcdCommand,
    AgentStateChanged,
    AnnouncePosition,
    CancelOffer,
    OfferCall,
    Overflow,
    PlayPeriodicAnnouncement,
)
from .errors import AcdError, IllegalTransition, LocalProtocolError, UnknownCall, UnknownName
from .metrics import CallMetrics, CallTimeline, QueueCounters, call_metrics
from .models import (
    AcdSettings,
    AgentConfig,
    QueueConfig,
    WhisperDefaults,
    check_acd,
)
from .queues import Acd, caller_priority
from .transfer import TransferRefused, TransferTarget, check_transfer_target
from .whisper import WhisperFile, WhisperTts, build_whisper, resolve_whisper

__all__ = [
    "TRANSITIONS",
    "Acd",
    "AcdCommand",
    "AcdError",
    "AcdSettings",
    "Agent",
    "AgentCommand",
    "AgentConfig",
    "AgentEvent",
    "AgentState",
    "AgentStateChanged",
    "AnnouncePosition",
    "CallMetrics",
    "CallTimeline",
    "CancelOffer",
    "IllegalTransition",
    "LocalProtocolError",
    "OfferCall",
    "Overflow",
    "PlayPeriodicAnnouncement",
    "QueueConfig",
    "QueueCounters",
    "TransferRefused",
    "TransferTarget",
    "UnknownCall",
    "UnknownName",
    "WhisperDefaults",
    "WhisperFile",
    "WhisperTts",
    "build_whisper",
    "call_metrics",
    "caller_priority",
    "check_acd",
    "check_transfer_target",
    "resolve_whisper",
]
