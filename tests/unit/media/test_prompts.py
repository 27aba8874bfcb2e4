"""Prompts: framing, per-codec payload cache, WAV/MP3 decoding, TTS cache, tones, time stretch."""

from __future__ import annotations

import math
import os
import struct
import wave
from pathlib import Path

import pytest

from media.errors import PromptError
from media.g711 import alaw_encode, ulaw_encode
from media.goertzel import dominant_frequency_present, mean_square, relative_power
from media.prompts import Prompt, PromptCache, concat, silence, time_stretch, tone


def write_wav(path: Path, *, rate: int, channels: int, seconds: float, freq: float) -> None:
    n = int(rate * seconds)
    frames = bytearray()
    for i in range(n):
        value = int(8000 * math.sin(2 * math.pi * freq * i / rate))
        frames += struct.pack("<h", value) * channels
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(bytes(frames))


def write_silent_mp3(path: Path, frames: int) -> None:
    """MPEG-1 Layer III, 128 kbit/s, 44.1 kHz, mono frames whose side info and main data are
    all zero: a valid stream of silence (ISO 11172-3 §2.4.1), hand-made because no MP3
    encoder (lame, ffmpeg, sox mp3 support) is installed here."""
    header = bytes((0xFF, 0xFB, 0x90, 0xC0))
    frame_length = 144 * 128000 // 44100  # 417 octets, padding bit clear
    path.write_bytes((header + bytes(frame_length - 4)) * frames)


def test_from_pcm_pads_last_frame_and_payloads_cached() -> None:
    pcm = b"\x01\x02" * 200  # 400 bytes -> 2 frames, last padded
    prompt = Prompt.from_pcm(pcm)
    assert len(prompt) == 2 and prompt.duration_ms == 40
    assert all(len(f) == 320 for f in prompt.frames)
    assert prompt.frames[1] == b"\x01\x02" * 40 + bytes(240)
    pcmu = prompt.payloads("PCMU")
    assert pcmu is prompt.payloads("PCMU")
    assert pcmu == tuple(ulaw_encode(f) for f in prompt.frames)
    assert prompt.payloads("PCMA") == tuple(alaw_encode(f) for f in prompt.frames)
    with pytest.raises(ValueError):
        Prompt([b"\x00" * 10])


def test_wav_16k_stereo_decodes_to_8k_mono_frames(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    write_wav(path, rate=16000, channels=2, seconds=1.0, freq=440.0)
    cache = PromptCache(tmp_path / "cache")
    prompt = cache.from_file(path)
    assert all(len(f) == 320 for f in prompt.frames)
    assert 49 <= len(prompt) <= 51  # 1 s at 20 ms frames
    assert dominant_frequency_present(prompt.pcm[1600:-1600], 440.0, 0.8)
    assert cache.from_file(path) is prompt and cache.file_decodes == 1
    # an edited file (new size/mtime) is decoded again
    write_wav(path, rate=8000, channels=1, seconds=0.5, freq=1000.0)
    os.utime(path, ns=(1, 1))
    again = cache.from_file(path)
    assert again is not prompt and cache.file_decodes == 2 and 24 <= len(again) <= 26


def test_mp3_decodes(tmp_path: Path) -> None:
    path = tmp_path / "silence.mp3"
    write_silent_mp3(path, 40)  # 40 * 1152 samples at 44.1 kHz = 1.045 s
    prompt = PromptCache(tmp_path).from_file(path)
    assert 51 <= len(prompt) <= 53
    assert mean_square(prompt.pcm) == 0.0


def test_missing_unreadable_undecodable_files(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path)
    with pytest.raises(PromptError, match="not found"):
        cache.from_file(tmp_path / "nope.wav")
    with pytest.raises(PromptError, match="not a file"):
        cache.from_file(tmp_path)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio" * 20)
    with pytest.raises(PromptError, match="could not be decoded"):
        cache.from_file(junk)


def test_tts_renders_once_and_caches_on_disk(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path / "tts")
    prompt = cache.tts("Welcome to switchhook. Press one for sales.")
    assert cache.tts_renders == 1
    # plausible duration for ~8 words of speech, and not silent
    assert 1000 <= prompt.duration_ms <= 8000
    assert mean_square(prompt.pcm) > 1000.0
    assert cache.tts("Welcome to switchhook. Press one for sales.") is prompt
    assert cache.tts_renders == 1
    assert cache.cached_tts("Welcome to switchhook. Press one for sales.") is prompt
    digest = PromptCache.tts_key_digest("Welcome to switchhook. Press one for sales.")
    assert (tmp_path / "tts" / f"{digest}.wav").is_file()
    # a new cache on the same directory (engine restart) reuses the file
    restarted = PromptCache(tmp_path / "tts")
    assert restarted.tts("Welcome to switchhook. Press one for sales.").frames == prompt.frames
    assert restarted.tts_renders == 0
    # a different rate is a different key
    faster = cache.tts("Welcome to switchhook. Press one for sales.", rate=260)
    assert cache.tts_renders == 2 and len(faster) < len(prompt)


def test_tts_espeak_ng_subprocess_fallback(tmp_path: Path) -> None:
    cache = PromptCache(tmp_path, tts_engine="espeak-ng")
    prompt = cache.tts("one two three", voice="en-us")
    assert cache.tts_renders == 1 and mean_square(prompt.pcm) > 1000.0


def test_tts_empty_text_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PromptError, match="empty"):
        PromptCache(tmp_path).tts("   ")


def test_tone_silence_concat() -> None:
    dial = tone((350.0, 440.0), 1000, amplitude=10000)
    assert len(dial) == 50
    assert dominant_frequency_present(dial.pcm, 350.0, 0.4)
    assert dominant_frequency_present(dial.pcm, 440.0, 0.4)
    assert max(abs(v) for (v,) in struct.iter_unpack("<h", dial.pcm)) <= 10000
    quiet = silence(30)
    assert len(quiet) == 2 and quiet.pcm == bytes(640)
    both = concat(dial, quiet)
    assert both.frames == dial.frames + quiet.frames
    cache = PromptCache("/nonexistent-unused")
    assert cache.tone((350, 440), 1000, 10000) is cache.tone((350.0, 440.0), 1000, 10000)


@pytest.mark.parametrize("speed", [0.5, 0.8, 1.25, 2.0])
def test_time_stretch_keeps_pitch(speed: float) -> None:
    source = tone((440.0,), 2000)
    stretched = time_stretch(source, speed)
    expected_samples = 16000 / speed
    assert abs(len(stretched.pcm) // 2 - expected_samples) <= 160  # within one frame
    pcm = stretched.pcm
    # Goertzel over 200 ms blocks: 440 Hz dominates, and not the naive-resampled frequency
    for start in range(3200, len(pcm) - 6400, 3200):
        block = pcm[start : start + 3200]
        assert relative_power(block, 440.0) > 0.9
        assert relative_power(block, 440.0 * speed) < 0.1
        best = max(range(300, 600, 10), key=lambda f: relative_power(block, f))
        assert best == 440


def test_time_stretch_speech_length_and_bounds(tmp_path: Path) -> None:
    speech = PromptCache(tmp_path).tts("time stretch check")
    fast = time_stretch(speech, 1.5)
    assert abs(len(fast) - len(speech) / 1.5) <= 1
    assert time_stretch(speech, 1.0) is speech
    with pytest.raises(ValueError):
        time_stretch(speech, 3.0)
