"""Call and voicemail recording to 8 kHz 16-bit WAV, in ordered parts under a size limit.

Pure writer cores: PCM16 frames in (one 20 ms tick at a time), bytes out to file-like
objects that a factory opens per part (:class:`FileParts` opens numbered files). The
bridge (:meth:`media.bridge.Bridge.attach_recorder`) or an asyncio helper
(:mod:`media.aio.recorder`) feeds them once per media-clock tick.

I/O failures (disk full, read-only directory, closed file) become ONE :class:`RecorderError`
at the first failure; the recorder then stops and ignores later writes, so a recording
problem never takes the call down. Writes are small buffered file writes done on the
calling thread.

Pause (redaction, e.g. while a card number is read out): by default the paused time is
written as digital silence, so the recording's timeline stays aligned with the call and
``audio_ms == call_ms``; with :attr:`PauseMode.OMIT` it is left out and
``audio_ms == call_ms - paused_ms``. Either way :class:`RecordingInfo` reports both.
"""

from __future__ import annotations

import enum
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from media.errors import RecorderError
from media.g711 import FRAME_BYTES, SAMPLE_RATE
from media.mixer import SILENT_FRAME

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "DEFAULT_MAX_PART_BYTES",
    "WAV_HEADER_BYTES",
    "CallRecorder",
    "FileParts",
    "Layout",
    "PartInfo",
    "PauseMode",
    "RecordingInfo",
    "VoicemailRecorder",
    "VoicemailResult",
    "VoicemailStop",
    "WavPartWriter",
]

DEFAULT_MAX_PART_BYTES = 50 * 1024 * 1024
WAV_HEADER_BYTES = 44
FRAME_MS = 20
_RIFF_HEADER = struct.Struct("<4sI4s4sIHHIIHH4sI")
_SIZE = struct.Struct("<I")

PartOpener = Callable[[int], BinaryIO]


class Layout(enum.Enum):
    """Channel layout of a call recording."""

    STEREO = "stereo"  # caller left, agent right
    MONO = "mono"  # caller + agent mixed


class PauseMode(enum.Enum):
    """What a paused stretch becomes in the file."""

    SILENCE = "silence"
    OMIT = "omit"


@dataclass(frozen=True, slots=True, kw_only=True)
class PartInfo:
    """One file of a recording: 1-based ``index``, audio bytes (header excluded), duration."""

    index: int
    data_bytes: int
    duration_ms: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingInfo:
    """Honest duration metadata of a finished (or failed) call recording."""

    layout: Layout
    pause_mode: PauseMode
    parts: tuple[PartInfo, ...]
    call_ms: int  # ticks seen while recording, paused or not
    paused_ms: int
    audio_ms: int  # what the files hold
    error: str | None = None

    @property
    def complete(self) -> bool:
        """True if no write error cut the recording short."""
        return self.error is None


def _wav_header(channels: int, data_bytes: int) -> bytes:
    block_align = 2 * channels
    return _RIFF_HEADER.pack(
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,  # PCM
        channels,
        SAMPLE_RATE,
        SAMPLE_RATE * block_align,
        block_align,
        16,
        b"data",
        data_bytes,
    )


