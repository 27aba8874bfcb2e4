"""``language``: set the call language used to choose prompts (and later business hours)."""

from __future__ import annotations

from ..model import Activity, LanguageCode, NodeId, NodeSpec, Runtime, register_node


@register_node("language")
class LanguageNode(NodeSpec):
    language: LanguageCode
    next: NodeId | None = None

    def enter(self, rt: Runtime) -> Activity | None:
        rt.set_language(self.language)
        rt.go(self.next)
        return None
