"""ivr.hours.clock: fixed and offset clocks for tests and the test-only --clock option."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr.hours import FixedClock, OffsetClock, SystemClock, parse_clock
from ivr.hours.clock import parse_offset


def test_fixed_clock() -> None:
    instant = dt.datetime(2026, 12, 25, 10, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert FixedClock(instant).now() == instant
    with pytest.raises(ValueError, match="aware"):
        FixedClock(dt.datetime(2026, 12, 25, 10))


def test_offset_clock_over_a_fixed_base() -> None:
    base = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    clock = OffsetClock(dt.timedelta(days=3, hours=4), base)
    assert clock.now() == dt.datetime(2026, 3, 4, 4, tzinfo=dt.UTC)


def test_system_clock_is_aware() -> None:
    assert SystemClock().now().tzinfo is not None


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("+3d4h", dt.timedelta(days=3, hours=4)),
        ("-90m", -dt.timedelta(minutes=90)),
        ("+1w", dt.timedelta(weeks=1)),
        ("+1h30m15s", dt.timedelta(hours=1, minutes=30, seconds=15)),
    ],
)
def test_parse_offset(text: str, delta: dt.timedelta) -> None:
    assert parse_offset(text) == delta


def test_parse_clock_fixed_and_offset() -> None:
    fixed = parse_clock("2026-12-25T10:00:00+01:00")
    assert isinstance(fixed, FixedClock)
    assert fixed.now().isoformat() == "2026-12-25T10:00:00+01:00"
    assert parse_clock("2026-12-25T09:00:00Z").now() == fixed.now()
    base = FixedClock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    shifted = parse_clock("+3d4h", base=base)
    assert isinstance(shifted, OffsetClock)
    assert shifted.now() == dt.datetime(2026, 3, 4, 4, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-12-25T10:00:00", "has no UTC offset"),
        ("tomorrow", "neither an instant"),
        ("3d", "neither an instant"),
        ("+3x", "neither an instant"),
    ],
)
def test_parse_clock_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_clock(text)
