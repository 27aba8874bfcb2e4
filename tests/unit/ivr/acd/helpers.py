"""Shared builders for the ACD tests: settings from plain dicts, an Acd with agents on line."""

from __future__ import annotations

from typing import Any

from ivr.acd import Acd, AcdSettings
from ivr.acd.commands import AcdCommand


def agent(agent_id: str, *queues: Any, **extra: Any) -> dict[str, Any]:
    return {
        "id": agent_id,
        "display_name": agent_id.upper(),
        "sip": {"username": agent_id, "password": "secret"},
        "queues": list(queues),
        **extra,
    }


def settings(
    agents: list[dict[str, Any]], queues: list[dict[str, Any]], **extra: Any
) -> AcdSettings:
    return AcdSettings.model_validate({"agents": agents, "queues": queues, **extra})


def online(acd: Acd, *agent_ids: str, now: float) -> None:
    """Register one contact and log in (ready) each agent at ``now``."""
    for agent_id in agent_ids:
        acd.registration_changed(agent_id, 1, now)
        acd.log_in(agent_id, now)


def of_type(commands: list[AcdCommand], kind: type) -> list[Any]:
    return [c for c in commands if isinstance(c, kind)]
