"""Shared helpers for the hours tests: load YAML text, build instants."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.hours import HoursConfig, HoursSettings, load_hours_settings
from ivr.yamlloc import ConfigError

ROOT = Path(__file__).resolve().parents[4]
GOLDEN = ROOT / "tests" / "golden" / "hours"
OFFICE = GOLDEN / "good" / "office.yaml"

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC = dt.UTC


def at(text: str, zone: dt.tzinfo = PARIS, *, fold: int = 0) -> dt.datetime:
    """A local wall time in ``zone``: ``at("2026-12-25 10:00")``."""
    return dt.datetime.fromisoformat(text).replace(tzinfo=zone, fold=fold)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def load_text(tmp_path: Path, text: str) -> HoursSettings:
    path = tmp_path / "hours.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_hours_settings(path)


def hours(tmp_path: Path, text: str) -> HoursConfig:
    """``text`` is the body of the ``hours:`` section (dedented)."""
    body = textwrap.indent(textwrap.dedent(text).lstrip("\n"), "  ")
    return load_text(tmp_path, "hours:\n" + body).hours


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_text(tmp_path, text)
    return [f"{p.line}:{p.column}: {p.path}: {p.message}" for p in exc.value.problems]


def office() -> HoursSettings:
    return load_hours_settings(OFFICE)
