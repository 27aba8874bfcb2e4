"""The typed flow model: flow files, prompts, the node-type registry and routes.

A flow file is YAML (``flow``, ``description``, ``entry``, ``language``, ``variables``,
``nodes``). Each node names its ``type``; node types register themselves with
:func:`register_node` from their own module under ``ivr/flows/nodes/`` and define both their
fields (a frozen pydantic model, ``extra="forbid"``) and their behaviour (:meth:`NodeSpec.enter`
against the :class:`Runtime` the interpreter provides). Nothing here touches I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Protocol, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    model_validator,
)

from ivr.yamlloc import DocPath, located_error

from .expressions import Expression, ExpressionError, parse_expression, parse_template

__all__ = [
    "NODE_TYPES",
    "ExprField",
    "FileItem",
    "FlowId",
    "FlowSpec",
    "LanguageCode",
    "NodeId",
    "NodeSpec",
    "PromptItemSpec",
    "PromptVariants",
    "Prompts",
    "RegexField",
    "Route",
    "RoutesConfig",
    "Runtime",
    "SilenceItem",
    "ToneItem",
    "TtsItem",
    "register_node",
    "select_variant",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# field types

_ID = r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$"
NodeId = Annotated[str, Field(pattern=_ID)]
FlowId = Annotated[str, Field(pattern=_ID)]
VariableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]
_LANGUAGE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*")
LanguageCode = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")]
Label = Annotated[str, Field(min_length=1, max_length=64)]
DTMF_DIGITS = "0123456789*#ABCD"


def _expression(value: Any) -> Expression:
    if isinstance(value, Expression):
        return value
    if isinstance(value, bool | int | float) and not isinstance(value, bool):
        value = repr(value)
    elif isinstance(value, bool):
        value = "True" if value else "False"
    try:
        return parse_expression(value)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None


ExprField = Annotated[Expression, PlainValidator(_expression)]
"""An expression, parsed (and syntax-checked) at load; names are checked by the loader."""


def _regex(value: Any) -> re.Pattern[str]:
    if isinstance(value, re.Pattern):
        return value
    if not isinstance(value, str) or not value:
        raise ValueError("must be a regular expression written as a string")
    try:
        return re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression: {exc}") from None


RegexField = Annotated[re.Pattern[str], PlainValidator(_regex)]


def _digit(value: str) -> str:
    if len(value) != 1 or value not in DTMF_DIGITS:
        raise ValueError(f"must be one DTMF key: one of {' '.join(DTMF_DIGITS)} (got {value!r})")
    return value


Digit = Annotated[str, AfterValidator(_digit)]


# --------------------------------------------------------------------------------------------
# prompts


def _tts_text(value: str) -> str:
    if not value.strip():
        raise ValueError("TTS text is empty")
    try:
        parse_template(value)
    except ExpressionError as exc:
        raise ValueError(str(exc)) from None
    return value


class TtsItem(_Model):
    """Text to speech; ``{name}`` placeholders are replaced by variables at play time."""

    tts: Annotated[str, Field(max_length=2000), AfterValidator(_tts_text)]
    voice: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    rate: int | None = Field(None, ge=40, le=600, description="words per minute")
    language: LanguageCode | None = None


class FileItem(_Model):
    """An audio file (WAV/MP3) relative to the prompts directory."""

    file: Annotated[str, Field(min_length=1, max_length=500)]


class ToneItem(_Model):
    """A tone of one to four frequencies (Hz) summed, for ``ms`` milliseconds."""

    tone: tuple[Annotated[float, Field(ge=20, le=4000)], ...] = Field(min_length=1, max_length=4)
    ms: int = Field(ge=1, le=60000)


class SilenceItem(_Model):
    silence_ms: int = Field(ge=1, le=60000)


_ITEM_TAGS = {"tts": "Tts", "file": "File", "tone": "Tone", "silence_ms": "Silence"}


def _item_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return {TtsItem: "Tts", FileItem: "File", ToneItem: "Tone", SilenceItem: "Silence"}.get(
            type(value)
        )
    if isinstance(value, dict):
        for key, tag in _ITEM_TAGS.items():
            if key in value:
                return tag
    return None


def _item_shorthand(value: Any) -> Any:
    # A bare string is the common case: speak it.
    return {"tts": value} if isinstance(value, str) else value


PromptItemSpec = Annotated[
    Annotated[TtsItem, Tag("Tts")]
    | Annotated[FileItem, Tag("File")]
    | Annotated[ToneItem, Tag("Tone")]
    | Annotated[SilenceItem, Tag("Silence")],
    Discriminator(
        _item_kind,
        custom_error_type="prompt_item",
        custom_error_message=(
            "a prompt item needs one of 'tts', 'file', 'tone' or 'silence_ms' "
            "(or is a plain string to speak)"
        ),
    ),
]

PromptVariants = Mapping[str, tuple[PromptItemSpec, ...]]
"""Prompt items per language; the key ``default`` holds items for any language."""

_Items = tuple[Annotated[PromptItemSpec, BeforeValidator(_item_shorthand)], ...]


def _prompt_kind(value: Any) -> str:
    if isinstance(value, dict) and not any(key in value for key in _ITEM_TAGS):
        return "ByLanguage"
    return "List"


def _as_list(value: Any) -> Any:
    if isinstance(value, str | dict) and _prompt_kind(value) == "List":
        return [value]
    return value


def non_empty(value: Any) -> Any:
    """For collections: unlike ``Field(min_length=1)`` it runs only once the items are
    valid, so a bad item is not also reported as "must not be empty"."""
    if not value:
        raise ValueError("must not be empty")
    return value


def _non_empty_items(value: tuple[Any, ...]) -> tuple[Any, ...]:
    if not value:
        raise ValueError("needs at least one prompt item")
    return value


def _non_empty_variants(value: dict[str, tuple[Any, ...]]) -> dict[str, tuple[Any, ...]]:
    if not value:
        raise ValueError("needs at least one language (e.g. en:, fr:, default:)")
    problems: list[tuple[DocPath, str]] = []
    for lang, items in value.items():
        if lang != "default" and not _LANGUAGE.fullmatch(lang):
            problems.append(
                (
                    (lang,),
                    f"{lang!r} is neither a prompt item field (tts, file, tone, silence_ms) nor "
                    "a language code (en, fr, en-GB) nor 'default'",
                )
            )
        elif not items:
            problems.append(((lang,), "needs at least one prompt item"))
    if problems:
        raise located_error(*problems)
    return value


def _variants(value: Any) -> dict[str, tuple[Any, ...]]:
    if isinstance(value, tuple):
        return {"default": value}
    return _non_empty_variants(dict(value))


if TYPE_CHECKING:
    Prompts = dict[str, tuple[PromptItemSpec, ...]]
else:
    Prompts = Annotated[
        Annotated[Annotated[_Items, AfterValidator(_non_empty_items)], Tag("List")]
        | Annotated[
            dict[str, Annotated[_Items, BeforeValidator(_as_list)]],
            Tag("ByLanguage"),
        ],
        Discriminator(_prompt_kind),
        BeforeValidator(_as_list),
        AfterValidator(_variants),
    ]
"""Prompt field type: a list of items, one item, a string, or ``{lang: [items]}``."""


def select_variant(
    variants: PromptVariants, language: str, flow_language: str | None = None
) -> tuple[str | None, tuple[PromptItemSpec, ...]]:
    """Pick the items for ``language``: exact tag, then its primary subtag (``fr`` for
    ``fr-CA``), then ``default``, then the flow's language, then the first one listed.

    Returns the language the variant was written for (None for ``default``) and the items.
    """
    primary = language.split("-", 1)[0]
    for key in (language, primary, "default", flow_language):
        if key is not None and key in variants:
            return (None if key == "default" else key), variants[key]
    key = next(iter(variants))
    return (None if key == "default" else key), variants[key]


# --------------------------------------------------------------------------------------------
# node registry


class Activity(Protocol):
    """A node waiting for something (prompt end, digit, timer); gets the session's events."""

    def prompt_finished(self, rt: Runtime, play_id: str) -> None: ...
    def digit(self, rt: Runtime, digit: str) -> None: ...
    def timer_expired(self, rt: Runtime, timer_id: str) -> None: ...


