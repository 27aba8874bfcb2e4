"""Injected clocks: the engine asks a Clock for ``now``; tests and ``--clock`` fix or shift it.

``SystemClock`` is the only place in ``ivr.hours`` that reads the real time. ``FixedClock`` and
``OffsetClock`` exist for testing (``switchhook run --clock ...`` is documented as test-only):
a fixed instant, or the real time shifted by an offset.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["Clock", "FixedClock", "OffsetClock", "SystemClock", "parse_clock", "parse_offset"]

_OFFSET = re.compile(r"^([+-])((?:\d+[wdhms])+)$")
_PART = re.compile(r"(\d+)([wdhms])")
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


class Clock(Protocol):
    def now(self) -> dt.datetime:
        """The current instant, always aware."""
        ...


@dataclass(frozen=True, slots=True)
class SystemClock:
    """The real time, in UTC."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class FixedClock:
    """Always the same instant (test-only)."""

    at: dt.datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None or self.at.utcoffset() is None:
            raise ValueError("FixedClock needs an aware datetime (with a UTC offset)")

    def now(self) -> dt.datetime:
        return self.at


@dataclass(frozen=True, slots=True)
class OffsetClock:
    """Another clock shifted by ``offset`` (test-only): ``+3d4h`` runs three days and four
    hours ahead."""

    offset: dt.timedelta
    base: Clock = field(default_factory=SystemClock)

    def now(self) -> dt.datetime:
        return self.base.now() + self.offset


def parse_offset(text: str) -> dt.timedelta:
    """``+3d4h``, ``-90m``, ``+1w``: sign, then number+unit pairs (w, d, h, m, s)."""
    match = _OFFSET.match(text.strip())
    if not match:
        raise ValueError(
            f"{text!r} is not an offset; write a sign and units, e.g. '+3d4h' or '-90m'"
        )
    total = dt.timedelta()
    for number, unit in _PART.findall(match[2]):
        total += dt.timedelta(**{_UNITS[unit]: int(number)})
    return -total if match[1] == "-" else total


def parse_clock(text: str, *, base: Clock | None = None) -> Clock:
    """The ``--clock`` option: an ISO instant with an offset (``2026-12-25T10:00:00+01:00``)
    gives a FixedClock; a signed offset (``+3d4h``) gives an OffsetClock over ``base``
    (default: the system clock). Raises ValueError with an admin-readable message."""
    value = text.strip()
    if _OFFSET.match(value):
        return OffsetClock(parse_offset(value), base if base is not None else SystemClock())
    try:
        at = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither an instant like '2026-12-25T10:00:00+01:00' "
            "nor an offset like '+3d4h'"
        ) from None
    if at.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write e.g. '{value}+01:00' or '{value}Z'")
    return FixedClock(at)
