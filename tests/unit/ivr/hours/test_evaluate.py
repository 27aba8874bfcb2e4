"""ivr.hours.evaluate: weekly, overnight, holidays, presets, special dates, precedence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ivr.hours import Decision, HoursConfig, calendar_for, is_open, windows

from .helpers import NEW_YORK, PARIS, at, hours, office


@pytest.fixture(scope="module")
def config() -> HoursConfig:
    return office().hours


def check(decision: Decision, open_: bool, rule: str, next_change: str | None) -> None:
    assert (decision.open, decision.rule) == (open_, rule)
    if next_change is None:
        assert decision.next_change is None
    else:
        assert decision.next_change is not None
        assert decision.next_change.isoformat() == next_change


# --- weekly ------------------------------------------------------------------------------------


def test_open_inside_a_weekly_range(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-03-10 09:00")),
        True,
        "global: weekly tue 08:00-12:00 (open)",
        "2026-03-10T12:00:00+01:00",
    )


def test_lunch_break_is_closed(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-03-10 12:30")),
        False,
        "global: weekly tue 08:00-12:00, 13:00-18:00 (closed at this time)",
        "2026-03-10T13:00:00+01:00",
    )


def test_start_is_inclusive_end_is_exclusive(config: HoursConfig) -> None:
    assert is_open(config, at("2026-03-10 08:00")).open
    assert not is_open(config, at("2026-03-10 18:00")).open
    assert is_open(config, at("2026-03-10 17:59:59")).open


def test_closed_day(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-03-15 10:00")),
        False,
        "global: weekly sun (closed)",
        "2026-03-16T08:00:00+01:00",
    )


def test_any_aware_datetime_is_accepted(config: HoursConfig) -> None:
    # 08:30 UTC is 09:30 in Paris (winter).
    instant = dt.datetime(2026, 3, 10, 8, 30, tzinfo=dt.UTC)
    decision = is_open(config, instant)
    assert decision.open
    assert decision.next_change == at("2026-03-10 12:00")
    assert decision.next_change is not None and decision.next_change.tzinfo == PARIS


def test_naive_datetime_is_refused(config: HoursConfig) -> None:
    with pytest.raises(ValueError, match="aware"):
        is_open(config, dt.datetime(2026, 3, 10, 9, 0))


# --- overnight --------------------------------------------------------------------------------


def test_overnight_range_open_both_sides_of_midnight(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-03-06 23:00")),
        True,
        "global: weekly fri 22:00-06:00 (open)",
        "2026-03-07T06:00:00+01:00",
    )
    check(
        is_open(config, at("2026-03-07 05:59")),
        True,
        "global: weekly fri 22:00-06:00 (open, from fri 2026-03-06)",
        "2026-03-07T06:00:00+01:00",
    )
    check(
        is_open(config, at("2026-03-07 06:00")),
        False,
        "global: weekly sat 09:00-12:00 (closed at this time)",
        "2026-03-07T09:00:00+01:00",
    )


def test_overnight_range_belongs_to_the_day_it_starts(tmp_path: Path) -> None:
    # Saturday is a holiday; Friday's overnight range still runs into it, and Saturday's
    # own overnight range (which would start on the holiday) does not happen.
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        weekly: {fri: "22:00-06:00", sat: "22:00-06:00"}
        holidays: [{date: 2026-03-07, name: Works}]
        """,
    )
    assert is_open(config, at("2026-03-07 03:00")).open
    check(
        is_open(config, at("2026-03-07 23:00")),
        False,
        "global: holiday 'Works' 2026-03-07 (closed)",
        "2026-03-13T22:00:00+01:00",
    )


