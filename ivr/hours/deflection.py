"""After-hours deflection settings: what happens to a call reaching a closed queue.

Validated at load; executed later by the engine. One global setting (``deflect`` on/off with
one option) and per-queue custom deflections that override it. Options: another queue, an
outside number through a trunk, a SIP redirection carrying data headers, voicemail, or a
message then hang up. References to queues and trunks are checked by
:func:`check_references`, given the names the rest of the configuration defines.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
    model_validator,
)

from ivr.yamlloc import (
    ConfigPath,
    DocPath,
    LocatedDocument,
    Problem,
    format_path,
    located_error,
    merge_errors,
    no_control_chars,
)

__all__ = [
    "AfterHoursConfig",
    "AfterHoursQueue",
    "DataRecords",
    "DeflectionChoice",
    "DeflectionOption",
    "MessageDeflection",
    "Messages",
    "NumberDeflection",
    "Prompt",
    "QueueDeflection",
    "SipData",
    "SipDeflection",
    "VoicemailDeflection",
    "check_references",
    "resolve_deflection",
]

_NAME = r"^[A-Za-z0-9_.-]+$"
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
# RFC 3261 §25.1 token characters, the grammar of a header field name.
_TOKEN = re.compile(r"^[A-Za-z0-9.!%*_+`'~-]+$")
_SIP_URI = re.compile(r"^sips?:[^\s<>\"]+$")
# Headers the engine writes itself; letting data parameters set them would break the dialog.
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "Via",
        "From",
        "To",
        "Call-ID",
        "CSeq",
        "Contact",
        "Max-Forwards",
        "Content-Length",
        "Content-Type",
        "Route",
        "Record-Route",
        "Refer-To",
        "Referred-By",
        "Authorization",
        "Proxy-Authorization",
        "WWW-Authenticate",
        "Proxy-Authenticate",
        "Expires",
        "i",
        "f",
        "t",
        "v",
        "m",
        "l",
        "c",
        "r",
    )
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Text = Annotated[str, Field(min_length=1), AfterValidator(no_control_chars)]
Name = Annotated[str, Field(min_length=1, pattern=_NAME)]


# --------------------------------------------------------------------------------------------
# Prompts per language


def _prompt_shorthand(value: Any) -> Any:
    # A plain string is text to speak: `en: "We are closed."`
    return {"tts": value} if isinstance(value, str) else value


class Prompt(_Model):
    """Text to speak (``tts``) or an audio file (``file``, relative to the config file)."""

    tts: Annotated[str, Field(min_length=1)] | None = None
    file: ConfigPath | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.tts is None) == (self.file is None):
            raise located_error(((), "give exactly one of 'tts' (text) or 'file' (audio)"))
        return self


def _languages(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    problems: list[tuple[DocPath, str]] = []
    if isinstance(value, dict):
        if not value:
            problems.append(((), "must name at least one language, e.g. 'en: ...'"))
        for key in value:
            if not isinstance(key, str) or not _LANGUAGE.match(key):
                problems.append(((key,), f"{key!r} is not a language tag like 'fr' or 'en-US'"))
    try:
        result = handler(value)
    except ValidationError as exc:
        if problems:
            raise merge_errors(exc, located_error(*problems)) from None
        raise
    if problems:
        raise located_error(*problems)
    return result


Messages = Annotated[
    dict[str, Annotated[Prompt, BeforeValidator(_prompt_shorthand)]],
    WrapValidator(_languages),
]
"""One prompt per language tag: ``{en: "text", fr: {file: "fermé.wav"}}``."""


def _default_is_none(value: Any) -> Any:
    return None if value == "default" else value


OrDefault = Annotated[Messages | None, BeforeValidator(_default_is_none)]
"""Per-language prompts, or ``default`` (also: omitted) for the built-in one; None in the
model means the built-in prompt."""


# --------------------------------------------------------------------------------------------
# Options


class QueueDeflection(_Model):
    """Send the caller to another queue (e.g. a 24/7 one)."""

    queue: Name


class NumberDeflection(_Model):
    """Bridge the caller to an outside number through an outbound trunk (the engine places
    the call as a B2BUA), or REFER the caller there when the trunk supports it."""

    number: str
    trunk: Name
    method: Literal["bridge", "refer"] = "bridge"

    @field_validator("number", mode="before")
    @classmethod
    def _e164(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            raise ValueError(f"must be quoted E.164 text like '+33123456789' (got {value})")
        if not isinstance(value, str) or not _E164.match(value):
            raise ValueError(f"{value!r} is not an E.164 number like '+33123456789'")
        return value


class SipData(_Model):
    """One data parameter passed on a SIP redirection, as a header."""

    field: str
    type: Literal["static", "dynamic"]
    value: Text | None = None
    source: Literal["call", "profile", "variables"] | None = None
    source_field: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")] | None = None

    @field_validator("field", mode="before")
    @classmethod
    def _header_name(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _TOKEN.match(value):
            raise ValueError(f"{value!r} is not a valid SIP header name")
        if value.lower() in _RESERVED_HEADERS:
            raise ValueError(f"{value!r} is set by the engine itself; use an X- header")
        return value

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type == "static":
            problems: list[tuple[DocPath, str]] = []
            if self.value is None:
                problems.append((("value",), "a static parameter needs 'value'"))
            for name in ("source", "source_field"):
                if getattr(self, name) is not None:
                    problems.append(((name,), f"'{name}' is only for type: dynamic"))
            if problems:
                raise located_error(*problems)
            return self
        problems = []
        if self.value is not None:
            problems.append((("value",), "'value' is only for type: static"))
        if self.source is None:
            problems.append(((), "a dynamic parameter needs 'source' (call, profile, variables)"))
        if self.source_field is None:
            problems.append(((), "a dynamic parameter needs 'source_field'"))
        if problems:
            raise located_error(*problems)
        return self


class DataRecords(_Model):
    """Whether the redirection data is also kept in the call's metadata and CRM record."""

    metadata: bool = False
    crm: bool = False


