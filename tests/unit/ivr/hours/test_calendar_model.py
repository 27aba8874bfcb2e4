"""ivr.hours.calendar: parsing of day hours, dates, zones and presets; located problems."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ivr.hours import HoursConfig, TimeRange
from ivr.hours.calendar import MINUTES_PER_DAY

from .helpers import hours, office, problems


def test_office_golden_loads() -> None:
    settings = office()
    config = settings.hours
    assert config.timezone == "Europe/Paris"
    assert config.weekly.mon == (TimeRange(480, 720), TimeRange(780, 1080))
    assert config.weekly.fri[-1] == TimeRange(22 * 60, 30 * 60)
    assert config.weekly.fri[-1].overnight
    assert config.weekly.sun == ()
    assert set(config.queues) == {"billing", "night", "sales"}
    assert config.queues["billing"].timezone == "America/New_York"
    assert config.queues["night"].timezone is None


def test_day_hours_forms(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: UTC
        weekly:
          mon: closed
          tue: 24h
          wed: "09:00-17:00"
          thu: ["13:00-18:00", "08:00-12:00"]
          fri: ["22:00-06:00"]
          sat: ["00:00-24:00"]
        """,
    )
    assert config.weekly.mon == ()
    assert config.weekly.tue == (TimeRange(0, MINUTES_PER_DAY),)
    assert config.weekly.wed == (TimeRange(540, 1020),)
    # Sorted by start.
    assert config.weekly.thu == (TimeRange(480, 720), TimeRange(780, 1080))
    assert config.weekly.fri == (TimeRange(1320, 1800),)
    assert str(config.weekly.fri[0]) == "22:00-06:00"
    assert config.weekly.sat == (TimeRange(0, MINUTES_PER_DAY),)
    assert config.weekly.sun == ()  # not written: closed


def test_date_forms(tmp_path: Path) -> None:
    config = hours(
        tmp_path,
        """
        timezone: UTC
        holidays:
          - {date: 2026-12-25, name: Christmas Day}
          - {date: "2026-05-01"}
          - {date: --07-14}
          - {month: 11, day: 11, hours: ["09:00-12:00"]}
          - {date: --02-29}
        """,
    )
    keys = [rule.key for rule in config.holidays]
    assert keys == [dt.date(2026, 12, 25), dt.date(2026, 5, 1), (7, 14), (11, 11), (2, 29)]
    assert [rule.recurring for rule in config.holidays] == [False, False, True, True, True]
    assert config.holidays[0].label() == "'Christmas Day' 2026-12-25"
    assert config.holidays[2].label() == "--07-14"


def test_bad_time(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          weekly:
            mon: ["08:00-12:00", "13:00-25:00"]
            tue: ["8h-12h"]
        """,
    ) == [
        "4:26: hours.weekly.mon[1]: '25:00' is not a valid time (HH:MM, 00:00 to 24:00)",
        "5:11: hours.weekly.tue[0]: '8h' is not a valid time (HH:MM, 00:00 to 23:59)",
    ]


def test_unquoted_sexagesimal_time_is_explained(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          weekly:
            mon: [9:00]
        """,
    ) == [
        "4:11: hours.weekly.mon[0]: must be a time range like '08:00-12:00' "
        "(got the number 540; quote times, e.g. '08:00-12:00')"
    ]


def test_end_equals_start(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          weekly:
            mon: "09:00-09:00"
        """,
    ) == ["4:10: hours.weekly.mon: '09:00-09:00': end equals start (write '24h' for the whole day)"]


def test_overlapping_ranges(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          weekly:
            mon: ["08:00-12:00", "11:00-13:00", "20:00-02:00", "23:00-23:30"]
        """,
    ) == [
        "4:26: hours.weekly.mon[1]: 11:00-13:00 overlaps 08:00-12:00 on the same day",
        "4:56: hours.weekly.mon[3]: 23:00-23:30 overlaps 20:00-02:00 on the same day",
    ]


def test_touching_ranges_are_not_overlapping(tmp_path: Path) -> None:
    config = hours(tmp_path, 'timezone: UTC\nweekly: {mon: ["08:00-12:00", "12:00-13:00"]}\n')
    assert len(config.weekly.mon) == 2


