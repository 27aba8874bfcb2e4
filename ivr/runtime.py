"""Executes a flow session's actions on a live call (the flow interpreter's runtime).

The interpreter (:mod:`ivr.flows.interpreter`) is pure: events in, actions out. This module
is its asyncio side for one call: it answers or rejects through the engine, renders prompt
items to audio (TTS in an executor, files from the cache), plays them on the call's RTP
endpoint, arms timers with ``loop.call_later``, feeds DTMF digits back, and logs the
observable facts (nodes entered, variables set, menu choices) bound to the call id.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import structlog

from media.errors import MediaError
from media.prompts import Prompt, concat, silence, tone

from .flows import actions as fa
from .flows.interpreter import CallContext, FlowSession
from .tasks import TaskResult

if TYPE_CHECKING:
    from .call import Call

log = structlog.get_logger("switchhook.flow")


class FlowRuntime:
    """Runs one call through its flow session until the session or the call ends."""

    def __init__(self, call: Call, session: FlowSession) -> None:
        self.call = call
        self.session = session
        self.events: asyncio.Queue[fa.Event] = asyncio.Queue()
        self.timers: dict[str, asyncio.TimerHandle] = {}
        self.playing: str | None = None
        self._play_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        call = self.call
        digits = asyncio.ensure_future(self._forward_digits())
        ended = asyncio.ensure_future(call.ended.wait())
        getter: asyncio.Future[fa.Event] | None = None
        try:
            await self._execute(self.session.start())
            while self.session.outcome is None:
                getter = asyncio.ensure_future(self.events.get())
                done, _ = await asyncio.wait({getter, ended}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    await self._execute(self.session.handle(fa.CallerHungUp()))
                    break
                await self._execute(self.session.handle(getter.result()))
        finally:
            # Cancel every helper future, also when the call task itself is cancelled
            # (a BYE): a pending task left behind is never collected cleanly.
            if getter is not None:
                getter.cancel()
            digits.cancel()
            ended.cancel()
            for handle in self.timers.values():
                handle.cancel()
            if self._play_task is not None:
                self._play_task.cancel()
            if self._task is not None:
                self._task.cancel()
        outcome = self.session.outcome
        if outcome is not None:
            call.log.info(
                "flow ended",
                outcome=outcome.kind,
                status=outcome.status,
                reason=outcome.reason,
                flow=outcome.flow_id,
                node=outcome.node_id,
                menu_path=outcome.menu_path,
            )

    async def _forward_digits(self) -> None:
        while True:
            digit = await self.call.digits.get()
            self.events.put_nowait(fa.DigitReceived(digit=digit))

    async def _execute(self, actions: list[fa.Action]) -> None:
        call = self.call
        for action in actions:
            if isinstance(action, fa.Answer):
                if action.ring_seconds > 0:
                    call.ring()
                    await asyncio.sleep(action.ring_seconds)
                if await call.answer():
                    self.events.put_nowait(fa.CallAnswered())
                else:
                    self.events.put_nowait(fa.CallerHungUp())
            elif isinstance(action, fa.PlayPrompt):
                self._start_play(action)
            elif isinstance(action, fa.StartTask):
                self._start_task(action)
            elif isinstance(action, fa.StopPrompt):
                if self.playing == action.play_id:
                    self.playing = None
                    if self._play_task is not None:
                        self._play_task.cancel()
                    if call.rtp is not None:
                        call.rtp.stop_playback()
            elif isinstance(action, fa.StartTimer):
                loop = asyncio.get_running_loop()
                timer_id = action.timer_id
                self.timers[timer_id] = loop.call_later(action.seconds, self._timer_fired, timer_id)
            elif isinstance(action, fa.CancelTimer):
                handle = self.timers.pop(action.timer_id, None)
                if handle is not None:
                    handle.cancel()
            elif isinstance(action, fa.Hangup):
                if action.status is not None and not self.session.answered:
                    call.reject(action.status, action.reason)
                else:
                    call.hangup(action.reason)
            elif isinstance(action, fa.NodeEntered):
                call.log.info(
                    "flow node", flow=action.flow_id, node=action.node_id, type=action.node_type
                )
            elif isinstance(action, fa.VariableSet):
                call.log.info("flow variable", name=action.name, value=action.value)
            elif isinstance(action, fa.LanguageSet):
                call.log.info("flow language", language=action.language)
            elif isinstance(action, fa.MenuChosen):
                call.menu_path = action.path
                call.log.info("menu choice", label=action.label, menu_path=action.path)
            elif isinstance(action, fa.FlowWarning):
                call.log.warning(
                    "flow warning", flow=action.flow_id, node=action.node_id, message=action.message
                )

    def _start_task(self, action: fa.StartTask) -> None:
        """Run the engine-side task; its result (or failure) comes back as TaskFinished."""
        handler = self.call.engine.tasks.get(action.kind)
        call = self.call
        call.log.info("flow task", kind=action.kind, params=dict(action.params))

        async def run() -> None:
            if handler is None:
                call.log.error("no handler for flow task", kind=action.kind)
                outcome = TaskResult("failed")
            else:
                try:
                    outcome = await handler(call, action)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    call.log.exception("flow task failed", kind=action.kind)
                    outcome = TaskResult("failed")
            call.log.info("flow task finished", kind=action.kind, result=outcome.result)
            self.events.put_nowait(
                fa.TaskFinished(task_id=action.task_id, result=outcome.result, data=outcome.data)
            )

        self._task = asyncio.ensure_future(run())

    def _timer_fired(self, timer_id: str) -> None:
        if self.timers.pop(timer_id, None) is not None:
            self.events.put_nowait(fa.TimerExpired(timer_id=timer_id))

    def _start_play(self, action: fa.PlayPrompt) -> None:
        """Render (possibly slow: TTS) then play; PromptFinished when the audio has gone."""
        if self._play_task is not None:
            self._play_task.cancel()
        self.playing = action.play_id
        self._play_task = asyncio.ensure_future(self._play(action))

    async def _play(self, action: fa.PlayPrompt) -> None:
        call = self.call
        try:
            prompt = await render(call, action.items)
        except MediaError as exc:
            # A missing or broken prompt must not strand the caller: log, treat as played.
            call.log.error("prompt could not be rendered", error=str(exc))
            prompt = None
        if self.playing != action.play_id:
            return
        if prompt is not None:
            await call.play(prompt)
        if self.playing == action.play_id:
            self.playing = None
            self.events.put_nowait(fa.PromptFinished(play_id=action.play_id))


async def render(call: Call, items: tuple[fa.PromptItem, ...]) -> Prompt:
    """Turn resolved prompt items into one prompt (each item decoded/rendered once, cached)."""
    engine = call.engine
    parts: list[Prompt] = []
    loop = asyncio.get_running_loop()
    for item in items:
        if isinstance(item, fa.TtsPrompt):
            parts.append(
                await engine.tts(
                    item.text, voice=item.voice, rate=item.rate, language=item.language
                )
            )
        elif isinstance(item, fa.FilePrompt):
            parts.append(await loop.run_in_executor(None, engine.prompts.from_file, item.path))
        elif isinstance(item, fa.TonePrompt):
            parts.append(tone(item.frequencies, item.ms))
        elif isinstance(item, fa.SilencePrompt):
            parts.append(silence(item.ms))
    return concat(*parts) if len(parts) != 1 else parts[0]


def context_for(call: Call, profile: object, language: str | None = None) -> CallContext:
    from .flows.profile import CallerProfile

    assert isinstance(profile, CallerProfile)
    headers: dict[str, list[str]] = {}
    for name, value in call.request.headers:
        headers.setdefault(name, []).append(value)
    return CallContext(
        caller=call.caller_number,
        called=call.called,
        trunk=call.trunk,
        headers=headers,
        profile=profile,
        language=language,
    )