class WavPartWriter:
    """Writes 16-bit 8 kHz PCM to WAV parts of at most ``max_part_bytes`` each (header
    included). A chunk is never split across parts, so every part holds whole frames.

    ``open_part(index)`` is called with 1, 2, ... and must return a writable, seekable binary
    file; the header sizes are patched when the part is closed. A part cut short by a process
    crash keeps zero sizes in its header (tools such as sox/ffmpeg still read the data).
    """

    def __init__(
        self,
        open_part: PartOpener,
        *,
        channels: int,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
        frame_bytes: int = FRAME_BYTES,
    ) -> None:
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        if max_part_bytes < WAV_HEADER_BYTES + channels * frame_bytes:
            raise ValueError(f"max_part_bytes {max_part_bytes} cannot hold even one frame")
        self.channels = channels
        self.max_part_bytes = max_part_bytes
        self._open_part = open_part
        self._file: BinaryIO | None = None
        self._data_bytes = 0
        self._parts: list[PartInfo] = []
        self._closed = False
        self.error: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def parts(self) -> tuple[PartInfo, ...]:
        """Closed parts, plus the open one as it stands."""
        if self._file is None:
            return tuple(self._parts)
        return (*self._parts, self._part_info(len(self._parts) + 1, self._data_bytes))

    @property
    def data_bytes(self) -> int:
        """Audio bytes written over all parts."""
        return sum(p.data_bytes for p in self.parts)

    def _part_info(self, index: int, data_bytes: int) -> PartInfo:
        return PartInfo(
            index=index,
            data_bytes=data_bytes,
            duration_ms=data_bytes * 1000 // (SAMPLE_RATE * 2 * self.channels),
        )

    def _fail(self, action: str, exc: BaseException) -> RecorderError:
        self.error = f"{action}: {exc}"
        file, self._file = self._file, None
        if file is not None:
            try:
                file.close()
            except (OSError, ValueError):
                pass  # already failing; the first error is the one reported
        return RecorderError(f"recording stopped: {self.error}")

    def write(self, chunk: bytes) -> None:
        """Append PCM (interleaved when stereo); a no-op after a failure or close."""
        if self.error is not None or self._closed:
            return
        try:
            if (
                self._file is not None
                and WAV_HEADER_BYTES + self._data_bytes + len(chunk) > self.max_part_bytes
            ):
                self._close_part()
            if self._file is None:
                self._file = self._open_part(len(self._parts) + 1)
                self._data_bytes = 0
                self._file.write(_wav_header(self.channels, 0))
            self._file.write(chunk)
            self._data_bytes += len(chunk)
        except (OSError, ValueError) as exc:
            raise self._fail(f"writing part {len(self._parts) + 1}", exc) from exc

    def _close_part(self) -> None:
        file = self._file
        if file is None:
            return
        file.seek(4)
        file.write(_SIZE.pack(36 + self._data_bytes))
        file.seek(40)
        file.write(_SIZE.pack(self._data_bytes))
        file.close()
        self._file = None
        self._parts.append(self._part_info(len(self._parts) + 1, self._data_bytes))

    def close(self) -> None:
        """Finish the open part (patch its header). Never raises: a failure here is kept in
        :attr:`error` (read it, or the ``error`` of the recording's info)."""
        if self._closed:
            return
        self._closed = True
        if self.error is not None:
            return
        try:
            self._close_part()
        except (OSError, ValueError) as exc:
            self._fail(f"closing part {len(self._parts) + 1}", exc)


class CallRecorder:
    """Records a bridged call from decoded frames, one :meth:`write` per tick.

    Stereo puts the caller on the left and the agent side on the right; mono mixes them.
    The bridge passes the agent side as agent + barge, so coach audio never reaches any
    channel, least of all the customer's.
    """

    def __init__(
        self,
        open_part: PartOpener,
        *,
        layout: Layout = Layout.STEREO,
        pause_mode: PauseMode = PauseMode.SILENCE,
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
    ) -> None:
        self.layout = layout
        self.pause_mode = pause_mode
        channels = 2 if layout is Layout.STEREO else 1
        self._writer = WavPartWriter(open_part, channels=channels, max_part_bytes=max_part_bytes)
        self._silence = bytes(FRAME_BYTES * channels)
        self._ticks = 0
        self._paused_ticks = 0
        self._paused = False
        self._info: RecordingInfo | None = None

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def failed(self) -> bool:
        return self._writer.failed

    def pause(self) -> None:
        """Stop capturing audio (redaction) until :meth:`resume`."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def write(self, caller: bytes, agent: bytes) -> None:
        """One tick: the caller's frame and the agent side's frame (PCM16, 320 bytes each).

        Raises :class:`RecorderError` once, at the first I/O failure; afterwards a no-op.
        """
        if self._info is not None or self._writer.failed:
            return
        self._ticks += 1
        if self._paused:
            self._paused_ticks += 1
            if self.pause_mode is PauseMode.SILENCE:
                self._writer.write(self._silence)
            return
        if len(caller) != FRAME_BYTES:
            caller = (caller + SILENT_FRAME)[:FRAME_BYTES]
        if len(agent) != FRAME_BYTES:
            agent = (agent + SILENT_FRAME)[:FRAME_BYTES]
        if self.layout is Layout.STEREO:
            chunk = audioop.add(
                audioop.tostereo(caller, 2, 1, 0), audioop.tostereo(agent, 2, 0, 1), 2
            )
        else:
            chunk = audioop.add(caller, agent, 2)
        self._writer.write(chunk)

    def close(self) -> RecordingInfo:
        """Finish the last part; returns the recording's metadata (never raises)."""
        if self._info is None:
            self._writer.close()
            parts = self._writer.parts
            self._info = RecordingInfo(
                layout=self.layout,
                pause_mode=self.pause_mode,
                parts=parts,
                call_ms=self._ticks * FRAME_MS,
                paused_ms=self._paused_ticks * FRAME_MS,
                audio_ms=sum(p.duration_ms for p in parts),
                error=self._writer.error,
            )
        return self._info


