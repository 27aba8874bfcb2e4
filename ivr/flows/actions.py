"""The interpreter's vocabulary: events it consumes and actions it emits.

Events are past-tense facts the runtime observed on the call (``DigitReceived``); actions
are commands for the runtime (``PlayPrompt``) or observable facts for logs and ``simulate``
(``NodeEntered``, ``VariableSet``, ``MenuChosen``...). All are frozen dataclasses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Action",
    "Answer",
    "CallAnswered",
    "CallerHungUp",
    "CancelTimer",
    "DigitReceived",
    "Event",
    "FilePrompt",
    "FlowWarning",
    "Hangup",
    "LanguageSet",
    "MenuChosen",
    "NodeEntered",
    "PlayPrompt",
    "PromptFinished",
    "PromptItem",
    "SilencePrompt",
    "StartTask",
    "StartTimer",
    "StopPrompt",
    "TaskFinished",
    "TimerExpired",
    "TonePrompt",
    "TtsPrompt",
    "VariableSet",
]

# --------------------------------------------------------------------------------------------
# events (runtime -> interpreter)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallAnswered:
    """The call is answered (200 OK sent and media flowing) after an :class:`Answer`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptFinished:
    """The prompt ``play_id`` played to its end (not sent after a :class:`StopPrompt`)."""

    play_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived:
    """A DTMF key (RFC 4733 or SIP INFO): one of ``0-9 * # A-D``."""

    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerExpired:
    timer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerHungUp:
    """The caller hung up (BYE or CANCEL); the session ends without a Hangup action."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFinished:
    """The engine-side task ``task_id`` (queue, deflection, voicemail, hours check...) is
    over; ``result`` names the outcome (``open``, ``closed``, ``overflow``, ``bridged``...)."""

    task_id: str
    result: str
    data: Mapping[str, Any] = field(default_factory=dict)


Event = CallAnswered | PromptFinished | DigitReceived | TimerExpired | CallerHungUp | TaskFinished

# --------------------------------------------------------------------------------------------
# prompt items, resolved for the call


@dataclass(frozen=True, slots=True, kw_only=True)
class TtsPrompt:
    """Speak ``text`` (placeholders already filled) in ``language``; voice/rate None means
    the engine's configured default."""

    text: str
    language: str
    voice: str | None = None
    rate: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FilePrompt:
    path: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class TonePrompt:
    frequencies: tuple[float, ...]
    ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SilencePrompt:
    ms: int


PromptItem = TtsPrompt | FilePrompt | TonePrompt | SilencePrompt

# --------------------------------------------------------------------------------------------
# actions (interpreter -> runtime)


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """Answer the call (200 OK); reply with :class:`CallAnswered` once done. With
    ``ring_seconds``, ring (180) that long first."""

    ring_seconds: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayPrompt:
    """Play ``items`` in order; reply :class:`PromptFinished` at the end. When
    ``interruptible``, the interpreter may send :class:`StopPrompt` on a digit."""

    play_id: str
    items: tuple[PromptItem, ...]
    interruptible: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class StopPrompt:
    """Stop ``play_id`` now; no :class:`PromptFinished` is expected for it any more."""

    play_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    """Reply :class:`TimerExpired` after ``seconds`` unless cancelled."""

    timer_id: str
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    timer_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Hangup:
    """End the call. ``status`` (4xx-6xx) is the final response when the call is not
    answered; None on an answered call, which ends with BYE. ``reason`` is for logs (and a
    Reason header if the runtime sends one)."""

    status: int | None
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTask:
    """Hand the call to an engine-side task of ``kind`` with ``params``; the flow waits for
    :class:`TaskFinished` (digits still arrive as events; the task may use the call's media).
    ``variables`` and ``menu_path`` are the call's at hand-off (queues and deflections carry
    them on)."""

    task_id: str
    kind: str
    params: Mapping[str, Any]
    variables: Mapping[str, Any] = field(default_factory=dict)
    menu_path: str = ""
    language: str = "en"


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeEntered:
    node_id: str
    flow_id: str
    node_type: str


@dataclass(frozen=True, slots=True, kw_only=True)
class VariableSet:
    name: str
    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class LanguageSet:
    language: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuChosen:
    """The caller chose ``label``; ``path`` is the whole menu path so far (``A > B``)."""

    label: str
    path: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowWarning:
    """Something went wrong that the flow survived (an expression failed to evaluate) or
    that ended the call (step limit); for the runtime to log."""

    flow_id: str
    node_id: str
    message: str


Action = (
    Answer
    | StartTask
    | PlayPrompt
    | StopPrompt
    | StartTimer
    | CancelTimer
    | Hangup
    | NodeEntered
    | VariableSet
    | LanguageSet
    | MenuChosen
    | FlowWarning
)
