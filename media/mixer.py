"""Per-tick mixing for a bridged call: caller, agent and any number of monitor taps.

Pure: decoded 20 ms PCM16 frames go into per-leg :class:`FrameSlot` s as packets arrive;
:meth:`CallMixer.mix` is called with the media-clock tick number and computes everything
the call needs for that tick ONCE (the monitor mix of caller + agent, what the agent and the
caller hear when a supervisor coaches or barges in), however many listeners ask.
"""

from __future__ import annotations

import enum
import warnings
from collections import deque
from collections.abc import Callable

from media.g711 import FRAME_BYTES, get_codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["SILENT_FRAME", "CallMixer", "FrameSlot", "MixResult", "MixTap", "TapMode"]

SILENT_FRAME = bytes(FRAME_BYTES)


class TapMode(enum.Enum):
    """What a monitoring supervisor's own audio does (the supervisor always hears both)."""

    LISTEN = "listen"  # reaches nobody
    COACH = "coach"  # reaches the agent only (whisper)
    BARGE = "barge"  # reaches caller and agent


class FrameSlot:
    """A jitter-tolerant per-leg frame slot: a FIFO of at most ``depth`` decoded frames.

    ``push`` as packets arrive; ``pop`` once per tick. An empty slot yields silence (a lost
    or late packet is one silent frame); when more than ``depth`` frames pile up (a burst) the
    oldest are dropped, so latency never grows beyond ``depth`` frames. ``depth=1`` is "the
    latest frame per tick". Frames of another length than 20 ms are padded or cut.
    """

    __slots__ = ("_frames", "depth", "dropped", "pushed", "underruns")

    def __init__(self, depth: int = 2) -> None:
        if depth < 1:
            raise ValueError("depth must be at least 1")
        self.depth = depth
        self._frames: deque[bytes] = deque()
        self.pushed = 0
        self.dropped = 0
        self.underruns = 0

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: bytes) -> None:
        """Queue one decoded frame (PCM16 LE)."""
        if len(frame) != FRAME_BYTES:
            frame = (frame + SILENT_FRAME)[:FRAME_BYTES]
        frames = self._frames
        if len(frames) >= self.depth:
            frames.popleft()
            self.dropped += 1
        frames.append(frame)
        self.pushed += 1

    def pop(self) -> bytes:
        """The frame for this tick, or silence."""
        if self._frames:
            return self._frames.popleft()
        self.underruns += 1
        return SILENT_FRAME

    def clear(self) -> None:
        """Forget queued frames (e.g. when a leg stops being mixed)."""
        self._frames.clear()


class MixTap:
    """One monitoring supervisor on a call: a mode and the slot for the supervisor's audio."""

    __slots__ = ("mode", "name", "slot")

    def __init__(self, mode: TapMode, *, name: str = "", depth: int = 2) -> None:
        self.mode = mode
        self.name = name
        self.slot = FrameSlot(depth)

    def __repr__(self) -> str:
        return f"MixTap({self.mode.value}, name={self.name!r})"


def _add(a: bytes | None, b: bytes) -> bytes:
    # audioop.add saturates (clips) instead of wrapping around.
    return b if a is None else audioop.add(a, b, 2)


