"""``collect``: read DTMF digits into a variable, with length bounds, a terminator,
first-digit and inter-digit timeouts, a validation pattern, retries and a fallback."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Self

from pydantic import Field, model_validator

from ivr.yamlloc import DocPath, located_error

from ..model import (
    Activity,
    Digit,
    NodeId,
    NodeSpec,
    PromptsField,
    PromptVariants,
    RegexField,
    Runtime,
    VariableName,
    register_node,
)


@register_node("collect")
class CollectNode(NodeSpec):
    """Input ends on the ``terminator`` key (not stored), at ``max_length`` digits, or when
    ``inter_digit_timeout_seconds`` pass after a digit. It is valid when it has at least
    ``min_length`` digits and ``pattern`` (if any) matches all of it; then it is stored in
    ``variable`` (a string) and the call goes to ``next``. No first digit within
    ``first_digit_timeout_seconds`` is a no-input. After ``retries`` failed attempts: the
    ``invalid``/``no_input`` prompt, then ``fallback``."""

    variable: VariableName
    prompts: PromptsField | None = None
    min_length: int = Field(1, ge=1, le=64)
    max_length: int = Field(20, ge=1, le=64)
    terminator: Digit | None = "#"
    first_digit_timeout_seconds: float = Field(5, gt=0, le=120)
    inter_digit_timeout_seconds: float = Field(3, gt=0, le=60)
    pattern: RegexField | None = None
    retries: int = Field(2, ge=0, le=10)
    no_input: PromptsField | None = None
    invalid: PromptsField | None = None
    interruptible: bool = True
    next: NodeId | None = None
    fallback: NodeId

    WAITS = True
    NEEDS_MEDIA = True
    TARGET_FIELDS = ("next", "fallback")

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        if self.min_length > self.max_length:
            raise located_error(
                (
                    ("min_length",),
                    f"min_length ({self.min_length}) is greater than max_length "
                    f"({self.max_length})",
                )
            )
        return self

    def assigned_variables(self) -> Iterator[tuple[DocPath, str]]:
        yield ("variable",), self.variable

    def enter(self, rt: Runtime) -> Activity | None:
        activity = _Collect(self)
        activity.begin(rt)
        return activity


@dataclass(slots=True)
class _Collect:
    node: CollectNode
    digits: str = ""
    failures: int = 0
    phase: str = "idle"  # prompt | wait | collecting | final | done
    play_id: str | None = None
    timer_id: str | None = None

    def begin(self, rt: Runtime) -> None:
        if self._drain(rt):
            return
        if self.digits:
            self._wait(rt, self.node.inter_digit_timeout_seconds, "collecting")
        elif self.node.prompts is not None:
            self._prompt(rt, None)
        else:
            self._wait(rt, self.node.first_digit_timeout_seconds, "wait")

    def _prompt(self, rt: Runtime, before: PromptVariants | None) -> None:
        prompts = [p for p in (before, self.node.prompts) if p is not None]
        if not prompts:
            self._wait(rt, self.node.first_digit_timeout_seconds, "wait")
            return
        self.phase = "prompt"
        self.play_id = rt.play(*prompts, interruptible=self.node.interruptible)

    def _wait(self, rt: Runtime, seconds: float, phase: str) -> None:
        self.phase = phase
        self.timer_id = rt.start_timer(seconds)

    def _drain(self, rt: Runtime) -> bool:
        """Use type-ahead digits; True when that finished the input."""
        while (digit := rt.take_digit()) is not None:
            if self._add(rt, digit):
                return True
        return False

    def _add(self, rt: Runtime, digit: str) -> bool:
        if self.node.terminator is not None and digit == self.node.terminator:
            self._complete(rt)
            return True
        self.digits += digit
        if len(self.digits) >= self.node.max_length:
            self._complete(rt)
            return True
        return False

    def prompt_finished(self, rt: Runtime, play_id: str) -> None:
        if play_id != self.play_id:
            return
        if self.phase == "final":
            rt.go(self.node.fallback)
        elif self.phase == "prompt":
            if self._drain(rt):
                return
            if self.digits:
                self._wait(rt, self.node.inter_digit_timeout_seconds, "collecting")
            else:
                self._wait(rt, self.node.first_digit_timeout_seconds, "wait")

    def digit(self, rt: Runtime, digit: str) -> None:
        if self.phase == "prompt" and self.node.interruptible and self.play_id is not None:
            rt.stop_prompt(self.play_id)
        elif self.phase in ("wait", "collecting") and self.timer_id is not None:
            rt.cancel_timer(self.timer_id)
        else:
            rt.buffer_digit(digit)
            return
        if not self._add(rt, digit):
            self._wait(rt, self.node.inter_digit_timeout_seconds, "collecting")

    def timer_expired(self, rt: Runtime, timer_id: str) -> None:
        if timer_id != self.timer_id:
            return
        if self.phase == "wait":
            self._fail(rt, self.node.no_input)
        elif self.phase == "collecting":
            self._complete(rt)

    def _complete(self, rt: Runtime) -> None:
        value = self.digits
        pattern = self.node.pattern
        if len(value) >= self.node.min_length and (
            pattern is None or pattern.fullmatch(value) is not None
        ):
            self.phase = "done"
            rt.set_variable(self.node.variable, value)
            rt.go(self.node.next)
        else:
            self._fail(rt, self.node.invalid)

    def _fail(self, rt: Runtime, message: PromptVariants | None) -> None:
        self.failures += 1
        self.digits = ""
        if self.failures <= self.node.retries:
            self._prompt(rt, message)
        elif message is not None:
            self.phase = "final"
            self.play_id = rt.play(message, interruptible=False)
        else:
            rt.go(self.node.fallback)
