"""Evaluate business hours at an instant: open or closed, which rule decided, next change.

Pure: every entry point takes the instant (an aware datetime); nothing reads a clock.

Wall-clock semantics across DST (see docs/hours.md): a range opens when the calendar's local
clock first shows its start and closes when it first shows its end. A time that does not exist
(spring forward) therefore means the instant the clocks jump; a time that occurs twice (fall
back) means its first occurrence.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass

from ivr.hours.calendar import (
    DAY_NAMES,
    CalendarOverride,
    DateRule,
    HoursConfig,
    TimeRange,
    Weekly,
    format_day_hours,
    preset_holidays,
)

__all__ = [
    "HORIZON_DAYS",
    "Calendar",
    "DayRule",
    "Decision",
    "Window",
    "calendar_for",
    "is_open",
    "windows",
]

HORIZON_DAYS = 800
"""How far ahead ``next_change`` looks (a little over two years); beyond it, None."""

_UTC = dt.UTC


@dataclass(frozen=True, slots=True, kw_only=True)
class DayRule:
    """What decides one local date's hours, and those hours."""

    source: str  # human readable: "weekly mon", "holiday 'Christmas Day' 2026-12-25"
    ranges: tuple[TimeRange, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Calendar:
    """The effective calendar for one (queue, language, channel): overrides resolved."""

    scope: str  # "global", "queue billing", "language fr", "channel voice"
    timezone: str
    weekly: tuple[tuple[TimeRange, ...], ...]
    holidays: tuple[DateRule, ...]
    special_dates: tuple[DateRule, ...]
    presets: tuple[tuple[str, str | None], ...]

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def day_rule(self, day: dt.date) -> DayRule:
        """The rule for ranges that start on local date ``day``.

        Precedence: fixed-date entries (special date, then holiday), then yearly ones (special
        date, then holiday), then the country preset (closed), then the weekly schedule.
        """
        for recurring in (False, True):
            for kind, rules in (("special date", self.special_dates), ("holiday", self.holidays)):
                for rule in rules:
                    if rule.recurring == recurring and rule.matches(day):
                        return DayRule(source=f"{kind} {rule.label()}", ranges=rule.hours or ())
        for country, subdivision in self.presets:
            name = preset_holidays(country, subdivision, day.year).get(day)
            if name is not None:
                where = f"{country}-{subdivision}" if subdivision else country
                return DayRule(
                    source=f"public holiday '{name}' {day.isoformat()} ({where})", ranges=()
                )
        weekday = day.weekday()
        return DayRule(source=f"weekly {DAY_NAMES[weekday]}", ranges=self.weekly[weekday])


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """Whether a calendar is open at an instant, and why."""

    open: bool
    rule: str  # "queue billing: holiday 'Christmas Day' 2026-12-25 (closed)"
    calendar_scope: str
    next_change: dt.datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Window:
    """An open window, as aware datetimes in the calendar's zone; ``end`` is exclusive."""

    start: dt.datetime
    end: dt.datetime


def calendar_for(
    config: HoursConfig,
    *,
    queue: str | None = None,
    channel: str = "voice",
    language: str | None = None,
) -> Calendar:
    """The effective calendar: queue > language > channel > global."""
    chosen: tuple[str, CalendarOverride] | None = None
    if queue is not None and queue in config.queues:
        chosen = (f"queue {queue}", config.queues[queue])
    elif language is not None and (found := config.language_override(language)) is not None:
        chosen = (f"language {found[0]}", found[1])
    elif channel in config.channels:
        chosen = (f"channel {channel}", config.channels[channel])
    env_presets: tuple[tuple[str, str | None], ...] = (
        ((config.country, config.subdivision),) if config.country else ()
    )
    if chosen is None:
        return Calendar(
            scope="global",
            timezone=config.timezone,
            weekly=_week(config.weekly),
            holidays=config.holidays,
            special_dates=config.special_dates,
            presets=env_presets,
        )
    scope, override = chosen
    holidays = override.holidays
    specials = override.special_dates
    presets: tuple[tuple[str, str | None], ...] = (
        ((override.country, override.subdivision),) if override.country else ()
    )
    if override.inherit_holidays:
        # The override's own entries win on the same date: list them first.
        own_h = {rule.key for rule in holidays}
        own_s = {rule.key for rule in specials}
        holidays = holidays + tuple(r for r in config.holidays if r.key not in own_h | own_s)
        specials = specials + tuple(r for r in config.special_dates if r.key not in own_s | own_h)
        presets = presets + tuple(p for p in env_presets if p not in presets)
    return Calendar(
        scope=scope,
        timezone=override.timezone or config.timezone,
        weekly=_week(override.weekly),
        holidays=holidays,
        special_dates=specials,
        presets=presets,
    )


def _week(weekly: Weekly) -> tuple[tuple[TimeRange, ...], ...]:
    return tuple(weekly.day(i) for i in range(7))


# --------------------------------------------------------------------------------------------
# Local wall time -> instant


def _wall(instant: dt.datetime, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def local_instant(day: dt.date, minutes: int, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The first instant the local clock of ``zone`` shows ``minutes`` after ``day``'s
    midnight (``minutes`` may exceed a day). Returned in UTC."""
    day = day + dt.timedelta(days=minutes // (24 * 60))
    minutes %= 24 * 60
    naive = dt.datetime.combine(day, dt.time(minutes // 60, minutes % 60))
    first = naive.replace(tzinfo=zone, fold=0).astimezone(_UTC)
    if _wall(first, zone) == naive:
        # Exists. fold=0 is the first occurrence when the time is repeated (fall back).
        return first
    # In a gap (spring forward): the clock jumps over `naive`; the first instant it shows a
    # later time is the jump itself. fold=1 lands before the jump, fold=0 after it.
    low = naive.replace(tzinfo=zone, fold=1).astimezone(_UTC)
    high = first
    if low > high:
        low, high = high, low
    # Invariant: wall(low) < naive <= wall(high); transitions fall on whole seconds.
    while high - low > dt.timedelta(seconds=1):
        middle = low + (high - low) / 2
        middle = middle.replace(microsecond=0)
        if middle <= low:
            break
        if _wall(middle, zone) < naive:
            low = middle
        else:
            high = middle
    return high


def _day_intervals(
    calendar: Calendar, day: dt.date, zone: zoneinfo.ZoneInfo
) -> Iterator[tuple[dt.datetime, dt.datetime, TimeRange, DayRule]]:
    rule = calendar.day_rule(day)
    for time_range in rule.ranges:
        start = local_instant(day, time_range.start, zone)
        end = local_instant(day, time_range.end, zone)
        if end > start:
            yield start, end, time_range, rule


def _merged(
    calendar: Calendar, first_day: dt.date, last_day: dt.date
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Open intervals (UTC) of ranges starting on first_day..last_day, merged when they
    overlap or touch."""
    zone = calendar.zone
    spans: list[tuple[dt.datetime, dt.datetime]] = []
    day = first_day
    while day <= last_day:
        spans.extend((s, e) for s, e, _, _ in _day_intervals(calendar, day, zone))
        day += dt.timedelta(days=1)
    spans.sort()
    merged: list[tuple[dt.datetime, dt.datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


# --------------------------------------------------------------------------------------------
# Public evaluation


def _check_aware(value: dt.datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be an aware datetime (with a time zone)")


def evaluate(calendar: Calendar, at: dt.datetime) -> Decision:
    """Open or closed at ``at`` for an already resolved calendar."""
    _check_aware(at, "at")
    zone = calendar.zone
    at_utc = at.astimezone(_UTC)
    today = _wall(at_utc, zone).date()
    yesterday = today - dt.timedelta(days=1)
    deciding: tuple[TimeRange, DayRule, dt.date] | None = None
    for day in (yesterday, today):
        for start, end, time_range, rule in _day_intervals(calendar, day, zone):
            if start <= at_utc < end:
                deciding = (time_range, rule, day)
    if deciding is not None:
        time_range, rule, day = deciding
        suffix = f", from {DAY_NAMES[day.weekday()]} {day.isoformat()}" if day != today else ""
        text = f"{calendar.scope}: {rule.source} {time_range} (open{suffix})"
    else:
        rule = calendar.day_rule(today)
        if rule.ranges:
            hours = format_day_hours(rule.ranges)
            text = f"{calendar.scope}: {rule.source} {hours} (closed at this time)"
        else:
            text = f"{calendar.scope}: {rule.source} (closed)"
    return Decision(
        open=deciding is not None,
        rule=text,
        calendar_scope=calendar.scope,
        next_change=_next_change(calendar, at_utc, is_open=deciding is not None),
    )


def _next_change(calendar: Calendar, at_utc: dt.datetime, *, is_open: bool) -> dt.datetime | None:
    zone = calendar.zone
    today = _wall(at_utc, zone).date()
    # Look ahead in chunks so the common case (a change within days) stays cheap.
    first = today - dt.timedelta(days=1)
    for chunk_days in (8, 64, HORIZON_DAYS):
        last = today + dt.timedelta(days=chunk_days)
        merged = _merged(calendar, first, last)
        # Ranges starting after `last` could extend a window ending near the chunk's end, so
        # only trust ends well inside the chunk.
        trusted = local_instant(last, 0, zone)
        for start, end in merged:
            if is_open and start <= at_utc < end:
                if end < trusted:
                    return end.astimezone(zone)
                break
            if not is_open and start > at_utc:
                return start.astimezone(zone)
    return None


def is_open(
    config: HoursConfig,
    at: dt.datetime,
    *,
    queue: str | None = None,
    channel: str = "voice",
    language: str | None = None,
) -> Decision:
    """Is the calendar for (queue, language, channel) open at ``at``? Precedence:
    queue > language > channel > global. ``next_change`` is in the calendar's zone."""
    calendar = calendar_for(config, queue=queue, channel=channel, language=language)
    return evaluate(calendar, at)


def calendar_windows(calendar: Calendar, start: dt.datetime, end: dt.datetime) -> list[Window]:
    """Open windows of ``calendar`` clipped to ``[start, end)``, in the calendar's zone."""
    _check_aware(start, "start")
    _check_aware(end, "end")
    zone = calendar.zone
    start_utc, end_utc = start.astimezone(_UTC), end.astimezone(_UTC)
    if end_utc <= start_utc:
        return []
    first = _wall(start_utc, zone).date() - dt.timedelta(days=1)
    last = _wall(end_utc, zone).date()
    result: list[Window] = []
    for s, e in _merged(calendar, first, last):
        s, e = max(s, start_utc), min(e, end_utc)
        if s < e:
            result.append(Window(start=s.astimezone(zone), end=e.astimezone(zone)))
    return result


def windows(
    config: HoursConfig,
    start: dt.date | dt.datetime,
    days: int,
    *,
    queue: str | None = None,
    channel: str = "voice",
    language: str | None = None,
) -> list[tuple[dt.datetime, dt.datetime]]:
    """Open windows over ``days`` days from ``start`` as ``(start, end)`` pairs in the
    calendar's zone. A date means that date's local midnight in the calendar's zone; a
    datetime must be aware. Windows that touch are merged (a 24h week is one window)."""
    if days < 0:
        raise ValueError("days must be >= 0")
    calendar = calendar_for(config, queue=queue, channel=channel, language=language)
    zone = calendar.zone
    if isinstance(start, dt.datetime):
        _check_aware(start, "start")
        begin = start.astimezone(zone)
        # Aware + timedelta is wall-clock arithmetic: the same local time `days` later.
        end = begin + dt.timedelta(days=days)
    else:
        begin = local_instant(start, 0, zone)
        end = local_instant(start + dt.timedelta(days=days), 0, zone)
    return [(w.start, w.end) for w in calendar_windows(calendar, begin, end)]
