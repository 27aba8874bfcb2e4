"""Call and voicemail recorders: WAV layout, channel separation (coach never recorded),
pause/redaction, part splitting, I/O failures raised once without hurting the call."""

from __future__ import annotations

import errno
import io
import os
import warnings
import wave
from pathlib import Path

import pytest

from media.bridge import Bridge, Side, TapMode
from media.errors import RecorderError
from media.goertzel import dominant_frequency_present
from media.prompts import tone
from media.recorder import (
    WAV_HEADER_BYTES,
    CallRecorder,
    FileParts,
    Layout,
    PauseMode,
    VoicemailRecorder,
    VoicemailStop,
    WavPartWriter,
)
from tests.unit.media.fakes import FakeClock, FakeLeg, Phone

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SILENCE = bytes(320)


class KeptFile(io.BytesIO):
    """A BytesIO that keeps its content after close, and can fail after ``limit`` bytes."""

    def __init__(self, limit: int | None = None) -> None:
        super().__init__()
        self.limit = limit
        self.value = b""
        self.written = 0

    def write(self, data: bytes) -> int:  # type: ignore[override]
        if self.limit is not None and self.written + len(data) > self.limit:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.written += len(data)
        return super().write(data)

    def close(self) -> None:
        if not self.closed:
            self.value = self.getvalue()
        super().close()


class MemoryParts:
    """Part factory for tests: parts in memory; optionally a disk that fills up."""

    def __init__(self, limit: int | None = None, fail_open_at: int | None = None) -> None:
        self.files: list[KeptFile] = []
        self.limit = limit
        self.fail_open_at = fail_open_at
        self.indexes: list[int] = []

    def __call__(self, index: int) -> KeptFile:
        if index == self.fail_open_at:
            raise PermissionError(errno.EACCES, "Permission denied")
        self.indexes.append(index)
        file = KeptFile(self.limit)
        self.files.append(file)
        return file


def read_wav(data: bytes) -> tuple[int, bytes]:
    with wave.open(io.BytesIO(data)) as w:
        assert w.getframerate() == 8000 and w.getsampwidth() == 2
        return w.getnchannels(), w.readframes(w.getnframes())


def frames(hz: float, n: int) -> list[bytes]:
    return list(tone((hz,), 20 * n).frames)


def test_stereo_puts_caller_left_agent_right() -> None:
    parts = MemoryParts()
    rec = CallRecorder(parts)
    for c, a in zip(frames(440.0, 25), frames(1000.0, 25), strict=True):
        rec.write(c, a)
    info = rec.close()
    assert rec.close() is info  # idempotent
    assert info.complete and info.audio_ms == info.call_ms == 500 and info.paused_ms == 0
    channels, pcm = read_wav(parts.files[0].value)
    left, right = audioop.tomono(pcm, 2, 1, 0), audioop.tomono(pcm, 2, 0, 1)
    assert channels == 2 and len(left) == 25 * 320
    assert dominant_frequency_present(left, 440.0, 0.95)
    assert dominant_frequency_present(right, 1000.0, 0.95)
    assert not dominant_frequency_present(left, 1000.0, 0.01)


def test_mono_mixes_both_sides() -> None:
    parts = MemoryParts()
    rec = CallRecorder(parts, layout=Layout.MONO)
    for c, a in zip(frames(440.0, 25), frames(1000.0, 25), strict=True):
        rec.write(c, a)
    rec.close()
    channels, pcm = read_wav(parts.files[0].value)
    assert channels == 1
    assert dominant_frequency_present(pcm, 440.0, 0.3)
    assert dominant_frequency_present(pcm, 1000.0, 0.3)


@pytest.mark.parametrize("mode", [PauseMode.SILENCE, PauseMode.OMIT])
def test_pause_redacts_and_keeps_duration_honest(mode: PauseMode) -> None:
    parts = MemoryParts()
    rec = CallRecorder(parts, layout=Layout.MONO, pause_mode=mode)
    loud = frames(440.0, 30)
    for f in loud[:10]:
        rec.write(f, SILENCE)
    rec.pause()
    assert rec.paused
    for f in loud[10:20]:  # the card number
        rec.write(f, SILENCE)
    rec.resume()
    for f in loud[20:]:
        rec.write(f, SILENCE)
    info = rec.close()
    _, pcm = read_wav(parts.files[0].value)
    assert info.call_ms == 600 and info.paused_ms == 200
    if mode is PauseMode.SILENCE:
        assert info.audio_ms == 600 and pcm[10 * 320 : 20 * 320] == bytes(10 * 320)
        assert pcm[:3200] == b"".join(loud[:10]) and pcm[6400:] == b"".join(loud[20:])
    else:
        assert info.audio_ms == 400 and pcm == b"".join(loud[:10] + loud[20:])