class VoicemailStop(enum.Enum):
    """Why a voicemail recording ended."""

    DTMF = "dtmf"  # a terminator key (default '#')
    SILENCE = "silence"  # N seconds below the energy threshold
    MAX_LENGTH = "max_length"
    HANGUP = "hangup"  # stopped from outside (caller hung up)
    ERROR = "error"  # the file could not be written


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailResult:
    """Outcome of a voicemail recording. ``duration_ms`` is what the file holds (trailing
    silence trimmed); ``had_speech`` is False for an empty or silent message."""

    reason: VoicemailStop
    duration_ms: int
    had_speech: bool
    parts: tuple[PartInfo, ...]
    error: str | None = None


class VoicemailRecorder:
    """Records one leg's incoming audio (mono) until a terminator key, a run of silence or
    the maximum length; :meth:`feed` once per tick with the frame received (silence if none).

    A frame is speech when its RMS reaches ``energy_threshold`` (PCM16 units). Silent frames
    are held back while a silent run lasts and written only when speech resumes, so a
    message ended by silence, a key or a hang-up carries no trailing silence.
    """

    def __init__(
        self,
        open_part: PartOpener,
        *,
        max_seconds: float = 120.0,
        silence_seconds: float | None = 5.0,
        energy_threshold: int = 300,
        min_speech_ms: int = 200,
        terminators: str = "#",
        max_part_bytes: int = DEFAULT_MAX_PART_BYTES,
    ) -> None:
        self._writer = WavPartWriter(open_part, channels=1, max_part_bytes=max_part_bytes)
        self._max_ticks = max(1, round(max_seconds * 1000 / FRAME_MS))
        self._silence_ticks = (
            None if silence_seconds is None else max(1, round(silence_seconds * 1000 / FRAME_MS))
        )
        self.energy_threshold = energy_threshold
        self.min_speech_ms = min_speech_ms
        self.terminators = terminators
        self._ticks = 0
        self._speech_ticks = 0
        self._pending: list[bytes] = []
        self._result: VoicemailResult | None = None

    @property
    def result(self) -> VoicemailResult | None:
        """The outcome once finished, else None."""
        return self._result

    @property
    def finished(self) -> bool:
        return self._result is not None

    def feed(self, frame: bytes) -> VoicemailResult | None:
        """One tick of received audio. Returns the result when this frame ends the message.

        Raises :class:`RecorderError` once, at the first I/O failure (the result is then
        available with reason ERROR).
        """
        if self._result is not None:
            return self._result
        if len(frame) != FRAME_BYTES:
            frame = (frame + SILENT_FRAME)[:FRAME_BYTES]
        self._ticks += 1
        try:
            if audioop.rms(frame, 2) >= self.energy_threshold:
                self._speech_ticks += 1
                for held in self._pending:
                    self._writer.write(held)
                self._pending.clear()
                self._writer.write(frame)
            else:
                self._pending.append(frame)
                limit = self._silence_ticks
                if limit is not None and len(self._pending) >= limit:
                    return self._finish(VoicemailStop.SILENCE)
                if len(self._pending) > 500:  # silence detection off: bound what is held
                    self._writer.write(self._pending.pop(0))
        except RecorderError:
            self._finish(VoicemailStop.ERROR)
            raise
        if self._ticks >= self._max_ticks:
            return self._finish(VoicemailStop.MAX_LENGTH)
        return None

    def dtmf(self, digit: str) -> VoicemailResult | None:
        """A key press on the leg; a terminator ends the message."""
        if self._result is None and digit in self.terminators:
            return self._finish(VoicemailStop.DTMF)
        return self._result

    def stop(self) -> VoicemailResult:
        """End now (the caller hung up); idempotent."""
        if self._result is None:
            return self._finish(VoicemailStop.HANGUP)
        return self._result

    def _finish(self, reason: VoicemailStop) -> VoicemailResult:
        self._pending.clear()  # trailing silence is not part of the message
        self._writer.close()
        parts = self._writer.parts
        error = self._writer.error
        self._result = VoicemailResult(
            reason=VoicemailStop.ERROR if error is not None else reason,
            duration_ms=sum(p.duration_ms for p in parts),
            had_speech=self._speech_ticks * FRAME_MS >= self.min_speech_ms,
            parts=parts,
            error=error,
        )
        return self._result


class FileParts:
    """Opens the numbered parts of one recording: ``<directory>/<stem>.part001.wav``, ...

    Blocking file opens; errors propagate as OSError (the writer converts them).
    """

    def __init__(self, directory: Path | str, stem: str) -> None:
        self.directory = Path(directory)
        self.stem = stem
        self.paths: list[Path] = []

    def path(self, index: int) -> Path:
        return self.directory / f"{self.stem}.part{index:03d}.wav"

    def __call__(self, index: int) -> BinaryIO:
        path = self.path(index)
        file = path.open("wb")
        self.paths.append(path)
        return file
