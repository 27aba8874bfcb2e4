"""Structured logging: structlog JSON (or console) lines, bound to the call id.

``configure_logging`` routes structlog and the standard library's ``logging`` through one
handler, so third-party and stdlib log records come out in the same format. Every line
carries the context variables bound for the current task: wrap the handling of a call in
``call_log_context(call_id)`` and every line logged while handling it has ``call_id``.
asyncio copies the context into each task, so concurrent calls never see each other's ids.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import Processor

__all__ = ["call_log_context", "configure_logging", "get_logger"]

Level = Literal["debug", "info", "warning", "error"]
Format = Literal["json", "console"]

# Marks the handler we installed on the root logger, so reconfiguring replaces it.
_HANDLER_NAME = "switchhook"


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def configure_logging(
    level: Level | str = "info",
    fmt: Format | str = "json",
    file: str | os.PathLike[str] | None = None,
    *,
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and stdlib logging for the whole process.

    ``level``: debug | info | warning | error. ``fmt``: ``json`` (one object per line with
    ``timestamp`` (ISO 8601, UTC), ``level``, ``logger``, ``event`` and bound context) or
    ``console`` (human-readable). ``file``: append to this file instead of ``stream``
    (default standard error). Safe to call again (e.g. on config reload).
    """
    numeric = logging.getLevelName(str(level).upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    renderer: Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    elif fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    else:
        raise ValueError(f"unknown log format {fmt!r}")

    shared = _shared_processors()
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.format_exc_info if fmt == "json" else _pass_through,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: reconfiguring (level change on reload) must reach existing loggers.
        cache_logger_on_first_use=False,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from plain stdlib loggers get the same fields as structlog ones.
        foreign_pre_chain=[*shared, structlog.processors.format_exc_info]
        if fmt == "json"
        else shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    handler: logging.Handler
    if file is not None:
        handler = logging.FileHandler(os.fspath(file), encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)
    root.setLevel(numeric)


def _pass_through(_logger: Any, _name: str, event_dict: Any) -> Any:
    # The console renderer formats exceptions itself.
    return event_dict


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger named like a stdlib one (``get_logger(__name__)``)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


@contextmanager
def call_log_context(call_id: str, **extra: Any) -> Iterator[None]:
    """Bind ``call_id`` (and ``extra``) to every log line in this block, then restore.

    Restores the previous values rather than deleting them, so contexts nest.
    """
    tokens = structlog.contextvars.bind_contextvars(call_id=call_id, **extra)
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
