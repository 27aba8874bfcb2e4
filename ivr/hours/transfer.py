"""Which queues an agent may transfer a call to right now (the seed rules, one place).

With "allow transfers to queues outside business hours" on, an agent sees:

1. every open queue;
2. closed queues whose after-hours deflection is enabled (globally or per queue);
3. closed queues with agents logged in;
4. closed queues with a virtual agent available 24/7.

A closed queue whose virtual agent is limited to the queue's hours is never listed on the
strength of that virtual agent: it is listed only if rule 2 or 3 qualifies it. With the
setting off, only open queues are listed. Pure: ``now`` is passed in.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ivr.hours.calendar import HoursConfig
from ivr.hours.evaluate import is_open

__all__ = ["QueueState", "TransferOption", "TransferReason", "transferable_queues"]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueState:
    """What the transfer rules need to know about one queue at this moment."""

    name: str
    deflection_enabled: bool
    agents_logged_in: int
    virtual_agent: Literal["24/7", "queue_hours"] | None = None


class TransferReason(enum.Enum):
    """Why a queue is offered; values are what the CLI/API shows."""

    OPEN = "open"
    CLOSED_DEFLECTION_ENABLED = "closed, after-hours deflection enabled"
    CLOSED_AGENTS_LOGGED_IN = "closed, agents logged in"
    CLOSED_VIRTUAL_AGENT_24_7 = "closed, virtual agent available 24/7"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferOption:
    queue: str
    reason: TransferReason


def closed_queue_reason(state: QueueState) -> TransferReason | None:
    """The first seed rule that lets a closed queue be offered, or None.

    The order (deflection, agents, 24/7 virtual agent) only picks which reason is shown
    when several apply. A virtual agent limited to the queue's hours is off now, so it
    qualifies nothing.
    """
    if state.deflection_enabled:
        return TransferReason.CLOSED_DEFLECTION_ENABLED
    if state.agents_logged_in > 0:
        return TransferReason.CLOSED_AGENTS_LOGGED_IN
    if state.virtual_agent == "24/7":
        return TransferReason.CLOSED_VIRTUAL_AGENT_24_7
    return None


def transferable_queues(
    queues: Sequence[QueueState],
    *,
    now: dt.datetime,
    config: HoursConfig,
    allow_transfers_outside_hours: bool,
    channel: str = "voice",
    language: str | None = None,
) -> list[TransferOption]:
    """The queues an agent may transfer to at ``now``, in the order given.

    Each queue is open or closed by its own calendar (queue > language > channel > global),
    ``language`` being the caller's when known.
    """
    options: list[TransferOption] = []
    for state in queues:
        if is_open(config, now, queue=state.name, channel=channel, language=language).open:
            options.append(TransferOption(queue=state.name, reason=TransferReason.OPEN))
            continue
        if not allow_transfers_outside_hours:
            continue
        reason = closed_queue_reason(state)
        if reason is not None:
            options.append(TransferOption(queue=state.name, reason=reason))
    return options