class SipDeflection(_Model):
    """Redirect to a SIP URI, passing data parameters as headers."""

    uri: str
    data: tuple[SipData, ...] = ()
    data_records: DataRecords = Field(default_factory=DataRecords)

    @field_validator("uri", mode="before")
    @classmethod
    def _uri(cls, value: Any) -> Any:
        if not isinstance(value, str) or not _SIP_URI.match(value):
            raise ValueError(f"{value!r} is not a SIP URI like 'sip:night@example.com'")
        return value

    @model_validator(mode="after")
    def _unique_fields(self) -> Self:
        seen: dict[str, int] = {}
        problems: list[tuple[DocPath, str]] = []
        for index, item in enumerate(self.data):
            key = item.field.lower()
            if key in seen:
                problems.append(
                    (
                        ("data", index, "field"),
                        f"header {item.field!r} is already data[{seen[key]}]",
                    )
                )
            else:
                seen[key] = index
        if problems:
            raise located_error(*problems)
        return self


def _digit_text(value: Any) -> Any:
    # `finish_key: 0` is read by YAML as a number.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


DtmfKey = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]


class VoicemailDeflection(_Model):
    """Greeting, beep, record until ``finish_key``, silence or ``max_seconds``.

    Messages default to the built-in ones when absent; each is customisable per language.
    """

    greeting: OrDefault = None
    beep: bool = True
    max_seconds: int = Field(120, ge=5, le=3600)
    silence_seconds: int = Field(5, ge=1, le=60)
    finish_key: Annotated[DtmfKey, BeforeValidator(_digit_text)] = "#"
    blocked_number_message: Messages | None = None
    ask_callback_number: bool = False
    callback_prompt: Messages | None = None
    callback_confirmation: Messages | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems: list[tuple[DocPath, str]] = []
        if self.silence_seconds >= self.max_seconds:
            problems.append(
                (("silence_seconds",), f"must be less than max_seconds ({self.max_seconds})")
            )
        if not self.ask_callback_number:
            problems.extend(
                ((name,), "is only used with ask_callback_number: true")
                for name in ("callback_prompt", "callback_confirmation")
                if getattr(self, name) is not None
            )
        if problems:
            raise located_error(*problems)
        return self