class MixResult:
    """Everything one tick produces. Frames are PCM16 LE, 320 bytes.

    ``caller``/``agent``: what each party sent this tick (silence if nothing arrived).
    ``monitor``: caller + agent, what every tap hears.
    ``coach``/``barge``: the summed supervisors' audio per mode, None when no such tap.
    ``to_agent``: caller + coach + barge, None when no supervisor talks to the agent (then the
    caller's packets are forwarded untouched). ``to_caller``: agent + barge, None likewise.
    ``whisper``: coach + barge, what the agent hears while the caller is on hold.
    ``agent_side``: agent + barge, the agent channel of a recording (coach never recorded).
    """

    __slots__ = (
        "_encoded",
        "agent",
        "agent_side",
        "barge",
        "caller",
        "coach",
        "monitor",
        "tick",
        "to_agent",
        "to_caller",
        "whisper",
    )

    def __init__(
        self,
        *,
        tick: int,
        caller: bytes,
        agent: bytes,
        coach: bytes | None,
        barge: bytes | None,
    ) -> None:
        self.tick = tick
        self.caller = caller
        self.agent = agent
        self.coach = coach
        self.barge = barge
        self.monitor = audioop.add(caller, agent, 2)
        whisper = barge if coach is None else _add(barge, coach)
        self.whisper = whisper
        self.to_agent = None if whisper is None else audioop.add(caller, whisper, 2)
        self.to_caller = None if barge is None else audioop.add(agent, barge, 2)
        self.agent_side = agent if barge is None else audioop.add(agent, barge, 2)
        self._encoded: dict[tuple[str, str], bytes] = {}

    def encoded(self, which: str, codec: str) -> bytes:
        """Frame ``which`` ("monitor", "to_agent", "to_caller", "whisper", "barge") encoded
        with ``codec``, once per tick however many legs ask (five PCMU taps: one encode)."""
        key = (which, codec)
        payload = self._encoded.get(key)
        if payload is None:
            frame = getattr(self, which)
            payload = get_codec(codec).encode(SILENT_FRAME if frame is None else frame)
            self._encoded[key] = payload
        return payload


class CallMixer:
    """The per-call mixing core: slots for caller and agent, a set of taps, one mix per tick.

    :meth:`mix` is memoised on the tick number: whoever asks first in a tick (a leg pulling
    its next payload, a recorder, the bridge's own tick) causes the slots to be read once;
    every later caller in the same tick gets the same :class:`MixResult`.
    """

    def __init__(self, *, depth: int = 2, on_change: Callable[[], None] | None = None) -> None:
        self.depth = depth
        self.caller = FrameSlot(depth)
        self.agent = FrameSlot(depth)
        self._taps: list[MixTap] = []
        self._last: MixResult | None = None
        self._on_change = on_change

    @property
    def taps(self) -> tuple[MixTap, ...]:
        """Attached taps, in attach order."""
        return tuple(self._taps)

    @property
    def coaching(self) -> bool:
        """True if some supervisor's audio reaches the agent (coach or barge)."""
        return any(t.mode is not TapMode.LISTEN for t in self._taps)

    @property
    def barging(self) -> bool:
        """True if some supervisor's audio reaches the caller (barge)."""
        return any(t.mode is TapMode.BARGE for t in self._taps)

    def add_tap(self, mode: TapMode, *, name: str = "") -> MixTap:
        """Attach a tap; its audio is mixed from the next tick on."""
        tap = MixTap(mode, name=name, depth=self.depth)
        self._taps.append(tap)
        self._changed()
        return tap

    def set_mode(self, tap: MixTap, mode: TapMode) -> None:
        """Switch a tap between listen, coach and barge."""
        if tap.mode is not mode:
            tap.mode = mode
            tap.slot.clear()  # nothing said while listening leaks into the first coach frame
            self._changed()

    def remove_tap(self, tap: MixTap) -> None:
        """Detach a tap (no error if already removed)."""
        if tap in self._taps:
            self._taps.remove(tap)
            self._changed()

    def reset(self) -> None:
        """Forget queued frames and the memoised mix (the bridge stopped; a restarted clock
        numbers its ticks from 0 again)."""
        self.caller.clear()
        self.agent.clear()
        self._last = None

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def mix(self, tick: int) -> MixResult:
        """The mix for ``tick``, computed on the first call for that tick."""
        last = self._last
        if last is not None and last.tick == tick:
            return last
        coach: bytes | None = None
        barge: bytes | None = None
        for tap in self._taps:
            mode = tap.mode
            if mode is TapMode.LISTEN:
                tap.slot.clear()  # listen mode: the supervisor's audio is never used
            elif mode is TapMode.COACH:
                coach = _add(coach, tap.slot.pop())
            else:
                barge = _add(barge, tap.slot.pop())
        result = MixResult(
            tick=tick, caller=self.caller.pop(), agent=self.agent.pop(), coach=coach, barge=barge
        )
        self._last = result
        return result
