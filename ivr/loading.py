"""Loading everything the engine runs on, checked together: settings, flows, references.

``switchhook check``, ``switchhook run`` and hot reload all go through :func:`load_all`, so
what ``check`` accepts is exactly what the engine will run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .config import Settings, load_settings_document
from .flows import FlowSet, load_flow_set
from .hours import check_references
from .hours.deflection import _problem
from .roles import check_access
from .yamlloc import ConfigError, Problem


@dataclass(frozen=True, slots=True)
class Loaded:
    path: Path
    settings: Settings
    flows: FlowSet


def load_flows(settings: Settings, document: object | None = None) -> FlowSet:
    """Load and validate the flows the settings point at (routes checked against them)."""
    from .yamlloc import LocatedDocument

    return load_flow_set(
        settings.flows.dir,
        prompts_dir=settings.media.prompts_dir,
        routes=settings.routes,
        profile=settings.profile,
        routes_source=document if isinstance(document, LocatedDocument) else None,
    )


def load_all(path: str | os.PathLike[str]) -> Loaded:
    """Settings + flows + cross references; raise ConfigError with every problem found."""
    document, settings = load_settings_document(path)
    problems: list[Problem] = []
    flows: FlowSet | None = None
    try:
        flows = load_flows(settings, document)
    except ConfigError as exc:
        problems.extend(exc.problems)
    problems.extend(
        check_references(
            settings.after_hours,
            queues=[q.name for q in settings.acd.queues],
            trunks=[t.name for t in settings.trunks],
            document=document,
            hours_queues=settings.hours.queues if settings.hours is not None else (),
        )
    )
    problems.extend(
        _problem(document, path, message)
        for path, message in check_access(settings.users, settings.roles)
    )
    if problems or flows is None:
        raise ConfigError(problems)
    return Loaded(Path(path), settings, flows)
