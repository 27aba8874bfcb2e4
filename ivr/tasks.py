"""Engine-side tasks that flow nodes hand calls to (``StartTask`` -> ``TaskFinished``).

A task handler is ``async def handler(call, task) -> TaskResult``, registered by kind with
:func:`register_task`. Each lives in its own module (queueing, deflection, voicemail,
transfer); this module holds the registry and the ``hours`` check.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .flows.actions import StartTask
from .hours import is_open

if TYPE_CHECKING:
    from .engine import Call


@dataclass(frozen=True, slots=True)
class TaskResult:
    result: str
    data: Mapping[str, Any] = field(default_factory=dict)


TaskHandler = Callable[["Call", StartTask], Awaitable[TaskResult]]
TASKS: dict[str, TaskHandler] = {}


def register_task(kind: str) -> Callable[[TaskHandler], TaskHandler]:
    def decorator(handler: TaskHandler) -> TaskHandler:
        TASKS[kind] = handler
        return handler

    return decorator


@register_task("hours")
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


# The handlers living in their own modules register themselves on import.
from . import deflection as _deflection  # noqa: E402, F401
from . import queueing as _queueing  # noqa: E402, F401
from . import voicemail as _voicemail  # noqa: E402, F401