class Runtime(Protocol):
    """What a node's behaviour may do; implemented by the interpreter's session."""

    @property
    def answered(self) -> bool: ...
    @property
    def flow_id(self) -> str: ...
    @property
    def node_id(self) -> str: ...

    def go(self, target: str | None) -> None:
        """Continue at ``target`` in the current flow; None ends the (sub)flow."""

    def play(self, *prompts: PromptVariants, interruptible: bool) -> str:
        """Play the prompts (concatenated, resolved to the call language); returns play id."""
        ...

    def stop_prompt(self, play_id: str) -> None: ...
    def start_task(self, kind: str, params: Mapping[str, Any]) -> str:
        """Hand the call to an engine-side task (queue, deflection, ...); returns its id."""
        ...

    def start_timer(self, seconds: float) -> str: ...
    def cancel_timer(self, timer_id: str) -> None: ...
    def take_digit(self) -> str | None:
        """The oldest type-ahead digit, if any."""
        ...

    def buffer_digit(self, digit: str) -> None: ...
    def evaluate(self, expression: Expression, field: str) -> tuple[bool, Any]:
        """``(True, value)``, or ``(False, None)`` after reporting an evaluation error."""
        ...

    def set_variable(self, name: str, value: Any) -> None: ...
    def set_language(self, language: str) -> None: ...
    def choose(self, label: str | None, target: str) -> None:
        """Record a menu choice in the call's menu path (label None: the target's label)."""

    def call_subflow(self, flow_id: str, return_to: str | None) -> None: ...
    def hangup(self, status: int | None, reason: str) -> None: ...


