"""``subflow``: run another flow from its entry, then come back to ``next``."""

from __future__ import annotations

from collections.abc import Iterator

from ivr.yamlloc import DocPath

from ..model import Activity, FlowId, NodeId, NodeSpec, Runtime, register_node


@register_node("subflow")
class SubflowNode(NodeSpec):
    """Call flow ``flow``; when it ends (a node with no ``next``), continue at ``next``
    (or end this flow too when ``next`` is absent). Variables are shared by the call."""

    flow: FlowId
    next: NodeId | None = None

    def subflows(self) -> Iterator[tuple[DocPath, str]]:
        yield ("flow",), self.flow

    def enter(self, rt: Runtime) -> Activity | None:
        rt.call_subflow(self.flow, self.next)
        return None
