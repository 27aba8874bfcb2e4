"""ivr.logs: JSON lines bound to the call id, stdlib routed through the same output."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from ivr.logs import call_log_context, configure_logging, get_logger


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    structlog.contextvars.clear_contextvars()
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_line_fields() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    get_logger("switchhook.test").info("call_answered", leg="a")
    (line,) = lines(out)
    assert line["event"] == "call_answered"
    assert line["level"] == "info"
    assert line["logger"] == "switchhook.test"
    assert line["leg"] == "a"
    assert datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00")).tzinfo is not None


def test_level_filters() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", stream=out)
    log = get_logger("t")
    log.info("hidden")
    log.warning("shown")
    logging.getLogger("stdlib").info("hidden too")
    assert [line["event"] for line in lines(out)] == ["shown"]


def test_stdlib_logging_goes_through_the_same_output_with_context() -> None:
    out = io.StringIO()
    configure_logging("debug", "json", stream=out)
    with call_log_context("abc@host"):
        logging.getLogger("thirdparty").warning("disk %s", "full")
    (line,) = lines(out)
    assert line["event"] == "disk full"
    assert line["logger"] == "thirdparty"
    assert line["level"] == "warning"
    assert line["call_id"] == "abc@host"


def test_call_log_context_binds_and_restores() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = get_logger("t")
    with call_log_context("outer"):
        with call_log_context("inner", leg="b"):
            log.info("one")
        log.info("two")
    log.info("three")
    one, two, three = lines(out)
    assert (one["call_id"], one["leg"]) == ("inner", "b")
    assert two["call_id"] == "outer" and "leg" not in two
    assert "call_id" not in three


def test_interleaved_tasks_keep_their_own_call_id() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    log = get_logger("switchhook.call")

    async def call(call_id: str) -> None:
        with call_log_context(call_id):
            for step in range(3):
                log.info("step", step=step, expected=call_id)
                await asyncio.sleep(0)  # yield so the other call's lines interleave

    async def main() -> None:
        await asyncio.gather(call("call-1"), call("call-2"))

    asyncio.run(main())
    records = lines(out)
    assert len(records) == 6
    # Really interleaved: consecutive lines alternate between calls.
    assert [r["call_id"] for r in records[:2]] == ["call-1", "call-2"]
    for record in records:
        assert record["call_id"] == record["expected"]


def test_console_format() -> None:
    out = io.StringIO()
    configure_logging("info", "console", stream=out)
    with call_log_context("c-1"):
        get_logger("t").info("hello")
    text = out.getvalue()
    assert "hello" in text and "call_id=c-1" in text


def test_exceptions_are_rendered_in_json() -> None:
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("t").exception("failed")
    (line,) = lines(out)
    assert "RuntimeError: boom" in line["exception"]


def test_file_output(tmp_path: Path) -> None:
    path = tmp_path / "switchhook.log"
    configure_logging("info", "json", file=path)
    get_logger("t").info("to_file")
    for handler in logging.getLogger().handlers:
        handler.flush()
    (line,) = [json.loads(x) for x in path.read_text().splitlines()]
    assert line["event"] == "to_file"


def test_reconfiguring_replaces_the_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("info", "json", stream=first)
    configure_logging("info", "json", stream=second)
    get_logger("t").info("once")
    assert first.getvalue() == ""
    assert len(lines(second)) == 1


def test_bad_level_or_format() -> None:
    with pytest.raises(ValueError):
        configure_logging("loud", "json")
    with pytest.raises(ValueError):
        configure_logging("info", "xml")
