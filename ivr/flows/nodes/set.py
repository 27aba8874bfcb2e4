"""``set``: assign variables from expressions, in the order written."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from pydantic import AfterValidator

from ivr.yamlloc import DocPath

from ..expressions import Expression
from ..model import (
    Activity,
    ExprField,
    NodeId,
    NodeSpec,
    Runtime,
    VariableName,
    non_empty,
    register_node,
)


@register_node("set")
class SetNode(NodeSpec):
    """Each value is an expression (``"'gold'"`` for a string literal, ``"int(pin) + 1"``);
    numbers and booleans are literals. A value that fails to evaluate leaves its variable
    unchanged and is logged; the flow goes on."""

    variables: Annotated[dict[VariableName, ExprField], AfterValidator(non_empty)]
    next: NodeId | None = None

    def expressions(self) -> Iterator[tuple[DocPath, Expression]]:
        for name, expression in self.variables.items():
            yield ("variables", name), expression

    def assigned_variables(self) -> Iterator[tuple[DocPath, str]]:
        for name in self.variables:
            yield ("variables", name), name

    def enter(self, rt: Runtime) -> Activity | None:
        for name, expression in self.variables.items():
            ok, value = rt.evaluate(expression, f"variables.{name}")
            if ok:
                rt.set_variable(name, value)
        rt.go(self.next)
        return None
