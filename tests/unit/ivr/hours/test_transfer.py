"""ivr.hours.transfer: the seed rules for transfer visibility, rule by rule."""

from __future__ import annotations

import datetime as dt

import pytest

from ivr.hours import HoursConfig, QueueState, TransferReason, transferable_queues

from .helpers import at, office

# Tuesday 2026-03-10: 10:00 Paris is open for the environment; 03:00 is closed everywhere
# except the 24/7 "night" queue. billing runs on New York time (04:00 there at 10:00 Paris).
OPEN_TIME = at("2026-03-10 10:00")
CLOSED_TIME = at("2026-03-10 03:00")


@pytest.fixture(scope="module")
def config() -> HoursConfig:
    return office().hours


def queue(
    name: str = "support",
    *,
    deflection: bool = False,
    agents: int = 0,
    virtual_agent: str | None = None,
) -> QueueState:
    return QueueState(
        name=name,
        deflection_enabled=deflection,
        agents_logged_in=agents,
        virtual_agent=virtual_agent,  # type: ignore[arg-type]
    )


def offered(
    config: HoursConfig, states: list[QueueState], now: dt.datetime, allow: bool
) -> list[tuple[str, TransferReason]]:
    return [
        (o.queue, o.reason)
        for o in transferable_queues(
            states, now=now, config=config, allow_transfers_outside_hours=allow
        )
    ]


# --- rule 1: open queues always ---------------------------------------------------------------


@pytest.mark.parametrize("allow", [True, False])
def test_open_queue_is_always_listed(config: HoursConfig, allow: bool) -> None:
    assert offered(config, [queue()], OPEN_TIME, allow) == [("support", TransferReason.OPEN)]


def test_open_queue_is_listed_even_with_a_queue_hours_virtual_agent(config: HoursConfig) -> None:
    states = [queue(virtual_agent="queue_hours")]
    assert offered(config, states, OPEN_TIME, False) == [("support", TransferReason.OPEN)]


def test_each_queue_uses_its_own_calendar(config: HoursConfig) -> None:
    # At 10:00 Paris, billing (New York, 04:00) is closed and night (24/7) is open.
    states = [queue("billing"), queue("night"), queue("support")]
    assert offered(config, states, OPEN_TIME, False) == [
        ("night", TransferReason.OPEN),
        ("support", TransferReason.OPEN),
    ]


# --- setting off: only open queues ------------------------------------------------------------


def test_setting_off_hides_every_closed_queue(config: HoursConfig) -> None:
    states = [
        queue("a", deflection=True),
        queue("b", agents=3),
        queue("c", virtual_agent="24/7"),
        queue("d", deflection=True, agents=2, virtual_agent="24/7"),
    ]
    assert offered(config, states, CLOSED_TIME, False) == []


# --- setting on: closed queues ----------------------------------------------------------------


def test_rule_closed_with_deflection_enabled(config: HoursConfig) -> None:
    assert offered(config, [queue(deflection=True)], CLOSED_TIME, True) == [
        ("support", TransferReason.CLOSED_DEFLECTION_ENABLED)
    ]


def test_rule_closed_without_deflection_with_agents_logged_in(config: HoursConfig) -> None:
    assert offered(config, [queue(agents=1)], CLOSED_TIME, True) == [
        ("support", TransferReason.CLOSED_AGENTS_LOGGED_IN)
    ]


def test_rule_closed_with_a_24_7_virtual_agent(config: HoursConfig) -> None:
    assert offered(config, [queue(virtual_agent="24/7")], CLOSED_TIME, True) == [
        ("support", TransferReason.CLOSED_VIRTUAL_AGENT_24_7)
    ]


def test_rule_closed_with_a_queue_hours_virtual_agent_is_never_listed_for_it(
    config: HoursConfig,
) -> None:
    assert offered(config, [queue(virtual_agent="queue_hours")], CLOSED_TIME, True) == []


def test_closed_queue_with_nothing_is_not_listed(config: HoursConfig) -> None:
    assert offered(config, [queue()], CLOSED_TIME, True) == []
    assert offered(config, [queue(agents=0)], CLOSED_TIME, True) == []


# --- combinations -----------------------------------------------------------------------------


def test_queue_hours_virtual_agent_does_not_hide_a_queue_qualified_otherwise(
    config: HoursConfig,
) -> None:
    # The limited virtual agent qualifies nothing, but deflection or agents still do.
    states = [
        queue("a", deflection=True, virtual_agent="queue_hours"),
        queue("b", agents=2, virtual_agent="queue_hours"),
    ]
    assert offered(config, states, CLOSED_TIME, True) == [
        ("a", TransferReason.CLOSED_DEFLECTION_ENABLED),
        ("b", TransferReason.CLOSED_AGENTS_LOGGED_IN),
    ]


def test_several_reasons_report_the_first_rule(config: HoursConfig) -> None:
    states = [
        queue("a", deflection=True, agents=2, virtual_agent="24/7"),
        queue("b", agents=2, virtual_agent="24/7"),
    ]
    assert offered(config, states, CLOSED_TIME, True) == [
        ("a", TransferReason.CLOSED_DEFLECTION_ENABLED),
        ("b", TransferReason.CLOSED_AGENTS_LOGGED_IN),
    ]


def test_mixed_list_keeps_the_given_order(config: HoursConfig) -> None:
    states = [
        queue("billing", agents=1),  # closed (New York night), agents
        queue("night"),  # open 24/7
        queue("sales", virtual_agent="queue_hours"),  # closed, hidden
        queue("support", virtual_agent="24/7"),  # closed, 24/7 virtual agent
        queue("vip"),  # closed, nothing
    ]
    assert offered(config, states, CLOSED_TIME, True) == [
        ("billing", TransferReason.CLOSED_AGENTS_LOGGED_IN),
        ("night", TransferReason.OPEN),
        ("support", TransferReason.CLOSED_VIRTUAL_AGENT_24_7),
    ]
    assert offered(config, states, CLOSED_TIME, False) == [("night", TransferReason.OPEN)]


def test_reason_texts_for_the_cli() -> None:
    assert [r.value for r in TransferReason] == [
        "open",
        "closed, after-hours deflection enabled",
        "closed, agents logged in",
        "closed, virtual agent available 24/7",
    ]
