"""Nodes that hand the call to an engine-side task and continue on its result.

``hours`` (is a calendar open now?), ``queue`` (wait for an agent), ``deflect`` (after-hours
or explicit deflection), ``voicemail`` and ``transfer`` (to a number or SIP URI). The flow
emits :class:`~ivr.flows.actions.StartTask` and waits for ``TaskFinished``; the result picks
the next node. Tasks run in the engine (``ivr/tasks.py``), never in the interpreter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field

from ..model import Activity, NodeId, NodeSpec, Runtime, register_node


class _TaskNode(NodeSpec):
    """Common behaviour: start the task, wait, go to the node its result names."""

    KIND: ClassVar[str] = ""
    WAITS = True

    def params(self) -> Mapping[str, Any]:
        return {}

    def target_for(self, result: str) -> str | None:
        target = getattr(self, result, None) if result in self.TARGET_FIELDS else None
        return target if isinstance(target, str) else getattr(self, "next", None)

    def enter(self, rt: Runtime) -> Activity | None:
        return _WaitingTask(self, rt.start_task(self.KIND, self.params()))


@dataclass(slots=True)
class _WaitingTask:
    node: _TaskNode
    task_id: str

    def task_finished(self, rt: Runtime, task_id: str, result: str) -> None:
        if task_id == self.task_id:
            rt.go(self.node.target_for(result))

    def prompt_finished(self, rt: Runtime, play_id: str) -> None:
        return None

    def digit(self, rt: Runtime, digit: str) -> None:
        rt.buffer_digit(digit)

    def timer_expired(self, rt: Runtime, timer_id: str) -> None:
        return None


@register_node("hours")
class HoursNode(_TaskNode):
    """Branch on business hours now: the queue's calendar (with ``queue``) or the
    environment's, for the call's language and channel (``docs/hours.md``)."""

    queue: str | None = None
    open: NodeId
    closed: NodeId

    KIND = "hours"
    WAITS = False  # answered at once: a loop through it could spin
    TARGET_FIELDS = ("open", "closed")

    def params(self) -> Mapping[str, Any]:
        return {"queue": self.queue}


@register_node("queue")
class QueueNode(_TaskNode):
    """Queue the caller for an agent of ``queue`` (hold audio, announcements, whisper to the
    agent, bridge). When the queue is closed and after-hours deflection applies, the caller
    is deflected as configured. Results: ``overflow`` (max wait or queue full, when the
    queue's overflow names a flow node: ``node:<id>``), ``closed`` (closed, no deflection),
    ``failed``; a bridged call that ends ends the flow."""

    queue: str
    priority: int | None = Field(None, ge=0, le=9)
    overflow: NodeId | None = None
    closed: NodeId | None = None
    failed: NodeId | None = None
    next: NodeId | None = None

    KIND = "queue"
    NEEDS_MEDIA = True
    TARGET_FIELDS = ("overflow", "closed", "failed", "next")

    def params(self) -> Mapping[str, Any]:
        return {"queue": self.queue, "priority": self.priority}

    def ends_flow(self) -> bool:
        return True


@register_node("deflect")
class DeflectNode(_TaskNode):
    """Deflect the caller now, as the after-hours settings say for ``queue`` (or globally),
    whatever the time. ``failed`` when the deflection could not be carried out."""

    queue: str | None = None
    failed: NodeId | None = None
    next: NodeId | None = None

    KIND = "deflect"
    TARGET_FIELDS = ("failed", "next")

    def params(self) -> Mapping[str, Any]:
        return {"queue": self.queue}


@register_node("voicemail")
class VoicemailNode(_TaskNode):
    """Record a voicemail for ``queue`` with that queue's voicemail settings (greeting,
    blocked-number message, callback number, confirmation)."""

    queue: str | None = None
    failed: NodeId | None = None
    next: NodeId | None = None

    KIND = "voicemail"
    NEEDS_MEDIA = True
    TARGET_FIELDS = ("failed", "next")

    def params(self) -> Mapping[str, Any]:
        return {"queue": self.queue}


@register_node("transfer")
class TransferNode(_TaskNode):
    """Send the caller to an outside ``number`` through ``trunk`` (B2BUA bridge, or REFER
    when ``method: refer``), or to a SIP ``uri`` (302 before answer, REFER after)."""

    number: str | None = Field(None, pattern=r"^\+?[0-9*#]{1,32}$")
    trunk: str | None = None
    uri: str | None = Field(None, pattern=r"^sips?:")
    method: Literal["bridge", "refer"] = "bridge"
    failed: NodeId | None = None
    next: NodeId | None = None

    KIND = "transfer"
    TARGET_FIELDS = ("failed", "next")

    def params(self) -> Mapping[str, Any]:
        return {"number": self.number, "trunk": self.trunk, "uri": self.uri, "method": self.method}

    def model_post_init(self, context: Any) -> None:
        if (self.number is None) == (self.uri is None):
            raise ValueError("give exactly one of 'number' or 'uri'")
