"""``menu``: a prompt, one key per option, retries on no input or an invalid key, then
``fallback``. Every choice extends the call's menu path (``Support > Billing``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from ivr.yamlloc import DocPath, located_error

from ..model import (
    DTMF_DIGITS,
    Activity,
    Label,
    NodeId,
    NodeSpec,
    PromptsField,
    PromptVariants,
    Runtime,
    _Model,
    non_empty,
    register_node,
)


class MenuOption(_Model):
    next: NodeId
    label: Label | None = None


def option_keys(value: Any) -> Any:
    """Accept ``1:`` (YAML reads an int) as well as ``"1":``; keys must be one DTMF key."""
    if not isinstance(value, dict):
        return value
    problems: list[tuple[DocPath, str]] = []
    converted: dict[str, Any] = {}
    for key, option in value.items():
        text = str(key) if isinstance(key, int) and not isinstance(key, bool) else key
        if not isinstance(text, str) or len(text) != 1 or text not in DTMF_DIGITS:
            problems.append(
                (
                    (key,),
                    f"option key must be one DTMF key: one of {' '.join(DTMF_DIGITS)} "
                    f"(got {key!r})",
                )
            )
        else:
            converted[text] = option
    if problems:
        raise located_error(*problems)
    return converted


@register_node("menu")
class MenuNode(NodeSpec):
    """Options map a key to a node id, or to ``{next: node, label: "Billing"}``. The menu
    path records the option's label, else the target node's ``label``, else its id (unless
    ``in_menu_path: false``)."""

    prompts: PromptsField
    options: Annotated[dict[str, NodeId | MenuOption], AfterValidator(non_empty)]
    no_input: PromptsField | None = None
    invalid: PromptsField | None = None
    retries: int = Field(2, ge=0, le=10)
    timeout_seconds: float = Field(5, gt=0, le=120)
    interruptible: bool = True
    in_menu_path: bool = True
    """False for menus that are not about the caller's issue (e.g. a language choice)."""
    fallback: NodeId

    WAITS = True
    NEEDS_MEDIA = True
    TARGET_FIELDS = ("fallback",)

    _keys = field_validator("options", mode="before")(option_keys)

    def targets(self) -> Iterator[tuple[DocPath, str]]:
        for key, option in self.options.items():
            if isinstance(option, str):
                yield ("options", key), option
            else:
                yield ("options", key, "next"), option.next
        yield ("fallback",), self.fallback

    def enter(self, rt: Runtime) -> Activity | None:
        activity = _Menu(self)
        activity.begin(rt)
        return activity


@dataclass(slots=True)
class _Menu:
    node: MenuNode
    failures: int = 0
    phase: str = "idle"  # prompt | wait | final
    play_id: str | None = None
    timer_id: str | None = None

    def begin(self, rt: Runtime) -> None:
        digit = rt.take_digit()
        if digit is not None:
            self._choose(rt, digit)
        else:
            self._prompt(rt, None)

    def _prompt(self, rt: Runtime, before: PromptVariants | None) -> None:
        prompts = [p for p in (before, self.node.prompts) if p is not None]
        self.phase = "prompt"
        self.play_id = rt.play(*prompts, interruptible=self.node.interruptible)

    def prompt_finished(self, rt: Runtime, play_id: str) -> None:
        if play_id != self.play_id:
            return
        if self.phase == "final":
            rt.go(self.node.fallback)
        elif self.phase == "prompt":
            digit = rt.take_digit()
            if digit is not None:
                self._choose(rt, digit)
                return
            self.phase = "wait"
            self.timer_id = rt.start_timer(self.node.timeout_seconds)

    def digit(self, rt: Runtime, digit: str) -> None:
        if self.phase == "prompt" and self.node.interruptible and self.play_id is not None:
            rt.stop_prompt(self.play_id)
            self._choose(rt, digit)
        elif self.phase == "wait" and self.timer_id is not None:
            rt.cancel_timer(self.timer_id)
            self._choose(rt, digit)
        else:
            rt.buffer_digit(digit)

    def timer_expired(self, rt: Runtime, timer_id: str) -> None:
        if self.phase == "wait" and timer_id == self.timer_id:
            self._fail(rt, self.node.no_input)

    def _choose(self, rt: Runtime, digit: str) -> None:
        option = self.node.options.get(digit)
        if option is None:
            self._fail(rt, self.node.invalid)
            return
        target, label = (option, None) if isinstance(option, str) else (option.next, option.label)
        if self.node.in_menu_path:
            rt.choose(label, target)
        rt.go(target)

    def _fail(self, rt: Runtime, message: PromptVariants | None) -> None:
        self.failures += 1
        if self.failures <= self.node.retries:
            self._prompt(rt, message)
        elif message is not None:
            self.phase = "final"
            self.play_id = rt.play(message, interruptible=False)
        else:
            rt.go(self.node.fallback)