def test_parts_split_in_order_below_the_size_limit() -> None:
    parts = MemoryParts()
    limit = WAV_HEADER_BYTES + 5 * 640  # five stereo frames per part
    rec = CallRecorder(parts, max_part_bytes=limit)
    caller, agent = frames(440.0, 12), frames(1000.0, 12)
    for c, a in zip(caller, agent, strict=True):
        rec.write(c, a)
    info = rec.close()
    assert parts.indexes == [1, 2, 3]
    assert [p.index for p in info.parts] == [1, 2, 3]
    assert [p.duration_ms for p in info.parts] == [100, 100, 40]
    assert info.audio_ms == 240
    pcm = b""
    for f in parts.files:
        assert len(f.value) <= limit
        channels, data = read_wav(f.value)
        assert channels == 2  # every part is a valid WAV on its own
        pcm += data
    assert audioop.tomono(pcm, 2, 1, 0) == b"".join(caller)
    with pytest.raises(ValueError):
        CallRecorder(parts, max_part_bytes=100)


def test_disk_full_raises_once_then_recording_stops() -> None:
    parts = MemoryParts(limit=WAV_HEADER_BYTES + 3 * 640)
    rec = CallRecorder(parts)
    for _ in range(3):
        rec.write(SILENCE, SILENCE)
    with pytest.raises(RecorderError, match="No space left"):
        rec.write(SILENCE, SILENCE)
    assert rec.failed
    rec.write(SILENCE, SILENCE)  # no second raise
    info = rec.close()
    assert not info.complete and info.error is not None and "part 1" in info.error


def test_unwritable_directory_is_a_recorder_error(tmp_path: Path) -> None:
    missing = FileParts(tmp_path / "no" / "such" / "dir", "call-1")
    rec = CallRecorder(missing)
    with pytest.raises(RecorderError):
        rec.write(SILENCE, SILENCE)
    assert rec.close().parts == ()
    if os.geteuid() != 0:  # root ignores directory permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            rec = CallRecorder(FileParts(ro, "call-2"))
            with pytest.raises(RecorderError, match="Permission"):
                rec.write(SILENCE, SILENCE)
        finally:
            ro.chmod(0o700)


def test_failure_on_second_part_and_on_close() -> None:
    parts = MemoryParts(fail_open_at=2)
    rec = CallRecorder(parts, max_part_bytes=WAV_HEADER_BYTES + 640)
    rec.write(SILENCE, SILENCE)
    with pytest.raises(RecorderError, match="part 2"):
        rec.write(SILENCE, SILENCE)
    info = rec.close()
    assert [p.index for p in info.parts] == [1] and info.error is not None
    # A file that can no longer be written when its header is patched: close reports it.
    broken = MemoryParts()
    writer = WavPartWriter(broken, channels=1)
    writer.write(SILENCE)
    broken.files[0].limit = 0
    writer.close()
    assert writer.failed and "closing part 1" in (writer.error or "")


def test_file_parts_names_are_numbered(tmp_path: Path) -> None:
    opener = FileParts(tmp_path, "call-42")
    rec = CallRecorder(opener, layout=Layout.MONO, max_part_bytes=WAV_HEADER_BYTES + 320)
    rec.write(SILENCE, SILENCE)
    rec.write(SILENCE, SILENCE)
    rec.close()
    assert [p.name for p in opener.paths] == ["call-42.part001.wav", "call-42.part002.wav"]
    for path in opener.paths:
        with wave.open(str(path)) as w:
            assert w.getnframes() == 160


