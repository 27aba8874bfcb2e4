"""``switchhook hours``: print open/closed windows per day, or the decision at one instant.

The lead's argparse wiring calls :func:`run_hours_command` with the parsed options and the
current instant from the engine's clock; it returns an exit code and the lines to print.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection

from ivr.hours.calendar import DAY_NAMES, HoursConfig, format_day_hours
from ivr.hours.evaluate import Calendar, calendar_for, calendar_windows, evaluate, local_instant

__all__ = ["EXIT_OK", "EXIT_USAGE", "MAX_DAYS", "run_hours_command"]

EXIT_OK = 0
EXIT_USAGE = 2
MAX_DAYS = 366


def run_hours_command(
    config: HoursConfig,
    *,
    now: dt.datetime,
    queue: str | None = None,
    language: str | None = None,
    channel: str = "voice",
    from_date: str | None = None,
    days: int = 7,
    at: str | None = None,
    known_queues: Collection[str] | None = None,
) -> tuple[int, list[str]]:
    """Windows per local day from ``from_date`` (default: today in the calendar's zone) for
    ``days`` days; or, with ``at``, whether the calendar is open then and which rule decided.

    ``at`` is ISO 8601; without a UTC offset it is read in the calendar's zone. Exit code 0
    when the report was printed (open or closed alike), 2 for a usage error.
    """
    if known_queues is not None and queue is not None and queue not in known_queues:
        return EXIT_USAGE, [f"error: unknown queue {queue!r}"]
    calendar = calendar_for(config, queue=queue, channel=channel, language=language)
    zone = calendar.zone
    header = f"calendar: {calendar.scope} ({calendar.timezone})"
    if at is not None:
        try:
            instant = dt.datetime.fromisoformat(at.strip().replace("Z", "+00:00"))
        except ValueError:
            return EXIT_USAGE, [
                f"error: --at {at!r} is not a date and time like 2026-12-25T10:00 "
                "or 2026-12-25T10:00:00+01:00"
            ]
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=zone)
        decision = evaluate(calendar, instant)
        local = instant.astimezone(zone)
        lines = [
            header,
            f"at: {local.isoformat()} ({DAY_NAMES[local.weekday()]})",
            f"state: {'open' if decision.open else 'closed'}",
            f"rule: {decision.rule}",
            "next change: "
            + (decision.next_change.isoformat() if decision.next_change else "none within 2 years"),
        ]
        return EXIT_OK, lines
    if not 1 <= days <= MAX_DAYS:
        return EXIT_USAGE, [f"error: --days must be between 1 and {MAX_DAYS} (got {days})"]
    if from_date is None:
        first = now.astimezone(zone).date()
    else:
        try:
            first = dt.date.fromisoformat(from_date.strip())
        except ValueError:
            return EXIT_USAGE, [f"error: --from {from_date!r} is not a date like 2026-12-24"]
    last = first + dt.timedelta(days=days - 1)
    lines = [f"{header}, {first.isoformat()} to {last.isoformat()}"]
    lines.extend(_day_lines(calendar, first, days))
    return EXIT_OK, lines


def _day_lines(calendar: Calendar, first: dt.date, days: int) -> list[str]:
    zone = calendar.zone
    begin = local_instant(first, 0, zone)
    end = local_instant(first + dt.timedelta(days=days), 0, zone)
    found = calendar_windows(calendar, begin, end)
    lines: list[str] = []
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        day_start = local_instant(day, 0, zone)
        day_end = local_instant(day + dt.timedelta(days=1), 0, zone)
        parts: list[str] = []
        for window in found:
            # Compare in UTC: same-zone aware datetimes compare as wall times.
            start = max(window.start.astimezone(dt.UTC), day_start)
            stop = min(window.end.astimezone(dt.UTC), day_end)
            if start < stop:
                parts.append(f"{_clock(start, zone)}-{_clock(stop, zone, end_of=day)}")
        state = f"open {', '.join(parts)}" if parts else "closed"
        rule = calendar.day_rule(day)
        line = f"{day.isoformat()} {DAY_NAMES[day.weekday()]}  {state:<34}  "
        line += f"[{rule.source}: {format_day_hours(rule.ranges)}]"
        before = day_start.astimezone(zone).utcoffset()
        after = day_end.astimezone(zone).utcoffset()
        if before != after:
            line += f"  [clocks change: UTC{_offset(before)} -> UTC{_offset(after)}]"
        lines.append(line)
    return lines


def _clock(instant: dt.datetime, zone: dt.tzinfo, *, end_of: dt.date | None = None) -> str:
    local = instant.astimezone(zone)
    if end_of is not None and local.date() > end_of:
        return "24:00"
    return local.strftime("%H:%M")


def _offset(delta: dt.timedelta | None) -> str:
    minutes = int((delta or dt.timedelta()).total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
