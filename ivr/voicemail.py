"""Voicemail on a live call: greeting, beep, recording, callback number, durable storage.

Used by the ``voicemail`` flow task and by the voicemail deflection option. A withheld
caller hears the blocked-number message and nothing is recorded. A message with speech is
written as a WAV under ``store.audio_dir/voicemail/`` (fsynced) and its row committed to the
store (``synchronous=FULL``) BEFORE the caller hears the confirmation; a caller hanging up
at any point after speaking still gets the message stored. Agents assigned to the queue are
notified with a ``VoicemailLeft`` event (MQTT); a queue with no agents assigned (the root
queue) gets a CRM record through the outbox instead, in the same transaction as the row.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from media.aio.recorder import VoicemailSession
from media.prompts import tone
from media.recorder import WAV_HEADER_BYTES, VoicemailRecorder, VoicemailResult
from sipstack.message import Request

from .events import VoicemailLeft
from .flows.actions import StartTask
from .hours import AfterHoursConfig, VoicemailDeflection
from .messages import play_message
from .store import StoreError, Voicemail
from .tasks import TaskHandler, TaskResult

if TYPE_CHECKING:
    from .call import Call

__all__ = [
    "assigned_agents",
    "caller_withheld",
    "collect_callback_number",
    "leave_voicemail",
    "valid_callback_number",
    "voicemail_settings",
]

BEEP_HZ = 1000.0
BEEP_MS = 400
CALLBACK_ATTEMPTS = 3
CALLBACK_FIRST_DIGIT_SECONDS = 10.0
CALLBACK_NEXT_DIGIT_SECONDS = 5.0
CALLBACK_MIN_DIGITS = 6
CALLBACK_MAX_DIGITS = 15  # E.164 (ITU-T E.164 §6: at most 15 digits)

# User parts and display names carriers use for a withheld caller ID.
_WITHHELD = frozenset(
    {"", "anonymous", "unknown", "restricted", "private", "withheld", "unavailable"}
)


def caller_withheld(request: Request) -> bool:
    """True when the INVITE hides the caller's number: From user ``anonymous`` (RFC 3323
    §4.1.1.3) or a similar placeholder, display name "Anonymous", or ``Privacy: id``/``user``
    (RFC 3323 §4.2, RFC 3325 §9.3)."""
    from_ = request.from_
    if (from_.uri.user or "").strip().lower() in _WITHHELD:
        return True
    display = from_.display_name
    if display is not None and display.strip().strip('"').lower() in _WITHHELD - {""}:
        return True
    for value in request.headers.get_all("Privacy"):
        if {token.strip().lower() for token in value.split(";")} & {"id", "user"}:
            return True
    return False


def voicemail_settings(config: AfterHoursConfig, queue: str | None) -> VoicemailDeflection:
    """The queue's voicemail settings: its custom voicemail option, else the global one,
    else the built-in defaults."""
    custom = config.queues.get(queue) if queue is not None else None
    for choice in (custom.option if custom is not None else None, config.option):
        if choice is not None and choice.voicemail is not None:
            return choice.voicemail
    return VoicemailDeflection.model_validate({})


def assigned_agents(call: Call, queue: str | None) -> tuple[str, ...]:
    if queue is None:
        return ()
    return tuple(a.id for a in call.engine.settings.acd.agents if a.level_in(queue) is not None)


def valid_callback_number(digits: str) -> bool:
    """Digits only, 6 to 15 of them (an E.164 number without '+', or a national one)."""
    return digits.isdigit() and CALLBACK_MIN_DIGITS <= len(digits) <= CALLBACK_MAX_DIGITS


async def collect_callback_number(
    call: Call, option: VoicemailDeflection, language: str
) -> str | None:
    """Ask for a callback number (digits then ``#``), up to three attempts; None if none
    valid was given. ``*`` starts over."""
    for attempt in range(1, CALLBACK_ATTEMPTS + 1):
        await play_message(call, option.callback_prompt, "callback", language)
        digits = ""
        digit = await call.collect_digit(CALLBACK_FIRST_DIGIT_SECONDS)
        while digit is not None and digit != "#":
            if digit == "*":
                digits = ""
            elif digit.isdigit():
                digits += digit
            if len(digits) > CALLBACK_MAX_DIGITS:
                break
            digit = await call.collect_digit(CALLBACK_NEXT_DIGIT_SECONDS)
        if valid_callback_number(digits):
            call.log.info("callback number collected", callback_number=digits, attempt=attempt)
            return digits
        call.log.info("callback number invalid", digits=digits, attempt=attempt)
        if call.ended.is_set():
            return None
        if attempt < CALLBACK_ATTEMPTS:
            await play_message(call, None, "invalid_number", language)
    return None


async def leave_voicemail(
    call: Call,
    queue: str | None,
    option: VoicemailDeflection | None = None,
    *,
    task: StartTask | None = None,
) -> TaskResult:
    """Take a voicemail for ``queue``; results: ``done`` (stored, caller hung up on),
    ``blocked`` (withheld number), ``empty`` (no speech), ``failed``."""
    engine = call.engine
    if option is None:
        option = voicemail_settings(engine.settings.after_hours, queue)
    language = task.language if task is not None else "en"
    if not await call.answer():
        return TaskResult("failed")
    if caller_withheld(call.request):
        call.log.info("voicemail refused: caller number withheld", queue=queue)
        await play_message(call, option.blocked_number_message, "blocked", language)
        call.hangup("voicemail refused: number withheld")
        return TaskResult("blocked")
    # The task reads the caller's keys itself (callback number); the flow must not see them.
    flow_digits = call.digits
    call.digits = asyncio.Queue()
    try:
        return await _record(call, queue, option, language, task)
    finally:
        call.digits = flow_digits


async def _record(
    call: Call,
    queue: str | None,
    option: VoicemailDeflection,
    language: str,
    task: StartTask | None,
) -> TaskResult:
    engine = call.engine
    beep = (tone((BEEP_HZ,), BEEP_MS),) if option.beep else ()
    await play_message(call, option.greeting, "greeting", language, *beep)
    if call.ended.is_set() or call.rtp is None:
        return TaskResult("failed")
    directory = engine.settings.store.audio_dir / "voicemail"
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, lambda: directory.mkdir(parents=True, exist_ok=True))
    voicemail_id = uuid.uuid4().hex
    path = directory / f"{voicemail_id}.wav"

    def open_part(index: int) -> BinaryIO:
        # One file per message: max_part_bytes below always holds max_seconds.
        target = path if index == 1 else path.with_suffix(f".part{index:03d}.wav")
        return target.open("wb")

    recorder = VoicemailRecorder(
        open_part,
        max_seconds=option.max_seconds,
        silence_seconds=option.silence_seconds,
        terminators=option.finish_key,
        max_part_bytes=WAV_HEADER_BYTES + (option.max_seconds + 1) * 16000,
    )
    session = VoicemailSession(call.rtp, recorder)
    started_at = engine.now().timestamp()
    menu_path = task.menu_path if task is not None and task.menu_path else call.menu_path
    agents = assigned_agents(call, queue)
    result: VoicemailResult | None = None
    callback: str | None = None
    saver: asyncio.Task[bool] | None = None
    stored = False

    def store_now() -> asyncio.Task[bool]:
        assert result is not None
        vm = Voicemail(
            id=voicemail_id,
            queue=queue or "",
            caller=call.caller_number,
            callback_number=callback,
            started_at=started_at,
            duration_seconds=result.duration_ms / 1000,
            menu_path=tuple(p for p in menu_path.split(" > ") if p),
            wav_path=path,
            call_id=call.call_id,
        )
        # Kept by the engine: the store must finish even when the caller hangs up meanwhile.
        return call.engine.spawn(_store(call, vm, agents))

    session.start()
    call.log.info("voicemail recording", queue=queue, voicemail_id=voicemail_id)
    try:
        ended = asyncio.ensure_future(call.ended.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {session.done, ended}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
        result = session.stop()
        call.log.info(
            "voicemail recorded",
            reason=result.reason.value,
            duration_ms=result.duration_ms,
            had_speech=result.had_speech,
        )
        if not result.had_speech:
            path.unlink(missing_ok=True)
            call.hangup("voicemail empty")
            return TaskResult("empty")
        while not call.digits.empty():  # the key that ended the recording
            call.digits.get_nowait()
        if option.ask_callback_number and not call.ended.is_set():
            callback = await collect_callback_number(call, option, language)
        saver = store_now()
        stored = await asyncio.shield(saver)
    finally:
        if result is None:  # cancelled while recording: the caller hung up
            result = session.stop()
            call.log.info(
                "voicemail recorded",
                reason=result.reason.value,
                duration_ms=result.duration_ms,
                had_speech=result.had_speech,
            )
            if not result.had_speech:
                path.unlink(missing_ok=True)
        if saver is None and result.had_speech:
            saver = store_now()
    if not stored:
        call.hangup("voicemail not stored")
        return TaskResult("failed")
    if callback is not None:
        await play_message(call, option.callback_confirmation, "confirmation", language)
    else:
        await play_message(call, None, "saved", language)
    call.hangup("voicemail left")
    return TaskResult("done", {"voicemail_id": voicemail_id})


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def _store(call: Call, vm: Voicemail, agents: tuple[str, ...]) -> bool:
    """WAV to disk durably, then the row (with the CRM record for a queue without agents),
    then the agents' notification."""
    engine = call.engine
    log = call.log.bind(voicemail_id=vm.id, queue=vm.queue)
    try:
        await asyncio.get_running_loop().run_in_executor(None, _fsync, vm.wav_path)
        if not agents and engine.outbox is not None:
            payload = {
                "type": "voicemail",
                "voicemail_id": vm.id,
                "call_id": vm.call_id,
                "queue": vm.queue,
                "caller": vm.caller,
                "callback_number": vm.callback_number,
                "started_at": vm.started_at,
                "duration_seconds": vm.duration_seconds,
                "menu_path": list(vm.menu_path),
                "node": engine.settings.node,
            }
            await engine.outbox.enqueue(
                "voicemail", payload, [vm.wav_path], voicemail=vm, keep_originals=True
            )
            crm = True
        else:
            if engine.store is None:
                raise StoreError("the store is not running", operation="add_voicemail")
            await engine.store.voicemails.add(vm)
            crm = False
    except (StoreError, OSError) as exc:
        # The WAV stays on disk; the error says where for the operator to recover it.
        log.error("voicemail not stored", error=str(exc), wav=str(vm.wav_path))
        return False
    engine.events.publish(
        VoicemailLeft(
            voicemail_id=vm.id,
            queue=vm.queue,
            caller=vm.caller,
            callback_number=vm.callback_number,
            duration_seconds=vm.duration_seconds,
            menu_path=vm.menu_path,
            agents=agents,
        )
    )
    log.info(
        "voicemail stored",
        caller=vm.caller,
        callback_number=vm.callback_number,
        duration_seconds=vm.duration_seconds,
        wav=str(vm.wav_path),
        agents=list(agents),
        crm=crm,
    )
    return True


async def voicemail_task(call: Call, task: StartTask) -> TaskResult:
    """Record a voicemail for the node's queue with that queue's voicemail settings."""
    return await leave_voicemail(call, task.params.get("queue"), task=task)


# The flow tasks this module provides (registered by the engine's composition).
TASKS: Mapping[str, TaskHandler] = {"voicemail": voicemail_task}