def test_unknown_zone_suggests(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: Europe/Pariss
          queues:
            billing:
              timezone: Mars/Olympus
              weekly: {mon: 24h}
        """,
    ) == [
        "2:13: hours.timezone: unknown time zone 'Europe/Pariss'; did you mean 'Europe/Paris'?",
        "5:17: hours.queues.billing.timezone: unknown time zone 'Mars/Olympus' "
        "(use an IANA name such as 'Europe/Paris')",
    ]


def test_bad_dates(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          holidays:
            - date: "2026-02-30"
            - date: --13-01
            - {month: 2, day: 30}
            - {name: nothing}
            - {date: 2026-01-01, month: 1, day: 1}
        """,
    ) == [
        "4:13: hours.holidays[0].date: '2026-02-30' is not a valid date "
        "(YYYY-MM-DD, or --MM-DD every year)",
        "5:13: hours.holidays[1].date: '--13-01' is not a valid month and day",
        "6:23: hours.holidays[2].day: month 2 day 30 is not a valid date",
        "7:7: hours.holidays[3]: needs 'date' (2026-12-25 or --12-25) or both 'month' and 'day'",
        "8:7: hours.holidays[4]: give either 'date' or 'month' and 'day', not both",
    ]


def test_unquoted_impossible_date_is_a_located_problem(tmp_path: Path) -> None:
    assert problems(tmp_path, "hours:\n  timezone: UTC\n  holidays:\n    - date: 2026-02-30\n")


def test_duplicate_dates(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          holidays:
            - date: --12-25
            - {month: 12, day: 25, name: Noel}
          special_dates:
            - date: 2026-12-24
              hours: ["08:00-12:00"]
            - date: 2026-12-31
        """,
    ) == [
        "5:7: hours.holidays[1]: 'Noel' --12-25 is already listed (holidays[0])",
        "9:7: hours.special_dates[1]: a special date needs 'hours' (use holidays for closed days)",
    ]


def test_same_date_in_holidays_and_special_dates(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          holidays: [{date: 2026-12-24}]
          special_dates: [{date: 2026-12-24, hours: 24h}]
        """,
    ) == [
        "4:19: hours.special_dates[0]: 2026-12-24 is also holidays[0]; "
        "keep one (a holiday may carry its own 'hours')"
    ]


def test_country_problems_each_located(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          country: XX
          queues:
            us:
              weekly: {mon: 24h}
              country: US
              subdivision: ZZ
            fr:
              weekly: {mon: 24h}
              country: fr
            sub:
              weekly: {mon: 24h}
              subdivision: CA
        """,
    )
    assert found[0] == (
        "3:12: hours.country: unknown country code 'XX' for holiday presets "
        "(ISO 3166-1 alpha-2, e.g. 'FR', 'US')"
    )
    assert found[1].startswith("8:20: hours.queues.us.subdivision: unknown subdivision 'ZZ' of US")
    assert found[2:] == [
        "11:16: hours.queues.fr.country: unknown country code 'fr' for holiday presets; "
        "did you mean 'FR'?",
        "14:20: hours.queues.sub.subdivision: needs 'country'",
    ]


def test_override_needs_weekly_and_known_keys(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        """
        hours:
          timezone: UTC
          queues:
            billing:
              timezone: UTC
            "bad name":
              weekly: {mon: 24h}
          channels:
            voce:
              weekly: {mon: 24h}
          languages:
            French:
              weekly: {mon: 24h}
              weekley: {}
        """,
    ) == [
        # Missing fields are located at their parent's key; key problems at the value.
        "4:5: hours.queues.billing.weekly: field required",
        "7:7: hours.queues.bad name: queue 'bad name': queue names use letters, digits, "
        "'_', '.', '-'",
        "10:7: hours.channels.voce: channel 'voce': unknown channel (known: voice, chat, sms, "
        "email); did you mean 'voice'?",
        "13:7: hours.languages.French: language 'French': is not a language tag like "
        "'fr' or 'en-US'",
        "14:7: hours.languages.French.weekley: unknown field 'weekley' (extra fields are not "
        "permitted)",
    ]


def test_models_are_frozen_and_strict() -> None:
    config = office().hours
    with pytest.raises(ValueError):
        config.timezone = "UTC"  # type: ignore[misc]
    with pytest.raises(ValueError):
        HoursConfig.model_validate({"timezone": "UTC", "mystery": 1})
    # Built from Python too, not only YAML.
    built = HoursConfig.model_validate({"timezone": "UTC", "weekly": {"mon": "24h"}})
    assert built.weekly.mon == (TimeRange(0, MINUTES_PER_DAY),)
