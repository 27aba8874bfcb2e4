"""``answer``: answer the call explicitly (other media nodes answer implicitly)."""

from __future__ import annotations

from ..model import Activity, NodeId, NodeSpec, Runtime, register_node


@register_node("answer")
class AnswerNode(NodeSpec):
    """Answer (200 OK) and continue at ``next`` once media flows."""

    next: NodeId | None = None

    NEEDS_MEDIA = True

    def enter(self, rt: Runtime) -> Activity | None:
        # The interpreter answered before entering (NEEDS_MEDIA); nothing left to do.
        rt.go(self.next)
        return None