class NodeSpec(_Model):
    """Fields every node has; subclasses add theirs and their behaviour."""

    type: str
    label: Label | None = None
    description: str | None = None

    NODE_TYPE: ClassVar[str] = ""
    WAITS: ClassVar[bool] = False
    """Plays a prompt or waits for the caller: a loop through it cannot spin."""
    NEEDS_MEDIA: ClassVar[bool] = False
    """Needs the call answered first (the interpreter answers implicitly)."""
    TARGET_FIELDS: ClassVar[tuple[str, ...]] = ("next",)
    """Fields holding node ids; a missing optional one ends the (sub)flow."""

    def targets(self) -> Iterator[tuple[DocPath, str]]:
        """Every node id this node can continue at, with the field that names it."""
        for name in self.TARGET_FIELDS:
            value = getattr(self, name, None)
            if isinstance(value, str):
                yield (name,), value

    def ends_flow(self) -> bool:
        """Whether this node can end its flow by having no target (returns from a subflow)."""
        return any(getattr(self, name, None) is None for name in self.TARGET_FIELDS)

    def prompt_sets(self) -> Iterator[tuple[DocPath, PromptVariants]]:
        for name, info in type(self).model_fields.items():
            if info.metadata and any(m is _PROMPTS_MARK for m in info.metadata):
                value = getattr(self, name)
                if value is not None:
                    yield (name,), value

    def expressions(self) -> Iterator[tuple[DocPath, Expression]]:
        return iter(())

    def assigned_variables(self) -> Iterator[tuple[DocPath, str]]:
        """Variables this node sets, with the field naming each."""
        return iter(())

    def subflows(self) -> Iterator[tuple[DocPath, str]]:
        return iter(())

    def enter(self, rt: Runtime) -> Activity | None:
        """Run the node: act on ``rt`` and either move on (``rt.go``) or return the activity
        that waits for the next event."""
        raise NotImplementedError


class _PromptsMark:
    """Marks a field as holding prompts (so the loader checks files and templates)."""


_PROMPTS_MARK = _PromptsMark()
PromptsField = Annotated[Prompts, _PROMPTS_MARK]

NODE_TYPES: dict[str, type[NodeSpec]] = {}
"""Registered node types by their ``type:`` name. Later issues add ``queue``, ``hours``,
``deflect`` by registering more modules."""

N = TypeVar("N", bound=type[NodeSpec])


def register_node(name: str) -> Any:
    """Class decorator: make a :class:`NodeSpec` subclass the model of ``type: name``."""

    def decorate(cls: N) -> N:
        if name in NODE_TYPES:
            raise ValueError(f"node type {name!r} registered twice")
        cls.NODE_TYPE = name
        NODE_TYPES[name] = cls
        return cls

    return decorate


# --------------------------------------------------------------------------------------------
# flow files


Scalar = str | int | float | bool


class FlowSpec(_Model):
    """A flow file's top level; ``nodes`` are validated one by one by the loader."""

    flow: FlowId
    description: str | None = None
    entry: NodeId
    language: LanguageCode | None = None
    variables: dict[VariableName, Scalar] = Field(default_factory=dict)
    nodes: dict[Any, Any]

    @model_validator(mode="after")
    def _some_nodes(self) -> Self:
        if not self.nodes:
            raise located_error((("nodes",), "a flow needs at least one node"))
        return self


# --------------------------------------------------------------------------------------------
# routes


class Route(_Model):
    """Calls from ``trunk`` (any when absent) to a dialled number go to ``flow``.

    Match the number with exactly one of ``number`` (exact), ``prefix`` or ``pattern`` (a
    regular expression matching the whole number); with none, every number matches.
    """

    trunk: Annotated[str, Field(min_length=1)] | None = None
    number: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    prefix: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    pattern: RegexField | None = None
    flow: FlowId

    @model_validator(mode="after")
    def _one_matcher(self) -> Self:
        given = [n for n in ("number", "prefix", "pattern") if getattr(self, n) is not None]
        if len(given) > 1:
            raise located_error(
                ((given[1],), f"give only one of number, prefix, pattern (got {', '.join(given)})")
            )
        return self

    def matches(self, trunk: str | None, dialled: str) -> bool:
        if self.trunk is not None and self.trunk != trunk:
            return False
        if self.number is not None:
            return dialled == self.number
        if self.prefix is not None:
            return dialled.startswith(self.prefix)
        if self.pattern is not None:
            return self.pattern.fullmatch(dialled) is not None
        return True


class RoutesConfig(_Model):
    """The engine config's ``routes:`` section: ``rules`` in order, first match wins, else
    ``default``."""

    default: FlowId = "default"
    rules: tuple[Route, ...] = ()

    def select(self, trunk: str | None, dialled: str) -> str:
        for rule in self.rules:
            if rule.matches(trunk, dialled):
                return rule.flow
        return self.default
