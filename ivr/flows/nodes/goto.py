"""``goto``: continue at another node (e.g. back to a menu)."""

from __future__ import annotations

from ..model import Activity, NodeId, NodeSpec, Runtime, register_node


@register_node("goto")
class GotoNode(NodeSpec):
    next: NodeId

    def enter(self, rt: Runtime) -> Activity | None:
        rt.go(self.next)
        return None
