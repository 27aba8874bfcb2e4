"""Prompts: immutable 20 ms PCM16 frames with per-codec payloads encoded once, and a cache
that decodes files (WAV/MP3) and renders TTS once.

Everything here is blocking (file decoding, TTS): the engine calls :meth:`PromptCache.tts`,
:meth:`PromptCache.from_file` and :func:`render_tts` in an executor, or warms the cache at
start-up, never on the event loop. The send path only indexes ``Prompt.payloads(codec)``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import miniaudio  # type: ignore[import-untyped]

from media.errors import PromptError
from media.g711 import FRAME_BYTES, SAMPLE_RATE, get_codec

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "Prompt",
    "PromptCache",
    "concat",
    "render_tts",
    "silence",
    "time_stretch",
    "tone",
]

_SILENT_FRAME = bytes(FRAME_BYTES)


class Prompt:
    """An immutable sequence of PCM16 LE 8 kHz mono frames of exactly 320 bytes (20 ms).

    ``payloads(codec)`` encodes every frame once per codec and caches the tuple, so the
    per-tick send path is a tuple index.
    """

    __slots__ = ("_frames", "_lock", "_payloads", "name")

    def __init__(self, frames: Iterable[bytes], *, name: str = "") -> None:
        frames = tuple(frames)
        for frame in frames:
            if len(frame) != FRAME_BYTES:
                raise ValueError(f"prompt frames must be {FRAME_BYTES} bytes, got {len(frame)}")
        self._frames: tuple[bytes, ...] = frames
        self._payloads: dict[str, tuple[bytes, ...]] = {}
        self._lock = threading.Lock()
        self.name = name

    @classmethod
    def from_pcm(cls, pcm: bytes, *, name: str = "") -> Prompt:
        """Split PCM16 LE 8 kHz mono into 20 ms frames; the last frame is zero-padded."""
        if len(pcm) % 2:
            pcm = pcm[:-1]
        frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm), FRAME_BYTES)]
        if frames and len(frames[-1]) < FRAME_BYTES:
            frames[-1] = frames[-1] + bytes(FRAME_BYTES - len(frames[-1]))
        return cls(frames, name=name)

    @property
    def frames(self) -> tuple[bytes, ...]:
        """The PCM16 frames, 320 bytes each."""
        return self._frames

    @property
    def pcm(self) -> bytes:
        """All frames joined."""
        return b"".join(self._frames)

    @property
    def duration_ms(self) -> int:
        """Length in milliseconds (20 ms per frame)."""
        return 20 * len(self._frames)

    def __len__(self) -> int:
        return len(self._frames)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._frames)

    def __repr__(self) -> str:
        return f"Prompt(name={self.name!r}, frames={len(self._frames)})"

    def payloads(self, codec: str) -> tuple[bytes, ...]:
        """Encoded payload per frame for ``codec`` ("PCMU"/"PCMA"), computed once."""
        cached = self._payloads.get(codec)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._payloads.get(codec)
            if cached is None:
                encode = get_codec(codec).encode
                cached = tuple(encode(frame) for frame in self._frames)
                self._payloads[codec] = cached
            return cached


def silence(duration_ms: int) -> Prompt:
    """Digital silence, rounded up to whole 20 ms frames."""
    count = -(-duration_ms // 20)
    return Prompt((_SILENT_FRAME,) * count, name=f"silence:{duration_ms}")


def tone(frequencies: Sequence[float], duration_ms: int, amplitude: int = 8000) -> Prompt:
    """Sum of sines (e.g. 350+440 Hz dial tone) with a total peak of about ``amplitude``."""
    if not frequencies:
        return silence(duration_ms)
    if not 0 <= amplitude <= 32767:
        raise ValueError("amplitude must be within 0..32767")
    count = duration_ms * SAMPLE_RATE // 1000
    per_tone = amplitude / len(frequencies)
    steps = [2.0 * math.pi * f / SAMPLE_RATE for f in frequencies]
    samples = array(
        "h", (round(per_tone * sum(math.sin(step * n) for step in steps)) for n in range(count))
    )
    return Prompt.from_pcm(_to_le_bytes(samples), name=f"tone:{'+'.join(map(str, frequencies))}")


def concat(*prompts: Prompt) -> Prompt:
    """Frames of all prompts in order (each prompt's own last-frame padding is kept)."""
    frames: list[bytes] = []
    for prompt in prompts:
        frames.extend(prompt.frames)
    return Prompt(frames, name="+".join(p.name for p in prompts))


def _to_le_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _from_le_bytes(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


# --------------------------------------------------------------------------------------------
# Time stretch (WSOLA)

_WSOLA_WINDOW = 240  # 30 ms at 8 kHz: longer than a pitch period, short enough for speech
_WSOLA_HOP = _WSOLA_WINDOW // 2
_WSOLA_TOLERANCE = 80  # search +-10 ms around the nominal analysis position


def time_stretch(prompt: Prompt, speed: float) -> Prompt:
    """Change playback speed without changing pitch (WSOLA), ``speed`` in 0.5..2.0.

    Waveform-similarity overlap-add (Verhelst & Roelands 1993): output windows (Hann, 50 %
    overlap, which sums to one) are taken from the input at ``speed`` times the output hop,
    each shifted within +-10 ms to best continue the previous segment (least RMS difference,
    computed with ``audioop`` in C). Output length is ``round(len / speed)`` samples.
    """
    if not 0.5 <= speed <= 2.0:
        raise ValueError(f"speed {speed} outside 0.5..2.0")
    if speed == 1.0 or not prompt.frames:
        return prompt
    pcm = prompt.pcm
    x = _from_le_bytes(pcm)
    n_in = len(x)
    n_out = round(n_in / speed)
    win = _WSOLA_WINDOW
    hop = _WSOLA_HOP
    tol = _WSOLA_TOLERANCE
    window = [0.5 - 0.5 * math.cos(2.0 * math.pi * i / win) for i in range(win)]
    # Pad the input so every window and every search region stays in range.
    padded_pcm = bytes(2 * tol) + pcm + bytes(2 * (win + hop + tol + int(hop * speed) + 1))
    offset = tol
    y = [0.0] * (n_out + win + hop)
    prev = 0  # input position (unpadded) of the previous chosen segment
    k = 0
    while k * hop < n_out:
        nominal = round(k * hop * speed)
        if k == 0:
            pos = 0
        else:
            # Natural continuation of the previous segment: what would follow it in the input.
            target_start = (offset + prev + hop) * 2
            target = padded_pcm[target_start : target_start + 2 * hop]
            lo = max(0, nominal - tol)
            region = padded_pcm[(offset + lo) * 2 : (offset + nominal + tol + hop) * 2]
            pos = lo + _best_match(region, target) if any(target) else nominal
        seg_start = offset + pos
        seg = _from_le_bytes(padded_pcm[seg_start * 2 : (seg_start + win) * 2])
        base = k * hop
        for i, sample in enumerate(seg):
            y[base + i] += sample * window[i]
        prev = pos
        k += 1
    # The first half-window has no predecessor to overlap with: undo its fade-in.
    for i in range(min(hop, n_out)):
        if window[i] > 1e-3:
            y[i] /= window[i]
    out = array("h", (max(-32768, min(32767, round(v))) for v in y[:n_out]))
    return Prompt.from_pcm(_to_le_bytes(out), name=f"{prompt.name}@x{speed:g}")


def _best_match(region: bytes, target: bytes) -> int:
    """Sample offset in ``region`` where ``target`` fits with the least RMS difference.

    Not ``audioop.findfit``: it also accepts a negative gain, i.e. a segment in anti-phase,
    which is exactly what must not be overlap-added. ``add``/``rms`` keep the loop in C.
    """
    negated = audioop.mul(target, 2, -1.0)
    size = len(target)
    best_offset = 0
    best_error = -1
    add = audioop.add
    rms = audioop.rms
    for start in range(0, len(region) - size + 1, 2):
        error = rms(add(region[start : start + size], negated, 2), 2)
        if best_error < 0 or error < best_error:
            best_error = error
            best_offset = start // 2
    return best_offset


# --------------------------------------------------------------------------------------------
# Decoding and TTS


def decode_file(path: Path) -> Prompt:
    """Decode a WAV/MP3/FLAC/Vorbis file to an 8 kHz mono prompt via miniaudio."""
    try:
        decoded = miniaudio.decode_file(
            str(path),
            output_format=miniaudio.SampleFormat.SIGNED16,
            nchannels=1,
            sample_rate=SAMPLE_RATE,
        )
    except FileNotFoundError as exc:
        raise PromptError(f"prompt file not found: {path}") from exc
    except OSError as exc:
        raise PromptError(f"prompt file unreadable: {path}: {exc}") from exc
    except miniaudio.MiniaudioError as exc:
        raise PromptError(f"prompt file could not be decoded: {path}: {exc}") from exc
    samples = decoded.samples
    if not isinstance(samples, array):  # pragma: no cover - miniaudio always returns array
        samples = array("h", samples)
    return Prompt.from_pcm(_to_le_bytes(samples), name=str(path))


def render_tts(
    text: str,
    out_path: Path,
    *,
    voice: str | None = None,
    rate: int | None = None,
    engine: str = "auto",
) -> str:
    """Render ``text`` to a WAV file; blocking (call it in an executor). Returns the engine used.

    ``engine="pyttsx3"`` uses pyttsx3's ``save_to_file`` with the ``espeak`` driver
    (espeak-ng); ``engine="espeak-ng"`` runs ``espeak-ng -w out.wav`` in a subprocess.
    ``"auto"`` tries pyttsx3 first and falls back to the subprocess when pyttsx3 fails or
    writes no audio, which happens on some headless hosts. ``voice`` is an espeak voice name
    (e.g. ``"en-us"``), ``rate`` words per minute.
    """
    if not text.strip():
        raise PromptError("TTS text is empty")
    errors: list[str] = []
    if engine in ("auto", "pyttsx3"):
        try:
            _render_pyttsx3(text, out_path, voice, rate)
            if out_path.exists() and out_path.stat().st_size > 44:
                return "pyttsx3"
            errors.append("pyttsx3 wrote no audio")
        except Exception as exc:  # third-party driver errors of any kind: converted here
            errors.append(f"pyttsx3 failed: {exc!r}")
        if engine == "pyttsx3":
            raise PromptError(f"TTS rendering failed: {'; '.join(errors)}")
    if engine in ("auto", "espeak-ng"):
        try:
            _render_espeak_ng(text, out_path, voice, rate)
            return "espeak-ng"
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"espeak-ng failed: {exc!r}")
        raise PromptError(f"TTS rendering failed: {'; '.join(errors)}")
    raise PromptError(f"unknown TTS engine {engine!r}")


_PYTTSX3_LOCK = threading.Lock()


def _render_pyttsx3(text: str, out_path: Path, voice: str | None, rate: int | None) -> None:
    import pyttsx3  # type: ignore[import-untyped]

    # pyttsx3 keeps one engine per driver and is not thread-safe; it also prints to stdout.
    with _PYTTSX3_LOCK, contextlib.redirect_stdout(io.StringIO()):
        tts_engine = pyttsx3.init("espeak")
        if voice is not None:
            tts_engine.setProperty("voice", voice)
        if rate is not None:
            tts_engine.setProperty("rate", rate)
        tts_engine.save_to_file(text, str(out_path))
        tts_engine.runAndWait()


def _render_espeak_ng(text: str, out_path: Path, voice: str | None, rate: int | None) -> None:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise FileNotFoundError("espeak-ng not installed")
    cmd = [exe, "-w", str(out_path)]
    if voice is not None:
        cmd += ["-v", voice]
    if rate is not None:
        cmd += ["-s", str(rate)]
    cmd += ["--", text]
    subprocess.run(cmd, check=True, capture_output=True, timeout=60)


class PromptCache:
    """Decodes prompt files and renders TTS once; keeps the results in memory (and TTS on disk).

    Files are keyed by (resolved path, mtime, size), so an edited file is decoded again.
    TTS is keyed by (text, voice, rate); the WAV is stored in ``cache_dir`` under the SHA-256
    of the key, so a restart reuses it. ``tts_renders`` counts actual renders. Thread-safe:
    the engine may call these methods from executor threads.
    """

    def __init__(self, cache_dir: Path | str, *, tts_engine: str = "auto") -> None:
        self.cache_dir = Path(cache_dir)
        self.tts_engine = tts_engine
        self.tts_renders = 0
        self.file_decodes = 0
        self._files: dict[tuple[str, int, int], Prompt] = {}
        self._tts: dict[tuple[str, str | None, int | None], Prompt] = {}
        self._tones: dict[tuple[tuple[float, ...], int, int], Prompt] = {}
        self._lock = threading.Lock()

    def from_file(self, path: Path | str) -> Prompt:
        """The decoded prompt for a WAV/MP3 file; raise :class:`PromptError` if impossible."""
        path = Path(path)
        try:
            resolved = path.resolve()
            st = resolved.stat()
        except FileNotFoundError as exc:
            raise PromptError(f"prompt file not found: {path}") from exc
        except OSError as exc:
            raise PromptError(f"prompt file unreadable: {path}: {exc}") from exc
        if not resolved.is_file():
            raise PromptError(f"prompt path is not a file: {path}")
        if not os.access(resolved, os.R_OK):
            raise PromptError(f"prompt file unreadable: {path}")
        key = (str(resolved), st.st_mtime_ns, st.st_size)
        with self._lock:
            cached = self._files.get(key)
            if cached is not None:
                return cached
            prompt = decode_file(resolved)
            self.file_decodes += 1
            self._files[key] = prompt
            return prompt

    @staticmethod
    def tts_key_digest(text: str, voice: str | None = None, rate: int | None = None) -> str:
        """SHA-256 hex digest naming the on-disk render of (text, voice, rate)."""
        key = repr((text, voice, rate)).encode("utf-8")
        return hashlib.sha256(key).hexdigest()

    def cached_tts(
        self, text: str, voice: str | None = None, rate: int | None = None
    ) -> Prompt | None:
        """The TTS prompt if already in memory, else None; never blocks on rendering."""
        return self._tts.get((text, voice, rate))

    def tts(self, text: str, voice: str | None = None, rate: int | None = None) -> Prompt:
        """The TTS prompt for (text, voice, rate), rendered once (blocking on first use)."""
        key = (text, voice, rate)
        cached = self._tts.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._tts.get(key)
            if cached is not None:
                return cached
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            wav = self.cache_dir / f"{self.tts_key_digest(text, voice, rate)}.wav"
            if not wav.exists():
                fd, tmp_name = tempfile.mkstemp(suffix=".wav", dir=self.cache_dir)
                os.close(fd)
                tmp = Path(tmp_name)
                try:
                    render_tts(text, tmp, voice=voice, rate=rate, engine=self.tts_engine)
                    self.tts_renders += 1
                    os.replace(tmp, wav)  # atomic: a crash never leaves a half-written cache
                finally:
                    tmp.unlink(missing_ok=True)
            prompt = decode_file(wav)
            prompt.name = f"tts:{text[:40]}"
            self._tts[key] = prompt
            return prompt

    render_tts = tts
    """Alias: the sync rendering entry point (blocking; run it in an executor)."""

    def tone(self, frequencies: Sequence[float], duration_ms: int, amplitude: int = 8000) -> Prompt:
        """Cached :func:`tone`."""
        key = (tuple(float(f) for f in frequencies), duration_ms, amplitude)
        cached = self._tones.get(key)
        if cached is None:
            cached = tone(key[0], duration_ms, amplitude)
            self._tones[key] = cached
        return cached

    @staticmethod
    def silence(duration_ms: int) -> Prompt:
        """See :func:`silence`."""
        return silence(duration_ms)

    @staticmethod
    def concat(*prompts: Prompt) -> Prompt:
        """See :func:`concat`."""
        return concat(*prompts)

    @staticmethod
    def time_stretch(prompt: Prompt, speed: float) -> Prompt:
        """See :func:`time_stretch`."""
        return time_stretch(prompt, speed)
