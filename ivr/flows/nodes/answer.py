"""``answer``: answer the call explicitly (other media nodes answer implicitly)."""

from __future__ import annotations

from pydantic import Field

from ..model import Activity, NodeId, NodeSpec, Runtime, register_node


@register_node("answer")
class AnswerNode(NodeSpec):
    """Answer (200 OK) and continue at ``next`` once media flows.

    ``ring_seconds``: send 180 Ringing and let it ring this long first (callers expect a
    ring or two; a CANCEL in that time ends the call before it is answered)."""

    next: NodeId | None = None
    ring_seconds: float = Field(0.0, ge=0, le=60)

    NEEDS_MEDIA = True

    def enter(self, rt: Runtime) -> Activity | None:
        # The interpreter answered before entering (NEEDS_MEDIA); nothing left to do.
        rt.go(self.next)
        return None
