"""ivr.hours.command: `switchhook hours` output, compared with golden files."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from ivr.hours import run_hours_command

from .helpers import GOLDEN, office

CLI = GOLDEN / "cli"
NOW = dt.datetime(2026, 3, 26, 12, 0, tzinfo=dt.UTC)

CASES: dict[str, dict[str, object]] = {
    "week-from-now": {},
    "paris-spring-forward": {"from_date": "2026-03-27", "days": 4},
    "paris-fall-back": {"from_date": "2026-10-23", "days": 3},
    "christmas": {"from_date": "2026-12-23", "days": 10},
    "billing-new-york-spring": {"queue": "billing", "from_date": "2026-03-06", "days": 4},
    "billing-new-york-autumn": {"queue": "billing", "from_date": "2026-10-30", "days": 3},
    "language-de-channel-chat": {"language": "de", "channel": "chat", "days": 2},
    "channel-chat": {"channel": "chat", "from_date": "2026-03-30", "days": 1},
    "at-christmas": {"at": "2026-12-25T10:00"},
    "at-overnight": {"at": "2026-03-07T05:30:00+01:00"},
    "at-billing-from-utc": {"queue": "billing", "at": "2026-03-08T06:30:00Z"},
    "at-special-date": {"at": "2026-12-24T11:00"},
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_cli_output_matches_golden(name: str) -> None:
    code, lines = run_hours_command(office().hours, now=NOW, **CASES[name])  # type: ignore[arg-type]
    assert code == 0
    golden = CLI / f"{name}.txt"
    assert "\n".join(lines) + "\n" == golden.read_text(encoding="utf-8")


def test_every_golden_has_a_case() -> None:
    assert {p.stem for p in CLI.glob("*.txt")} == set(CASES)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"from_date": "2026-13-01"}, "error: --from '2026-13-01' is not a date like 2026-12-24"),
        ({"days": 0}, "error: --days must be between 1 and 366 (got 0)"),
        (
            {"at": "noon"},
            "error: --at 'noon' is not a date and time like 2026-12-25T10:00 or "
            "2026-12-25T10:00:00+01:00",
        ),
        ({"queue": "nope", "known_queues": {"billing"}}, "error: unknown queue 'nope'"),
    ],
)
def test_usage_errors(options: dict[str, object], message: str) -> None:
    assert run_hours_command(office().hours, now=NOW, **options) == (2, [message])  # type: ignore[arg-type]


def regenerate() -> None:  # pragma: no cover - run by hand after an intended change
    for name, options in CASES.items():
        _, lines = run_hours_command(office().hours, now=NOW, **options)  # type: ignore[arg-type]
        Path(CLI / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
