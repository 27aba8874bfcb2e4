"""Player: walks prompts one 20 ms frame per media-clock tick. Pure and allocation-free per tick."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from media.prompts import Prompt

__all__ = ["PayloadSource", "Player"]


class PayloadSource(Protocol):
    """What an RTP endpoint pulls one payload from per clock tick: a :class:`Player`, or a
    bridge's mix feed. ``next_payload`` returns None at the end (the endpoint then drops it)."""

    def next_payload(self, codec: str) -> bytes | None: ...

    def stop(self) -> None: ...


class Player:
    """Plays a prompt or a list of prompts in order, optionally looping.

    ``next_payload(codec)`` returns the next precomputed payload (``Prompt.payloads``), or
    None once the end is reached or after :meth:`stop`. ``next_frame()`` returns PCM16 for
    consumers that mix or record.
    """

    __slots__ = (
        "_codec",
        "_index",
        "_loop",
        "_prompt_index",
        "_prompts",
        "_seq",
        "_stopped",
        "frames_played",
    )

    def __init__(self, prompts: Prompt | Sequence[Prompt], *, loop: bool = False) -> None:
        self._prompts: tuple[Prompt, ...] = (
            (prompts,) if isinstance(prompts, Prompt) else tuple(prompts)
        )
        self._loop = loop
        self._prompt_index = 0
        self._index = 0
        self._stopped = not any(len(p) for p in self._prompts)  # nothing to play, even looped
        self._codec: str | None = None
        self._seq: tuple[bytes, ...] = ()
        self.frames_played = 0

    @property
    def finished(self) -> bool:
        """True after the last frame (not looping) or after :meth:`stop`."""
        return self._stopped

    @property
    def loop(self) -> bool:
        """Whether playback restarts from the first prompt at the end."""
        return self._loop

    def stop(self) -> None:
        """Stop now; subsequent calls return None."""
        self._stopped = True

    def next_payload(self, codec: str) -> bytes | None:
        """The next frame encoded with ``codec``, or None at the end."""
        if self._codec != codec:
            self._codec = codec
            self._seq = self._prompts[self._prompt_index].payloads(codec) if self._prompts else ()
        return self._next(codec)

    def next_frame(self) -> bytes | None:
        """The next PCM16 frame (320 bytes), or None at the end."""
        if self._codec is not None:
            self._codec = None
            self._seq = self._prompts[self._prompt_index].frames if self._prompts else ()
        elif not self._seq and self._prompts:
            self._seq = self._prompts[self._prompt_index].frames
        return self._next(None)

    def _next(self, codec: str | None) -> bytes | None:
        if self._stopped:
            return None
        while self._index >= len(self._seq):
            self._prompt_index += 1
            self._index = 0
            if self._prompt_index >= len(self._prompts):
                if not self._loop:
                    self._stopped = True
                    return None
                self._prompt_index = 0
            prompt = self._prompts[self._prompt_index]
            self._seq = prompt.frames if codec is None else prompt.payloads(codec)
        item = self._seq[self._index]
        self._index += 1
        self.frames_played += 1
        return item
