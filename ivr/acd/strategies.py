"""Routing strategies: which offerable agent(s) get a call. Pure functions over candidates.

Every strategy first keeps the lowest membership ``level`` present among the candidates (the
primary tier before backups), then:

- ``longest_idle``: the agent idle longest (earliest ``idle_since``); ties by config order.
- ``round_robin``: the first candidate after the queue's pointer (the agent offered last), in
  the queue's member order, wrapping around.
- ``ring_all``: every candidate of that tier at once; the first to accept wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .models import Strategy

__all__ = ["Candidate", "choose_agents"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    agent_id: str
    level: int
    idle_since: float
    order: int  # position among the queue's members (config order)


def choose_agents(
    strategy: Strategy, candidates: Sequence[Candidate], *, last_offered: int | None
) -> list[Candidate]:
    """The agents to offer the call to (empty when there are no candidates).

    ``last_offered`` is the member order of the agent the queue offered a call to last
    (round robin's pointer), or None.
    """
    if not candidates:
        return []
    level = min(c.level for c in candidates)
    tier = sorted((c for c in candidates if c.level == level), key=lambda c: c.order)
    if strategy == "ring_all":
        return tier
    if strategy == "round_robin":
        if last_offered is None:
            return [tier[0]]
        after = [c for c in tier if c.order > last_offered]
        return [after[0] if after else tier[0]]
    return [min(tier, key=lambda c: (c.idle_since, c.order))]