class MessageDeflection(_Model):
    """Play the after-hours message, then hang up."""

    prompt: OrDefault = None


DeflectionOption = (
    QueueDeflection | NumberDeflection | SipDeflection | VoicemailDeflection | MessageDeflection
)
_KINDS = ("queue", "number", "sip", "voicemail", "message")


class DeflectionChoice(_Model):
    """Exactly one of the options, written as ``{kind: {...}}``."""

    queue: QueueDeflection | None = None
    number: NumberDeflection | None = None
    sip: SipDeflection | None = None
    voicemail: VoicemailDeflection | None = None
    message: MessageDeflection | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one(cls, data: Any) -> Any:
        if isinstance(data, dict):
            given = [key for key in data if key in _KINDS]
            if not data:
                raise located_error(((), f"choose one option: {', '.join(_KINDS)}"))
            if len(given) > 1:
                raise located_error(((given[1],), f"choose one option, not {' and '.join(given)}"))
            # `message: {}` / `voicemail:` with nothing under it means all defaults.
            return {key: ({} if value is None else value) for key, value in data.items()}
        return data

    @property
    def kind(self) -> str:
        return next(kind for kind in _KINDS if getattr(self, kind) is not None)

    @property
    def option(self) -> DeflectionOption:
        value: DeflectionOption = getattr(self, self.kind)
        return value


class AfterHoursQueue(_Model):
    """A queue's custom deflection. ``deflect: false`` opts the queue out even when the
    global setting is on; ``deflect: true`` without ``option`` uses the global option."""

    deflect: bool
    option: DeflectionChoice | None = None


