"""Business-hours calendars: the YAML model and the rule that decides one local date's hours.

A calendar is an IANA time zone, a weekly schedule, holidays, special dates and an optional
country/subdivision preset from the ``holidays`` package. Everything here is validated at load
with located problems (``ivr.yamlloc``); evaluation against an instant lives in
``ivr.hours.evaluate``. Nothing here reads a clock.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
import zoneinfo
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Self

import holidays as holidays_package
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from ivr.yamlloc import DocPath, located_error, merge_errors

__all__ = [
    "CHANNELS",
    "DAY_NAMES",
    "MINUTES_PER_DAY",
    "BusinessHours",
    "CalendarOverride",
    "DateRule",
    "DayHours",
    "HoursConfig",
    "TimeRange",
    "Weekly",
]

MINUTES_PER_DAY = 24 * 60
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CHANNELS = ("voice", "chat", "sms", "email")
"""Channels an override may name. Only ``voice`` is used by the engine today; the others are
accepted so a chat calendar can be written before the chat channel exists."""

_NAME = r"^[A-Za-z0-9_.-]+$"
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_RECURRING = re.compile(r"^--(\d{2})-(\d{2})$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------------------------
# Time ranges and day hours


@dataclass(frozen=True, slots=True)
class TimeRange:
    """Local wall-clock range of one day, in minutes from that day's midnight.

    ``end`` is above :data:`MINUTES_PER_DAY` for a range that crosses midnight: ``22:00-06:00``
    is ``(1320, 1800)`` and belongs to the day it starts.
    """

    start: int
    end: int

    @property
    def overnight(self) -> bool:
        return self.end > MINUTES_PER_DAY

    def __str__(self) -> str:
        end = self.end - MINUTES_PER_DAY if self.overnight else self.end
        return f"{_hhmm(self.start)}-{_hhmm(end)}"


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _parse_time(text: str, *, allow_24: bool) -> int | None:
    match = _TIME.match(text.strip())
    if not match:
        return None
    hours, minutes = int(match[1]), int(match[2])
    if minutes > 59:
        return None
    if hours == 24 and minutes == 0 and allow_24:
        return MINUTES_PER_DAY
    if hours > 23:
        return None
    return hours * 60 + minutes


def _parse_range(value: Any) -> TimeRange | str:
    """A TimeRange, or the message saying what is wrong with ``value``."""
    if not isinstance(value, str):
        return f"must be a time range like '08:00-12:00' (got {_describe(value)})"
    start_text, sep, end_text = value.partition("-")
    if not sep:
        return f"{value!r} is not a time range; write 'HH:MM-HH:MM', e.g. '08:00-12:00'"
    start = _parse_time(start_text, allow_24=False)
    if start is None:
        return f"{start_text.strip()!r} is not a valid time (HH:MM, 00:00 to 23:59)"
    end = _parse_time(end_text, allow_24=True)
    if end is None:
        return f"{end_text.strip()!r} is not a valid time (HH:MM, 00:00 to 24:00)"
    if end == start:
        return f"{value!r}: end equals start (write '24h' for the whole day)"
    if end < start:
        # Crosses midnight: belongs to the day it starts, ends on the next day.
        end += MINUTES_PER_DAY
    return TimeRange(start, end)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 08:00 as the sexagesimal number 480.
        return f"the number {value}; quote times, e.g. '08:00-12:00'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _parse_day_hours(value: Any) -> tuple[TimeRange, ...]:
    """``closed``, ``24h`` or a list of ranges (a single range string is accepted too)."""
    if isinstance(value, tuple) and all(isinstance(item, TimeRange) for item in value):
        return value
    if value is None or value == "closed":
        return ()
    if value == "24h":
        return (TimeRange(0, MINUTES_PER_DAY),)
    items: list[Any]
    single = False
    if isinstance(value, str):
        items, single = [value], True
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise located_error(
            ((), f"must be 'closed', '24h' or a list of ranges (got {_describe(value)})")
        )
    problems: list[tuple[DocPath, str]] = []
    ranges: list[tuple[int, TimeRange]] = []
    for index, item in enumerate(items):
        where: DocPath = () if single else (index,)
        parsed = _parse_range(item)
        if isinstance(parsed, str):
            problems.append((where, parsed))
        else:
            ranges.append((index, parsed))
    for position, (index, current) in enumerate(ranges):
        for _, earlier in ranges[:position]:
            if current.start < earlier.end and earlier.start < current.end:
                where = () if single else (index,)
                problems.append((where, f"{current} overlaps {earlier} on the same day"))
                break
    if problems:
        raise located_error(*problems)
    return tuple(sorted((r for _, r in ranges), key=lambda r: r.start))


DayHours = Annotated[tuple[TimeRange, ...], BeforeValidator(_parse_day_hours)]
"""One day's hours: ``closed``, ``24h`` or ``["08:00-12:00", "13:00-18:00"]``."""


def format_day_hours(ranges: tuple[TimeRange, ...]) -> str:
    if not ranges:
        return "closed"
    if ranges == (TimeRange(0, MINUTES_PER_DAY),):
        return "24h"
    return ", ".join(str(r) for r in ranges)


