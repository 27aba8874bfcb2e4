"""The ``hours`` flow task: is the call's queue (or the service) open now, in its language."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .flows.actions import StartTask
from .hours import is_open
from .tasks import TaskHandler, TaskResult

if TYPE_CHECKING:
    from .call import Call


async def hours_task(call: Call, task: StartTask) -> TaskResult:
    """Open or closed now for the call's queue (if given), language and channel."""
    settings = call.engine.settings
    if settings.hours is None:
        return TaskResult("open", {})
    decision = is_open(
        settings.hours, call.engine.now(), queue=task.params.get("queue"), language=task.language
    )
    call.log.info(
        "business hours", open=decision.open, rule=decision.rule, queue=task.params.get("queue")
    )
    return TaskResult("open" if decision.open else "closed")


# The flow tasks this module provides (registered by the engine's composition).
TASKS: Mapping[str, TaskHandler] = {"hours": hours_task}
