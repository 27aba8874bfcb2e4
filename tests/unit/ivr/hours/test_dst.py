"""DST transitions: Europe/Paris 2026-03-29 / 2026-10-25, America/New_York 2026-03-08 /
2026-11-01. A range opens when the local clock first shows its start and closes when it
first shows its end: a missing time means the jump, a repeated time its first occurrence."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ivr.hours import HoursConfig, is_open, windows
from ivr.hours.evaluate import local_instant

from .helpers import NEW_YORK, PARIS, at, hours, office, utc


@pytest.fixture
def paris(tmp_path: Path) -> HoursConfig:
    return hours(
        tmp_path,
        """
        timezone: Europe/Paris
        weekly:
          sat: "22:00-06:00"
          sun: ["01:00-02:30", "02:30-05:00"]
          mon: ["02:00-03:00"]
        special_dates:
          - {date: 2026-03-30, hours: ["02:00-03:00"]}
          - {date: 2026-10-25, hours: ["00:00-02:30", "02:30-05:00"]}
        """,
    )


def spans(found: list[tuple[dt.datetime, dt.datetime]]) -> list[tuple[str, str]]:
    return [(s.astimezone(dt.UTC).isoformat(), e.astimezone(dt.UTC).isoformat()) for s, e in found]


# --- the primitive ----------------------------------------------------------------------------


def test_local_instant_in_the_spring_gap_is_the_jump() -> None:
    day = dt.date(2026, 3, 29)
    assert local_instant(day, 2 * 60, PARIS) == utc("2026-03-29 01:00")
    assert local_instant(day, 2 * 60 + 30, PARIS) == utc("2026-03-29 01:00")
    assert local_instant(day, 3 * 60, PARIS) == utc("2026-03-29 01:00")
    assert local_instant(day, 60, PARIS) == utc("2026-03-29 00:00")
    assert local_instant(dt.date(2026, 3, 8), 2 * 60 + 30, NEW_YORK) == utc("2026-03-08 07:00")


def test_local_instant_in_the_autumn_fold_is_the_first_occurrence() -> None:
    assert local_instant(dt.date(2026, 10, 25), 2 * 60 + 30, PARIS) == utc("2026-10-25 00:30")
    assert local_instant(dt.date(2026, 11, 1), 90, NEW_YORK) == utc("2026-11-01 05:30")
    # Past midnight arithmetic: 06:00 of the next day.
    assert local_instant(dt.date(2026, 10, 24), 30 * 60, PARIS) == utc("2026-10-25 05:00")


# --- Europe/Paris, spring forward 2026-03-29 02:00 -> 03:00 ----------------------------------


def test_paris_spring_overnight_range_is_one_hour_shorter(paris: HoursConfig) -> None:
    found = windows(paris, dt.date(2026, 3, 28), 2)
    # Sat 22:00 CET (21:00 UTC) to Sun 06:00 CEST (04:00 UTC): 7 hours, merged with the
    # Sunday ranges that start inside it.
    assert spans(found) == [("2026-03-28T21:00:00+00:00", "2026-03-29T04:00:00+00:00")]


def test_paris_spring_ranges_touching_the_missing_hour(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        weekly: {sun: ["01:00-02:30", "04:00-05:00"], mon: ["02:30-05:00"]}
        special_dates: [{date: 2026-03-30, hours: ["02:30-05:00"]}]
        """,
    )
    found = windows(config, dt.date(2026, 3, 29), 1)
    # 01:00-02:30 ends when the clocks jump (02:00 CET -> 03:00 CEST): one real hour.
    assert spans(found) == [
        ("2026-03-29T00:00:00+00:00", "2026-03-29T01:00:00+00:00"),
        ("2026-03-29T02:00:00+00:00", "2026-03-29T03:00:00+00:00"),
    ]
    decision = is_open(config, at("2026-03-29 01:59"))
    assert decision.open
    assert decision.next_change is not None
    assert decision.next_change.isoformat() == "2026-03-29T03:00:00+02:00"


def test_paris_spring_range_inside_the_missing_hour_never_opens(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        special_dates: [{date: 2026-03-29, hours: ["02:00-03:00"]}]
        """,
    )
    assert windows(config, dt.date(2026, 3, 29), 1) == []
    assert not is_open(config, utc("2026-03-29 01:00")).open


def test_paris_spring_next_change_across_the_jump(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        weekly: {sun: ["02:30-05:00"]}
        """,
    )
    decision = is_open(config, at("2026-03-28 23:00"))
    assert not decision.open
    assert decision.next_change is not None
    # 02:30 does not exist that night: the range opens at the jump, 03:00 CEST.
    assert decision.next_change.isoformat() == "2026-03-29T03:00:00+02:00"
    after = is_open(config, decision.next_change)
    assert after.open
    assert after.rule == "global: weekly sun 02:30-05:00 (open)"
    assert after.next_change is not None
    assert after.next_change.isoformat() == "2026-03-29T05:00:00+02:00"


def test_paris_office_next_change_over_the_spring_weekend() -> None:
    config = office().hours
    decision = is_open(config, at("2026-03-28 13:00"))
    assert decision.next_change is not None
    assert decision.next_change.isoformat() == "2026-03-30T08:00:00+02:00"
    assert decision.next_change == utc("2026-03-30 06:00")


# --- Europe/Paris, fall back 2026-10-25 03:00 -> 02:00 ----------------------------------------


