"""Engine-side tasks that flow nodes hand calls to (``StartTask`` -> ``TaskFinished``).

A task handler is ``async def handler(call, task) -> TaskResult``. A :class:`TaskRegistry` is
an object: whoever composes the engine registers each feature's handlers on it (the feature
modules export them in a ``TASKS`` mapping), and the flow runtime looks kinds up in the
registry it was given. This module imports no feature.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .flows.actions import StartTask


@dataclass(frozen=True, slots=True)
class TaskResult:
    result: str
    data: Mapping[str, Any] = field(default_factory=dict)


# (call, task) -> result; the call is an ``ivr.call.Call`` (not imported: ivr.call names this
# module's registry in its CallCore interface).
TaskHandler = Callable[[Any, StartTask], Awaitable[TaskResult]]


class TaskRegistry:
    """Flow task kinds (``queue``, ``deflect``, ``voicemail``, ...) -> their handlers."""

    def __init__(self) -> None:
        self._handlers: dict[str, TaskHandler] = {}

    def register(self, kind: str, handler: TaskHandler) -> None:
        if kind in self._handlers:
            raise ValueError(f"flow task {kind!r} is registered twice")
        self._handlers[kind] = handler

    def register_all(self, handlers: Mapping[str, TaskHandler]) -> None:
        for kind, handler in handlers.items():
            self.register(kind, handler)

    def get(self, kind: str) -> TaskHandler | None:
        return self._handlers.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))