def test_adjacent_ranges_merge_for_next_change(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        weekly: {mon: ["18:00-24:00"], tue: ["00:00-02:00", "02:00-09:00"]}
        """,
    )
    assert is_open(config, at("2026-03-09 20:00")).next_change == at("2026-03-10 09:00")


def test_always_open_has_no_next_change(config: HoursConfig) -> None:
    decision = is_open(config, at("2026-03-10 03:00"), queue="night")
    assert decision.open
    assert decision.next_change is None
    assert decision.rule == "queue night: weekly tue 00:00-24:00 (open)"


def test_never_open_has_no_next_change(tmp_path: Path) -> None:
    config = hours(tmp_path, "timezone: UTC\n")
    decision = is_open(config, at("2026-03-10 03:00", dt.UTC))
    assert not decision.open
    assert decision.next_change is None


# --- holidays, presets, special dates ---------------------------------------------------------


def test_fixed_holiday_closes_the_day(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-12-25 10:00")),
        False,
        "global: holiday 'Christmas Day' 2026-12-25 (closed)",
        "2026-12-26T09:00:00+01:00",
    )


def test_recurring_holiday_every_year(config: HoursConfig) -> None:
    for year in (2026, 2027, 2030):
        decision = is_open(config, at(f"{year}-01-02 10:00"))
        assert not decision.open
        assert decision.rule == "global: holiday 'Inventory' --01-02 (closed)"


def test_recurring_holiday_with_its_own_hours(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-12-31 10:00")),
        True,
        "global: holiday 'New Year's Eve' --12-31 08:00-12:00 (open)",
        "2026-12-31T12:00:00+01:00",
    )
    assert not is_open(config, at("2026-12-31 14:00")).open


def test_special_date_with_its_own_hours(config: HoursConfig) -> None:
    check(
        is_open(config, at("2026-12-24 10:00")),
        True,
        "global: special date 'Christmas Eve' 2026-12-24 08:00-12:00 (open)",
        "2026-12-24T12:00:00+01:00",
    )
    check(
        is_open(config, at("2026-12-24 14:00")),
        False,
        "global: special date 'Christmas Eve' 2026-12-24 08:00-12:00 (closed at this time)",
        "2026-12-26T09:00:00+01:00",
    )


def test_country_preset_closes_public_holidays(config: HoursConfig) -> None:
    check(
        is_open(config, at("2027-01-01 10:00")),
        False,
        "global: public holiday 'New Year's Day' 2027-01-01 (FR) (closed)",
        "2027-01-04T08:00:00+01:00",
    )
    # Easter Monday moves every year; the package knows.
    assert not is_open(config, at("2026-04-06 10:00")).open
    assert not is_open(config, at("2027-03-29 10:00")).open
    assert is_open(config, at("2026-04-07 10:00")).open


def test_special_date_overrides_the_preset(config: HoursConfig) -> None:
    # 14 July is a French public holiday; the special date opens 10:00-14:00.
    check(
        is_open(config, at("2026-07-14 11:00")),
        True,
        "global: special date 'Bastille Day duty' 2026-07-14 10:00-14:00 (open)",
        "2026-07-14T14:00:00+02:00",
    )


def test_fixed_date_beats_recurring(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: UTC
        weekly: {mon: 24h, tue: 24h, wed: 24h, thu: 24h, fri: 24h, sat: 24h, sun: 24h}
        holidays: [{date: --12-24, name: Eve}]
        special_dates: [{date: 2026-12-24, name: Short Eve, hours: "08:00-10:00"}]
        """,
    )
    assert is_open(config, at("2026-12-24 09:00", dt.UTC)).rule == (
        "global: special date 'Short Eve' 2026-12-24 08:00-10:00 (open)"
    )
    assert is_open(config, at("2027-12-24 09:00", dt.UTC)).rule == (
        "global: holiday 'Eve' --12-24 (closed)"
    )


