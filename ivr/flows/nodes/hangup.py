"""``hangup``: end the call: a final SIP status before answer, BYE after."""

from __future__ import annotations

from pydantic import Field

from ..model import Activity, NodeSpec, Runtime, register_node

DEFAULT_REJECT_STATUS = 603
"""Status used when an unanswered call is hung up without ``status`` (603 Decline)."""


@register_node("hangup")
class HangupNode(NodeSpec):
    """Before the call is answered, reject it with ``status`` (e.g. 486 Busy Here, 603
    Decline, 404 Not Found; default 603). After answer, send BYE; ``status`` is then
    unused. ``reason`` is logged and is the outcome's reason."""

    status: int | None = Field(None, ge=400, le=699)
    reason: str = Field("normal clearing", min_length=1, max_length=200)

    TARGET_FIELDS = ()

    def enter(self, rt: Runtime) -> Activity | None:
        status = None if rt.answered else (self.status or DEFAULT_REJECT_STATUS)
        rt.hangup(status, self.reason)
        return None
