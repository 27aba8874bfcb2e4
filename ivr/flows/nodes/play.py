"""``play``: play prompts, optionally interruptible by a DTMF key, then continue."""

from __future__ import annotations

from dataclasses import dataclass

from ..model import Activity, NodeId, NodeSpec, PromptsField, Runtime, register_node


@register_node("play")
class PlayNode(NodeSpec):
    """Play ``prompts``. When ``interruptible``, a key stops the prompt and is kept for the
    next menu or collect (type-ahead); otherwise keys are kept and the prompt plays out."""

    prompts: PromptsField
    interruptible: bool = False
    next: NodeId | None = None

    WAITS = True
    NEEDS_MEDIA = True

    def enter(self, rt: Runtime) -> Activity | None:
        return _Playing(self, rt.play(self.prompts, interruptible=self.interruptible))


@dataclass(slots=True)
class _Playing:
    node: PlayNode
    play_id: str

    def prompt_finished(self, rt: Runtime, play_id: str) -> None:
        if play_id == self.play_id:
            rt.go(self.node.next)

    def digit(self, rt: Runtime, digit: str) -> None:
        rt.buffer_digit(digit)
        if self.node.interruptible:
            rt.stop_prompt(self.play_id)
            rt.go(self.node.next)

    def timer_expired(self, rt: Runtime, timer_id: str) -> None:
        return None
