"""``branch``: the first condition that holds picks the next node, else ``default``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator, Field

from ivr.yamlloc import DocPath

from ..expressions import Expression
from ..model import Activity, ExprField, NodeId, NodeSpec, Runtime, _Model, non_empty, register_node


class Condition(_Model):
    if_: ExprField = Field(alias="if")
    then: NodeId


@register_node("branch")
class BranchNode(NodeSpec):
    """Conditions are tried in order. A condition that fails to evaluate is logged and the
    call goes to ``default`` (never to a later condition: the admin's order is a priority)."""

    conditions: Annotated[tuple[Condition, ...], AfterValidator(non_empty)]
    default: NodeId

    TARGET_FIELDS = ("default",)

    def targets(self) -> Iterator[tuple[DocPath, str]]:
        for index, condition in enumerate(self.conditions):
            yield ("conditions", index, "then"), condition.then
        yield ("default",), self.default

    def expressions(self) -> Iterator[tuple[DocPath, Expression]]:
        for index, condition in enumerate(self.conditions):
            yield ("conditions", index, "if"), condition.if_

    def enter(self, rt: Runtime) -> Activity | None:
        for index, condition in enumerate(self.conditions):
            ok, value = rt.evaluate(condition.if_, f"conditions[{index}].if")
            if not ok:
                break
            if value:
                rt.go(condition.then)
                return None
        rt.go(self.default)
        return None
