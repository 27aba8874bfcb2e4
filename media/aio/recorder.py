"""Driving recorders from the shared media clock: a voicemail session on one endpoint.

(Call recordings of bridged calls are fed by the bridge's own tick:
:meth:`media.bridge.Bridge.attach_recorder`.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from media.aio.rtp import RtpEndpoint
from media.errors import RecorderError
from media.mixer import FrameSlot
from media.recorder import VoicemailRecorder, VoicemailResult

__all__ = ["VoicemailSession"]

log = structlog.get_logger(__name__)


class VoicemailSession:
    """Feeds one endpoint's received audio into a :class:`VoicemailRecorder` once per tick
    (a missing packet is a silent frame) and its DTMF key presses, until the recorder stops.

    ``done`` resolves with the :class:`VoicemailResult`; :meth:`stop` ends it at once (hang-up)
    and is safe to call from ``finally``. The endpoint's ``packet_sink`` is taken and its
    ``on_dtmf`` chained (the previous handler still sees every digit) for the duration.
    """

    def __init__(self, endpoint: RtpEndpoint, recorder: VoicemailRecorder) -> None:
        self._endpoint = endpoint
        self._recorder = recorder
        self._slot = FrameSlot()
        self._previous_dtmf: Callable[[str], None] | None = None
        self._running = False
        self.done: asyncio.Future[VoicemailResult] = asyncio.get_running_loop().create_future()

    def start(self) -> None:
        endpoint = self._endpoint
        if self._running or self.done.done():
            return
        self._running = True
        self._previous_dtmf = endpoint.on_dtmf
        endpoint.on_dtmf = self._on_dtmf
        endpoint.packet_sink = self._on_packet
        endpoint.clock.add(self)

    def _on_packet(self, data: bytes, start: int, end: int) -> None:
        codec = self._endpoint.codec
        if codec is not None and data[1] & 0x7F == self._endpoint.payload_type:
            self._slot.push(codec.decode(data[start:end]))

    def _on_dtmf(self, digit: str) -> None:
        previous = self._previous_dtmf
        if previous is not None:
            previous(digit)
        result = self._recorder.dtmf(digit)
        if result is not None:
            self._complete(result)

    def on_tick(self, tick: int) -> None:
        try:
            result = self._recorder.feed(self._slot.pop())
        except RecorderError as exc:
            log.warning("voicemail_write_failed", port=self._endpoint.local_port, error=str(exc))
            result = self._recorder.result
        if result is not None:
            self._complete(result)

    def stop(self) -> VoicemailResult:
        """End the recording now (idempotent) and return its result."""
        result = self._recorder.stop()
        self._complete(result)
        return result

    def _complete(self, result: VoicemailResult) -> None:
        if self._running:
            self._running = False
            endpoint = self._endpoint
            endpoint.clock.remove(self)
            endpoint.packet_sink = None
            endpoint.on_dtmf = self._previous_dtmf
        if not self.done.done():
            self.done.set_result(result)
