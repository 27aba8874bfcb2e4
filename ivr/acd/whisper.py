"""What the agent hears after answering and before the bridge: the whisper and the countdown.

:func:`build_whisper` resolves the queue's whisper against the global defaults (every unset
per-queue field inherits) and returns prompt items for the engine to render with
``media.prompts`` (TTS or file, then ``time_stretch`` to the speed). Durations are not known
here: the engine measures the rendered prompts, and the wait-time metrics include them because
the wait ends at the bridge (:meth:`ivr.acd.queues.Acd.call_bridged`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .models import QueueConfig, WhisperDefaults

__all__ = [
    "ResolvedWhisper",
    "WhisperFile",
    "WhisperItem",
    "WhisperTts",
    "build_whisper",
    "resolve_whisper",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class WhisperTts:
    text: str
    speed: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WhisperFile:
    file: str  # relative to the prompts directory, like flow prompt files
    speed: float


WhisperItem = WhisperTts | WhisperFile


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedWhisper:
    """The effective whisper settings of one queue (per-queue value, else the global one)."""

    enabled: bool
    kind: Literal["template", "queue_name", "tts", "file"]
    content: str  # the template, the queue's spoken name, the TTS text or the file
    call_type: str
    speed: float
    countdown: bool
    countdown_text: str


def resolve_whisper(queue: QueueConfig, defaults: WhisperDefaults) -> ResolvedWhisper:
    own = queue.whisper
    kind: Literal["template", "queue_name", "tts", "file"]
    if own.template is not None:
        kind, content = "template", own.template
    elif own.queue_name:
        kind, content = "queue_name", queue.spoken_name
    elif own.tts is not None:
        kind, content = "tts", own.tts
    elif own.file is not None:
        kind, content = "file", own.file
    else:
        kind, content = "template", defaults.template
    return ResolvedWhisper(
        enabled=own.enabled if own.enabled is not None else defaults.enabled,
        kind=kind,
        content=content,
        call_type=own.call_type if own.call_type is not None else defaults.call_type,
        speed=own.speed if own.speed is not None else defaults.speed,
        countdown=own.countdown if own.countdown is not None else defaults.countdown,
        countdown_text=defaults.countdown_text,
    )


def build_whisper(
    queue: QueueConfig,
    defaults: WhisperDefaults,
    *,
    call_type: str | None = None,
    caller_number: str | None = None,
    caller_name: str | None = None,
    language: str | None = None,
    menu_path: Sequence[str] = (),
) -> tuple[WhisperItem, ...]:
    """The prompt items to play to the agent, in order; empty when neither the whisper nor
    the countdown is on (the engine bridges at once).

    ``call_type`` overrides the configured one for this call (e.g. "Transferred call").
    Template placeholders: {call_type}, {queue} (the queue's display name), {caller_number},
    {caller_name}, {language}, {menu_path} (joined with " > "); missing values are empty.
    """
    resolved = resolve_whisper(queue, defaults)
    items: list[WhisperItem] = []
    if resolved.enabled:
        if resolved.kind == "file":
            items.append(WhisperFile(file=resolved.content, speed=resolved.speed))
        elif resolved.kind == "template":
            values = {
                "call_type": call_type if call_type is not None else resolved.call_type,
                "queue": queue.spoken_name,
                "caller_number": caller_number or "",
                "caller_name": caller_name or "",
                "language": language or "",
                "menu_path": " > ".join(menu_path),
            }
            text = " ".join(resolved.content.format_map(values).split())
            if text:
                items.append(WhisperTts(text=text, speed=resolved.speed))
        else:
            items.append(WhisperTts(text=resolved.content, speed=resolved.speed))
    if resolved.countdown:
        items.append(WhisperTts(text=resolved.countdown_text, speed=resolved.speed))
    return tuple(items)