class Weekly(_Model):
    """The regular week. A day that is not written is closed."""

    mon: DayHours = ()
    tue: DayHours = ()
    wed: DayHours = ()
    thu: DayHours = ()
    fri: DayHours = ()
    sat: DayHours = ()
    sun: DayHours = ()

    def day(self, weekday: int) -> tuple[TimeRange, ...]:
        """Hours of ``weekday`` (0 = Monday, like :meth:`datetime.date.weekday`)."""
        hours: tuple[TimeRange, ...] = getattr(self, DAY_NAMES[weekday])
        return hours


# --------------------------------------------------------------------------------------------
# Dates: fixed (2026-12-25) or yearly recurring (--12-25 or {month: 12, day: 25})


class DateRule(_Model):
    """A holiday or special date. ``hours`` absent on a holiday means closed all day."""

    date: dt.date | str | None = None
    month: int | None = None
    day: int | None = None
    name: Annotated[str, Field(min_length=1)] | None = None
    hours: DayHours | None = None

    @field_validator("date", mode="before")
    @classmethod
    def _parse_date(cls, value: Any) -> Any:
        if isinstance(value, dt.datetime):
            raise ValueError(f"must be a date, not a date and time (got {value.isoformat()})")
        if isinstance(value, dt.date) or value is None:
            return value
        if not isinstance(value, str):
            raise ValueError(f"must be a date like 2026-12-25 or --12-25 (got {_describe(value)})")
        match = _RECURRING.match(value.strip())
        if match:
            month, day = int(match[1]), int(match[2])
            if not _valid_month_day(month, day):
                raise ValueError(f"{value!r} is not a valid month and day")
            return value.strip()
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a valid date (YYYY-MM-DD, or --MM-DD every year)"
            ) from None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.date is not None:
            if self.month is not None or self.day is not None:
                raise located_error(((), "give either 'date' or 'month' and 'day', not both"))
            return self
        if self.month is None or self.day is None:
            raise located_error(
                ((), "needs 'date' (2026-12-25 or --12-25) or both 'month' and 'day'")
            )
        if not _valid_month_day(self.month, self.day):
            raise located_error(
                (("day",), f"month {self.month} day {self.day} is not a valid date")
            )
        return self

    @property
    def key(self) -> dt.date | tuple[int, int]:
        """A fixed date, or ``(month, day)`` for a yearly one."""
        if isinstance(self.date, dt.date):
            return self.date
        if isinstance(self.date, str):
            match = _RECURRING.match(self.date)
            assert match is not None
            return (int(match[1]), int(match[2]))
        assert self.month is not None and self.day is not None
        return (self.month, self.day)

    @property
    def recurring(self) -> bool:
        return not isinstance(self.key, dt.date)

    def label(self) -> str:
        key = self.key
        when = key.isoformat() if isinstance(key, dt.date) else f"--{key[0]:02d}-{key[1]:02d}"
        return f"'{self.name}' {when}" if self.name else when

    def matches(self, day: dt.date) -> bool:
        key = self.key
        if isinstance(key, dt.date):
            return key == day
        return (day.month, day.day) == key


def _valid_month_day(month: int, day: int) -> bool:
    if not 1 <= month <= 12:
        return False
    try:
        dt.date(2024, month, day)  # a leap year, so --02-29 is accepted
    except ValueError:
        return False
    return True


def _unique_dates(value: Any, handler: ValidatorFunctionWrapHandler, what: str) -> Any:
    result = handler(value)
    first: dict[Any, int] = {}
    duplicates: list[tuple[DocPath, str]] = []
    for index, rule in enumerate(result):
        if rule.key in first:
            duplicates.append(
                (
                    (index,),
                    f"{rule.label()} is already listed ({what}[{first[rule.key]}])",
                )
            )
        else:
            first[rule.key] = index
    if duplicates:
        raise located_error(*duplicates)
    return result


# --------------------------------------------------------------------------------------------
# Calendars


