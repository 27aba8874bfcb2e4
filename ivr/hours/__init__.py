"""Business hours, after-hours deflection settings and transfer visibility (pure cores).

Nothing here reads the clock except :class:`SystemClock`; every evaluation takes ``now``.
"""

from ivr.hours.calendar import (
    CHANNELS,
    BusinessHours,
    CalendarOverride,
    DateRule,
    HoursConfig,
    TimeRange,
    Weekly,
)
from ivr.hours.clock import Clock, FixedClock, OffsetClock, SystemClock, parse_clock
from ivr.hours.command import run_hours_command
from ivr.hours.deflection import (
    AfterHoursConfig,
    AfterHoursQueue,
    DeflectionChoice,
    DeflectionOption,
    MessageDeflection,
    NumberDeflection,
    QueueDeflection,
    SipDeflection,
    VoicemailDeflection,
    check_references,
    deflection_enabled,
    resolve_deflection,
)
from ivr.hours.evaluate import Calendar, Decision, Window, calendar_for, evaluate, is_open, windows
from ivr.hours.settings import HoursSettings, load_hours_document, load_hours_settings
from ivr.hours.transfer import QueueState, TransferOption, TransferReason, transferable_queues

__all__ = [
    "CHANNELS",
    "AfterHoursConfig",
    "AfterHoursQueue",
    "BusinessHours",
    "Calendar",
    "CalendarOverride",
    "Clock",
    "DateRule",
    "Decision",
    "DeflectionChoice",
    "DeflectionOption",
    "FixedClock",
    "HoursConfig",
    "HoursSettings",
    "MessageDeflection",
    "NumberDeflection",
    "OffsetClock",
    "QueueDeflection",
    "QueueState",
    "SipDeflection",
    "SystemClock",
    "TimeRange",
    "TransferOption",
    "TransferReason",
    "VoicemailDeflection",
    "Weekly",
    "Window",
    "calendar_for",
    "check_references",
    "deflection_enabled",
    "evaluate",
    "is_open",
    "load_hours_document",
    "load_hours_settings",
    "parse_clock",
    "resolve_deflection",
    "run_hours_command",
    "transferable_queues",
    "windows",
]