def test_recording_a_bridged_call_keeps_coach_out_and_survives_write_errors() -> None:
    clock = FakeClock()
    caller = FakeLeg("caller", clock)
    agent = FakeLeg("agent", clock, ssrc=0xA0)
    sup = FakeLeg("sup", clock, ssrc=0x50)
    phones = {
        "caller": Phone(tone((440.0,), 400)),
        "agent": Phone(tone((1000.0,), 400)),
        "sup": Phone(tone((2000.0,), 400)),
    }
    bridge = Bridge(caller, agent, clock=clock)
    bridge.start()
    parts = MemoryParts()
    rec = CallRecorder(parts)
    bridge.attach_recorder(rec)
    tap = bridge.add_tap(sup, TapMode.COACH)

    def run(n: int) -> None:
        for _ in range(n):
            for leg in (caller, agent, sup):
                leg.receive(phones[leg.name].next_packet())
            clock.tick()

    run(30)
    tap.set_mode(TapMode.BARGE)
    run(30)
    bridge.detach_recorder(rec)
    info = rec.close()
    assert info.call_ms == 1200
    _, pcm = read_wav(parts.files[0].value)
    left, right = audioop.tomono(pcm, 2, 1, 0), audioop.tomono(pcm, 2, 0, 1)
    coach_right, barge_right = right[5 * 320 : 30 * 320], right[35 * 320 :]
    assert not dominant_frequency_present(left, 2000.0, 0.01)  # customer side: never
    assert dominant_frequency_present(left, 440.0, 0.95)
    assert not dominant_frequency_present(coach_right, 2000.0, 0.01)  # coach: not recorded
    assert dominant_frequency_present(barge_right, 2000.0, 0.3)  # barge: agent side
    assert dominant_frequency_present(barge_right, 1000.0, 0.3)

    # Disk fills up mid-call: one error reported, recorder detached, the call goes on.
    errors: list[RecorderError] = []
    failing = CallRecorder(MemoryParts(limit=WAV_HEADER_BYTES + 2 * 640))
    bridge.attach_recorder(failing, errors.append)
    sent_before = len(agent.sent)
    run(10)
    assert len(errors) == 1 and failing.failed
    assert len(agent.sent) == sent_before + 10
    bridge.stop()
    assert bridge.hears(Side.AGENT) == "none"


# -- voicemail ---------------------------------------------------------------------------------

SPEECH = frames(300.0, 1)[0]


def test_voicemail_stops_on_hash_and_trims_trailing_silence() -> None:
    parts = MemoryParts()
    vm = VoicemailRecorder(parts)
    for f in frames(300.0, 50):
        assert vm.feed(f) is None
    for _ in range(10):
        assert vm.feed(SILENCE) is None
    assert vm.dtmf("5") is None
    result = vm.dtmf("#")
    assert result is not None and result.reason is VoicemailStop.DTMF
    assert result.duration_ms == 1000 and result.had_speech
    assert vm.feed(SPEECH) is result and vm.stop() is result and vm.finished
    channels, pcm = read_wav(parts.files[0].value)
    assert channels == 1 and len(pcm) == 50 * 320


def test_voicemail_stops_after_silence_and_keeps_pauses_between_words() -> None:
    vm = VoicemailRecorder(MemoryParts(), silence_seconds=1.0)
    for _ in range(20):
        vm.feed(SPEECH)
    for _ in range(30):  # a 0.6 s pause inside the message is kept
        assert vm.feed(SILENCE) is None
    for _ in range(20):
        vm.feed(SPEECH)
    result = None
    ticks = 0
    while result is None:
        result = vm.feed(SILENCE)
        ticks += 1
    assert ticks == 50  # exactly one second of silence
    assert result.reason is VoicemailStop.SILENCE and result.duration_ms == 70 * 20


def test_voicemail_max_length_hangup_and_empty_message() -> None:
    vm = VoicemailRecorder(MemoryParts(), max_seconds=0.5, silence_seconds=None)
    results = [vm.feed(SPEECH) for _ in range(25)]
    assert results[:24] == [None] * 24
    last = results[24]
    assert last is not None and last.reason is VoicemailStop.MAX_LENGTH
    assert last.duration_ms == 500
    hung = VoicemailRecorder(MemoryParts())
    for _ in range(5):
        hung.feed(SPEECH)  # 100 ms: a click, not speech
    res = hung.stop()
    assert res.reason is VoicemailStop.HANGUP and not res.had_speech and res.duration_ms == 100
    quiet = VoicemailRecorder(MemoryParts(), silence_seconds=0.2)
    outcome = [quiet.feed(audioop.mul(SPEECH, 2, 0.01)) for _ in range(10)]  # line noise
    done = [r for r in outcome if r is not None]
    assert done[0].reason is VoicemailStop.SILENCE and not done[0].had_speech
    assert done[0].duration_ms == 0


def test_voicemail_write_error_is_raised_once_and_reported() -> None:
    vm = VoicemailRecorder(MemoryParts(limit=WAV_HEADER_BYTES + 320))
    vm.feed(SPEECH)
    with pytest.raises(RecorderError):
        vm.feed(SPEECH)
    result = vm.result
    assert result is not None and result.reason is VoicemailStop.ERROR and result.error
    assert vm.feed(SPEECH) is result