class AfterHoursConfig(_Model):
    """The ``after_hours:`` section (voice)."""

    # `option` is declared before `deflect` so the check below sees it even when another
    # part of the section is wrong (admins get every problem in one run).
    option: DeflectionChoice | None = None
    deflect: bool = False
    allow_transfers_outside_hours: bool = False
    queues: dict[str, AfterHoursQueue] = Field(default_factory=dict)

    @field_validator("queues", mode="wrap")
    @classmethod
    def _queue_names(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        problems: list[tuple[DocPath, str]] = []
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or not re.match(_NAME, key):
                    problems.append(
                        ((key,), f"queue {key!r}: queue names use letters, digits, '_', '.', '-'")
                    )
        try:
            result: dict[str, AfterHoursQueue] = handler(value)
        except ValidationError as exc:
            if problems:
                raise merge_errors(exc, located_error(*problems)) from None
            raise
        if "option" in info.data and info.data["option"] is None:
            problems.extend(
                (
                    (name, "deflect"),
                    "deflect: true needs an 'option' here or a global 'option'",
                )
                for name, custom in result.items()
                if custom.deflect and custom.option is None
            )
        if problems:
            raise located_error(*problems)
        return result

    @field_validator("deflect", mode="after")
    @classmethod
    def _deflect_needs_option(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "option" in info.data and info.data["option"] is None:
            raise ValueError("deflect: true needs an 'option'")
        return value


def resolve_deflection(config: AfterHoursConfig, queue: str | None) -> DeflectionOption | None:
    """The deflection for a call reaching closed ``queue``, or None (no deflection).

    A queue's custom deflection beats the global setting: ``deflect: true`` deflects (with
    its own option, else the global one) even when the global setting is off; ``deflect:
    false`` never deflects. A queue without custom deflection follows the global setting.
    """
    custom = config.queues.get(queue) if queue is not None else None
    if custom is not None:
        if not custom.deflect:
            return None
        choice = custom.option or config.option
        return choice.option if choice is not None else None
    if config.deflect and config.option is not None:
        return config.option.option
    return None


def deflection_enabled(config: AfterHoursConfig, queue: str) -> bool:
    """True when a call reaching ``queue`` after hours would be deflected."""
    return resolve_deflection(config, queue) is not None


# --------------------------------------------------------------------------------------------
# Cross-references


def check_references(
    config: AfterHoursConfig,
    *,
    queues: Collection[str],
    trunks: Collection[str],
    document: LocatedDocument | None = None,
    at: DocPath = ("after_hours",),
    hours_queues: Iterable[str] = (),
    hours_at: DocPath = ("hours", "queues"),
) -> list[Problem]:
    """Queues and trunks named by the deflection settings (and queue overrides of the hours
    calendar, ``hours_queues``) must exist. ``document`` locates the problems; ``at`` is
    where the ``after_hours`` section sits in it, ``hours_at`` where ``hours.queues`` does.
    """
    known_queues = set(queues)
    known_trunks = set(trunks)
    found: list[tuple[DocPath, str]] = []

    def check_choice(choice: DeflectionChoice | None, path: DocPath, owner: str | None) -> None:
        if choice is None:
            return
        option = choice.option
        if isinstance(option, QueueDeflection):
            where = (*path, "queue", "queue")
            if option.queue not in known_queues:
                found.append((where, f"unknown queue {option.queue!r}{_known(known_queues)}"))
            elif option.queue == owner:
                found.append((where, f"queue {owner!r} deflects to itself"))
        elif isinstance(option, NumberDeflection) and option.trunk not in known_trunks:
            found.append(
                (
                    (*path, "number", "trunk"),
                    f"unknown trunk {option.trunk!r}{_known(known_trunks)}",
                )
            )

    check_choice(config.option, (*at, "option"), None)
    for name, custom in config.queues.items():
        if name not in known_queues:
            found.append(((*at, "queues", name), f"unknown queue {name!r}{_known(known_queues)}"))
        check_choice(custom.option, (*at, "queues", name, "option"), name)
    for name in hours_queues:
        if name not in known_queues:
            found.append(((*hours_at, name), f"unknown queue {name!r}{_known(known_queues)}"))
    located = [_problem(document, path, message) for path, message in found]
    return sorted(located, key=lambda p: (p.line is None, p.line or 0, p.column or 0))


def _known(names: Collection[str]) -> str:
    if not names:
        return " (no queues are defined)" if names is not None else ""
    listed = sorted(names)
    more = ", ..." if len(listed) > 10 else ""
    return f" (known: {', '.join(listed[:10])}{more})"


def _problem(document: LocatedDocument | None, path: DocPath, message: str) -> Problem:
    if document is None:
        return Problem(
            file="<config>", line=None, column=None, path=format_path(path), message=message
        )
    loc = document.location(path)
    return Problem(
        file=document.file,
        line=loc.line if loc else None,
        column=loc.column if loc else None,
        path=format_path(path),
        message=message,
    )


def deflection_summary(option: DeflectionOption | None) -> str:
    """One line for logs and the CLI: ``voicemail``, ``queue night``, ``number +3312... via
    carrier (bridge)``."""
    match option:
        case None:
            return "none"
        case QueueDeflection(queue=queue):
            return f"queue {queue}"
        case NumberDeflection(number=number, trunk=trunk, method=method):
            return f"number {number} via {trunk} ({method})"
        case SipDeflection(uri=uri, data=data):
            return f"sip {uri} ({len(data)} data parameter{'s' if len(data) != 1 else ''})"
        case VoicemailDeflection():
            return "voicemail"
        case MessageDeflection():
            return "message"
    return "none"