def _zone_name(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        message = f"unknown time zone {value!r}"
        close = difflib.get_close_matches(value, sorted(_zones()), n=1, cutoff=0.9)
        if close:
            message += f"; did you mean {close[0]!r}?"
        else:
            message += " (use an IANA name such as 'Europe/Paris')"
        raise ValueError(message) from None
    return value


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


ZoneName = Annotated[str, BeforeValidator(_zone_name)]


@lru_cache(maxsize=256)
def preset_holidays(country: str, subdivision: str | None, year: int) -> dict[dt.date, str]:
    """The ``holidays`` package's public holidays for one year (cached; pure)."""
    table = holidays_package.country_holidays(country, subdiv=subdivision, years=year)
    return {day: str(name) for day, name in sorted(table.items()) if day.year == year}


class _CalendarFields(_Model):
    weekly: Weekly = Field(default_factory=Weekly)
    holidays: tuple[DateRule, ...] = ()
    special_dates: tuple[DateRule, ...] = ()
    country: str | None = None
    subdivision: str | None = None

    @field_validator("holidays", mode="wrap")
    @classmethod
    def _unique_holidays(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _unique_dates(value, handler, "holidays")

    @field_validator("special_dates", mode="wrap")
    @classmethod
    def _unique_specials(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        result = _unique_dates(value, handler, "special_dates")
        missing = [
            ((index,), "a special date needs 'hours' (use holidays for closed days)")
            for index, rule in enumerate(result)
            if rule.hours is None
        ]
        if missing:
            raise located_error(*missing)
        return result

    @field_validator("country", mode="after")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None:
            message = _country_problem(value)
            if message:
                raise ValueError(message)
        return value

    @field_validator("subdivision", mode="after")
    @classmethod
    def _known_subdivision(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        country = info.data.get("country")
        if "country" not in info.data:
            return value  # the country itself is wrong; already reported
        if country is None:
            raise ValueError("needs 'country'")
        message = _subdivision_problem(country, value)
        if message:
            raise ValueError(message)
        return value

    @model_validator(mode="after")
    def _check(self) -> Self:
        holiday_keys = {rule.key: i for i, rule in enumerate(self.holidays)}
        problems: list[tuple[DocPath, str]] = []
        for index, rule in enumerate(self.special_dates):
            if rule.key in holiday_keys:
                problems.append(
                    (
                        ("special_dates", index),
                        f"{rule.label()} is also holidays[{holiday_keys[rule.key]}]; "
                        "keep one (a holiday may carry its own 'hours')",
                    )
                )
        if problems:
            raise located_error(*problems)
        return self


def _country_problem(country: str) -> str | None:
    supported = holidays_package.list_supported_countries()
    if country in supported:
        return None
    message = f"unknown country code {country!r} for holiday presets"
    if country.upper() in supported:
        return message + f"; did you mean {country.upper()!r}?"
    return message + " (ISO 3166-1 alpha-2, e.g. 'FR', 'US')"


def _subdivision_problem(country: str, subdivision: str) -> str | None:
    known = holidays_package.list_supported_countries()[country]
    if subdivision in known:
        return None
    if not known:
        return f"{country} has no subdivisions in the holiday presets"
    listed = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
    return f"unknown subdivision {subdivision!r} of {country} (known: {listed})"


class BusinessHours(_CalendarFields):
    """The environment's calendar: ``timezone`` is required."""

    timezone: ZoneName

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)


class CalendarOverride(_CalendarFields):
    """A queue's, language's or channel's calendar. It replaces the environment's calendar
    as a whole: ``weekly`` is required, holidays/special dates/preset are the override's own
    unless ``inherit_holidays: true`` adds the environment's. ``timezone`` defaults to the
    environment's."""

    timezone: ZoneName | None = None
    weekly: Weekly
    inherit_holidays: bool = False


def _check_keys(value: Any, handler: ValidatorFunctionWrapHandler, check: Any, what: str) -> Any:
    problems: list[tuple[DocPath, str]] = []
    if isinstance(value, dict):
        for key in value:
            message = check(key)
            if message:
                problems.append(((key,), f"{what} {key!r}: {message}"))
    try:
        result = handler(value)
    except ValidationError as exc:
        if problems:
            raise merge_errors(exc, located_error(*problems)) from None
        raise
    if problems:
        raise located_error(*problems)
    return result


def _queue_key(key: Any) -> str | None:
    if not isinstance(key, str) or not re.match(_NAME, key):
        return "queue names use letters, digits, '_', '.', '-'"
    return None


def _channel_key(key: Any) -> str | None:
    if key not in CHANNELS:
        close = difflib.get_close_matches(str(key), CHANNELS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown channel (known: {', '.join(CHANNELS)}){hint}"
    return None


def _language_key(key: Any) -> str | None:
    if not isinstance(key, str) or not _LANGUAGE.match(key):
        return "is not a language tag like 'fr' or 'en-US'"
    return None


class HoursConfig(BusinessHours):
    """The ``hours:`` section: the environment's calendar plus overrides.

    Precedence when evaluating: queue > language > channel > global (see docs/hours.md).
    """

    queues: dict[str, CalendarOverride] = Field(default_factory=dict)
    languages: dict[str, CalendarOverride] = Field(default_factory=dict)
    channels: dict[str, CalendarOverride] = Field(default_factory=dict)

    @field_validator("queues", mode="wrap")
    @classmethod
    def _queue_names(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _check_keys(value, handler, _queue_key, "queue")

    @field_validator("languages", mode="wrap")
    @classmethod
    def _language_names(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _check_keys(value, handler, _language_key, "language")

    @field_validator("channels", mode="wrap")
    @classmethod
    def _channel_names(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        return _check_keys(value, handler, _channel_key, "channel")

    def language_override(self, language: str) -> tuple[str, CalendarOverride] | None:
        """The override for ``language``: exact tag first, then its primary subtag
        (``fr-CA`` falls back to ``fr``)."""
        if language in self.languages:
            return language, self.languages[language]
        primary = language.split("-", 1)[0]
        if primary in self.languages:
            return primary, self.languages[primary]
        return None
