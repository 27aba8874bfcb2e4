"""Messages in the caller's language: the built-in texts and configured per-language prompts
(TTS or file), rendered and played on a call. Used by deflection, voicemail and queues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from media.errors import MediaError
from media.prompts import Prompt as Audio
from media.prompts import concat

from .hours.deflection import Messages

if TYPE_CHECKING:
    from .call import Call

__all__ = ["DEFAULT_TEXTS", "pick_language", "play_message", "render_message"]

DEFAULT_TEXTS: Mapping[str, Mapping[str, str]] = {
    "closed": {
        "en": "We are closed right now. Please call again during our business hours. Goodbye.",
        "fr": "Nous sommes fermés. Merci de rappeler pendant nos heures d'ouverture. Au revoir.",
    },
    "greeting": {
        "en": "Please leave a message after the tone. Press hash when you are done.",
        "fr": "Laissez un message après le bip. Appuyez sur dièse pour terminer.",
    },
    "blocked": {
        "en": "We cannot take a message from a withheld number. Please call again with your "
        "number shown. Goodbye.",
        "fr": "Nous ne pouvons pas prendre de message d'un numéro masqué. Merci de rappeler "
        "sans masquer votre numéro. Au revoir.",
    },
    "callback": {
        "en": "Please enter the phone number we should call you back on, then press hash.",
        "fr": "Veuillez composer le numéro auquel vous rappeler, puis appuyez sur dièse.",
    },
    "invalid_number": {
        "en": "That number is not valid.",
        "fr": "Ce numéro n'est pas valide.",
    },
    "confirmation": {
        "en": "Your number was entered successfully. Thank you, goodbye.",
        "fr": "Votre numéro a bien été enregistré. Merci, au revoir.",
    },
    "saved": {
        "en": "Thank you, your message has been recorded. Goodbye.",
        "fr": "Merci, votre message a été enregistré. Au revoir.",
    },
}


def pick_language(messages: Mapping[str, Any], language: str) -> tuple[str, Any]:
    """The variant for ``language``: the exact tag, else one with the same primary subtag
    (``fr`` for ``fr-CA``, ``pt-BR`` for ``pt``), else English, else the first."""
    if language in messages:
        return language, messages[language]
    primary = language.split("-", 1)[0]
    if primary in messages:
        return primary, messages[primary]
    for key, value in messages.items():
        if key.split("-", 1)[0] == primary:
            return key, value
    if "en" in messages:
        return "en", messages["en"]
    key = next(iter(messages))
    return key, messages[key]


async def render_message(
    call: Call, messages: Messages | None, default: str, language: str
) -> Audio:
    """A configured per-language prompt (TTS or file), else the built-in ``default`` text
    (one of :data:`DEFAULT_TEXTS`) in the call's language."""
    engine = call.engine
    if messages:
        tag, prompt = pick_language(messages, language)
        if prompt.file is not None:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(None, engine.prompts.from_file, prompt.file)
        return await engine.tts(prompt.tts, language=tag)
    tag, text = pick_language(DEFAULT_TEXTS[default], language)
    return await engine.tts(text, language=tag)


async def play_message(
    call: Call, messages: Messages | None, default: str, language: str, *extra: Audio
) -> None:
    try:
        audio = await render_message(call, messages, default, language)
    except MediaError as exc:
        # A broken prompt must not strand the caller: log and carry on without it.
        call.log.error("prompt could not be rendered", error=str(exc), message=default)
        if not extra:
            return
        audio = concat(*extra) if len(extra) > 1 else extra[0]
    else:
        if extra:
            audio = concat(audio, *extra)
    await call.play(audio)
