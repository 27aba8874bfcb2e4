"""The hours-related sections as one model, and a loader for a file holding only them.

The engine embeds :class:`HoursConfig` and :class:`AfterHoursConfig` in its Settings (as
``hours`` and ``after_hours``); :func:`load_hours_settings` validates a file with just these
two sections, for tests and for tools that only need the calendar.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ivr.hours.calendar import HoursConfig
from ivr.hours.deflection import AfterHoursConfig
from ivr.yamlloc import LocatedDocument, load_yaml, validate

__all__ = ["HoursSettings", "load_hours_document", "load_hours_settings"]


class HoursSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    hours: HoursConfig
    after_hours: AfterHoursConfig = Field(default_factory=AfterHoursConfig)


def load_hours_document(path: str | os.PathLike[str]) -> tuple[LocatedDocument, HoursSettings]:
    """Load and validate; raise ConfigError listing every located problem."""
    document = load_yaml(path)
    base_dir = Path(os.fspath(path)).resolve().parent
    return document, validate(document, HoursSettings, context={"base_dir": base_dir})


def load_hours_settings(path: str | os.PathLike[str]) -> HoursSettings:
    return load_hours_document(path)[1]