def test_preset_with_subdivision(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Berlin
        weekly: {mon: 24h, tue: 24h, wed: 24h, thu: 24h, fri: 24h, sat: 24h, sun: 24h}
        country: DE
        subdivision: BY
        """,
    )
    # Epiphany (6 January) is a holiday in Bavaria, not in all of Germany.
    decision = is_open(config, at("2026-01-06 10:00", dt.UTC))
    assert not decision.open
    assert decision.rule.endswith("2026-01-06 (DE-BY) (closed)")


# --- precedence -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "language", "channel", "scope"),
    [
        (None, None, "voice", "global"),
        ("billing", None, "voice", "queue billing"),
        ("billing", "de", "chat", "queue billing"),
        ("support", "de", "chat", "language de"),
        (None, "de-AT", "voice", "language de"),
        (None, "en", "chat", "channel chat"),
        ("support", "en", "chat", "channel chat"),
        ("support", None, "voice", "global"),
    ],
)
def test_precedence_queue_language_channel_global(
    config: HoursConfig, queue: str | None, language: str | None, channel: str, scope: str
) -> None:
    assert calendar_for(config, queue=queue, language=language, channel=channel).scope == scope
    decision = is_open(
        config, at("2026-03-10 10:00"), queue=queue, language=language, channel=channel
    )
    assert decision.calendar_scope == scope
    assert decision.rule.startswith(scope + ": ")


def test_override_replaces_the_whole_calendar(config: HoursConfig) -> None:
    # billing has its own weekly and US preset; the Paris holidays do not apply to it.
    assert is_open(config, at("2026-07-14 10:00", NEW_YORK), queue="billing").open
    check(
        is_open(config, at("2026-11-26 10:00", NEW_YORK), queue="billing"),
        False,
        "queue billing: public holiday 'Thanksgiving Day' 2026-11-26 (US) (closed)",
        "2026-11-27T09:00:00-05:00",
    )
    # The language override has no holidays at all (no inherit_holidays).
    assert is_open(config, at("2026-04-06 10:00"), language="de").open


def test_override_without_timezone_uses_the_environment_zone(config: HoursConfig) -> None:
    assert calendar_for(config, language="de").timezone == "Europe/Paris"
    assert calendar_for(config, queue="billing").timezone == "America/New_York"


def test_inherit_holidays_adds_the_environment_holidays(config: HoursConfig) -> None:
    # sales: Mondays 10:00-16:00, its own holiday, plus the environment's (FR preset too).
    check(
        is_open(config, at("2026-04-06 11:00"), queue="sales"),
        False,
        "queue sales: public holiday 'Easter Monday' 2026-04-06 (FR) (closed)",
        "2026-04-13T10:00:00+02:00",
    )
    check(
        is_open(config, at("2026-12-28 11:00"), queue="sales"),
        False,
        "queue sales: holiday 'Sales kickoff' 2026-12-28 (closed)",
        # The inherited New Year's Eve holiday carries hours: sales opens then.
        "2026-12-31T08:00:00+01:00",
    )
    assert is_open(config, at("2026-04-13 11:00"), queue="sales").open


def test_inherited_entries_lose_to_the_override_own(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: UTC
        holidays: [{date: --12-24, name: Eve}]
        queues:
          q:
            weekly: {thu: 24h}
            inherit_holidays: true
            special_dates: [{date: --12-24, name: Queue eve, hours: "08:00-10:00"}]
        """,
    )
    assert is_open(config, at("2026-12-24 09:00", dt.UTC), queue="q").rule == (
        "queue q: special date 'Queue eve' --12-24 08:00-10:00 (open)"
    )


# --- windows ----------------------------------------------------------------------------------


def test_windows_over_days(config: HoursConfig) -> None:
    found = windows(config, dt.date(2026, 3, 6), 2)
    assert [(s.isoformat(), e.isoformat()) for s, e in found] == [
        ("2026-03-06T08:00:00+01:00", "2026-03-06T12:00:00+01:00"),
        ("2026-03-06T13:00:00+01:00", "2026-03-06T18:00:00+01:00"),
        ("2026-03-06T22:00:00+01:00", "2026-03-07T06:00:00+01:00"),
        ("2026-03-07T09:00:00+01:00", "2026-03-07T12:00:00+01:00"),
    ]


def test_windows_clip_at_the_start_instant(config: HoursConfig) -> None:
    found = windows(config, at("2026-03-07 03:00"), 1)
    assert [(s.isoformat(), e.isoformat()) for s, e in found] == [
        ("2026-03-07T03:00:00+01:00", "2026-03-07T06:00:00+01:00"),
        ("2026-03-07T09:00:00+01:00", "2026-03-07T12:00:00+01:00"),
    ]


def test_windows_of_a_24h_queue_merge(config: HoursConfig) -> None:
    found = windows(config, dt.date(2026, 3, 9), 7, queue="night")
    assert [(s.isoformat(), e.isoformat()) for s, e in found] == [
        ("2026-03-09T00:00:00+01:00", "2026-03-16T00:00:00+01:00")
    ]


def test_windows_zero_days_and_negative(config: HoursConfig) -> None:
    assert windows(config, dt.date(2026, 3, 9), 0) == []
    with pytest.raises(ValueError):
        windows(config, dt.date(2026, 3, 9), -1)