def test_paris_autumn_overnight_range_is_one_hour_longer(tmp_path: Path) -> None:
    config = hours(tmp_path, 'timezone: Europe/Paris\nweekly: {sat: "22:00-06:00"}\n')
    found = windows(config, dt.date(2026, 10, 24), 2)
    # Sat 22:00 CEST (20:00 UTC) to Sun 06:00 CET (05:00 UTC): 9 hours.
    assert spans(found) == [("2026-10-24T20:00:00+00:00", "2026-10-25T05:00:00+00:00")]


def test_paris_autumn_ranges_touching_the_repeated_hour(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        weekly: {sun: ["00:00-02:30", "02:30-05:00"]}
        """,
    )
    # 00:00-02:30 closes at the first 02:30 (CEST); 02:30-05:00 opens then: one window,
    # 00:00 CEST (22:00 UTC) to 05:00 CET (04:00 UTC), six real hours.
    found = windows(config, dt.date(2026, 10, 25), 1)
    assert spans(found) == [("2026-10-24T22:00:00+00:00", "2026-10-25T04:00:00+00:00")]


def test_paris_autumn_repeated_hour_end_uses_first_occurrence(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: Europe/Paris
        special_dates: [{date: 2026-10-25, hours: ["01:00-02:30"]}]
        """,
    )
    assert is_open(config, at("2026-10-25 02:15", fold=0)).open  # 00:15 UTC, CEST
    second = is_open(config, at("2026-10-25 02:15", fold=1))  # 01:15 UTC, CET
    assert not second.open
    first = is_open(config, at("2026-10-25 01:30"))
    assert first.next_change is not None
    assert first.next_change.astimezone(dt.UTC) == utc("2026-10-25 00:30")
    assert first.next_change.isoformat() == "2026-10-25T02:30:00+02:00"


def test_paris_autumn_next_change_across_the_fold(tmp_path: Path) -> None:
    config = hours(tmp_path, 'timezone: Europe/Paris\nweekly: {sun: "04:00-05:00"}\n')
    decision = is_open(config, at("2026-10-25 02:30", fold=1))
    assert decision.next_change is not None
    assert decision.next_change.isoformat() == "2026-10-25T04:00:00+01:00"
    # Aware datetimes in one zone subtract as wall times; compare real elapsed time in UTC.
    elapsed = decision.next_change.astimezone(dt.UTC) - at("2026-10-25 02:30", fold=1).astimezone(
        dt.UTC
    )
    assert elapsed == dt.timedelta(hours=1, minutes=30)


# --- America/New_York: 2026-03-08 and 2026-11-01 ----------------------------------------------


def test_new_york_queue_while_environment_is_paris() -> None:
    config = office().hours
    # billing: Sundays 01:00-04:00 New York time. 06:30 UTC on 2026-03-08 is 01:30 EST
    # (07:30 in Paris, where the environment is closed on Sundays).
    decision = is_open(config, utc("2026-03-08 06:30"), queue="billing")
    assert decision.open
    assert decision.rule == "queue billing: weekly sun 01:00-04:00 (open)"
    assert decision.next_change is not None
    assert decision.next_change.isoformat() == "2026-03-08T04:00:00-04:00"
    assert decision.next_change == utc("2026-03-08 08:00")
    assert not is_open(config, utc("2026-03-08 06:30")).open


def test_new_york_spring_range_loses_the_missing_hour() -> None:
    config = office().hours
    found = windows(config, dt.date(2026, 3, 8), 1, queue="billing")
    # 01:00 EST (06:00 UTC) to 04:00 EDT (08:00 UTC): two real hours.
    assert spans(found) == [("2026-03-08T06:00:00+00:00", "2026-03-08T08:00:00+00:00")]
    assert is_open(config, at("2026-03-08 03:00", NEW_YORK), queue="billing").open


def test_new_york_autumn_range_gains_the_repeated_hour() -> None:
    config = office().hours
    found = windows(config, dt.date(2026, 11, 1), 1, queue="billing")
    # 01:00 EDT (05:00 UTC) to 04:00 EST (09:00 UTC): four real hours.
    assert spans(found) == [("2026-11-01T05:00:00+00:00", "2026-11-01T09:00:00+00:00")]
    assert is_open(config, at("2026-11-01 01:30", NEW_YORK, fold=1), queue="billing").open


def test_new_york_next_change_from_paris_friday_evening() -> None:
    config = office().hours
    # Friday 2026-03-06 18:00 in Paris is 12:00 in New York: billing open until 17:00 EST.
    decision = is_open(config, at("2026-03-06 18:00"), queue="billing")
    assert decision.open
    assert decision.next_change is not None
    assert decision.next_change.isoformat() == "2026-03-06T17:00:00-05:00"
    # After that, the next opening is Sunday 01:00 EST (the spring-forward day).
    closed = is_open(config, decision.next_change, queue="billing")
    assert closed.next_change is not None
    assert closed.next_change.isoformat() == "2026-03-08T01:00:00-05:00"


def test_new_york_overnight_over_the_transition(tmp_path: Path) -> None:
    config = hours(tmp_path, 'timezone: America/New_York\nweekly: {sat: "23:00-07:00"}\n')
    spring = windows(config, dt.date(2026, 3, 7), 2)
    autumn = windows(config, dt.date(2026, 10, 31), 2)
    assert spans(spring) == [("2026-03-08T04:00:00+00:00", "2026-03-08T11:00:00+00:00")]
    assert spans(autumn) == [("2026-11-01T03:00:00+00:00", "2026-11-01T12:00:00+00:00")]
    assert spring[0][1].isoformat() == "2026-03-08T07:00:00-04:00"
    assert autumn[0][1].isoformat() == "2026-11-01T07:00:00-05:00"
