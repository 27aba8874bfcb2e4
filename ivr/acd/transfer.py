"""Agent blind transfer targets (SIP REFER): a queue the agent may see, or an outside number.

Pure: which queues are visible right now (business hours, deflection, agents logged in) is the
business-hours module's decision (``ivr.hours.transfer.transferable_queues``); the engine passes
it in as a predicate, as it does the policy for outside numbers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

from .errors import AcdError

__all__ = ["TransferRefused", "TransferTarget", "check_transfer_target"]

_NUMBER = re.compile(r"^\+?[0-9]{2,20}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferTarget:
    kind: Literal["queue", "number"]
    value: str  # queue name, or the number as dialled (digits, optional leading +)


class TransferRefused(AcdError):
    """The target may not be transferred to; ``status`` is the SIP response hint for the
    REFER (403 not allowed, 404 unknown queue, 484 not a number or queue)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def _never(_: str) -> bool:
    return False


def check_transfer_target(
    target: str,
    *,
    queues: Collection[str],
    queue_visible: Callable[[str], bool],
    number_allowed: Callable[[str], bool] = _never,
) -> TransferTarget:
    """Classify and check the user part of a Refer-To (or an API target).

    ``queue:<name>`` is always a queue; a bare name that is a configured queue is that queue
    (queue names win over digits); otherwise digits with an optional ``+`` (``tel:`` prefix
    allowed) are an outside number. Raises :class:`TransferRefused`.
    """
    text = target.strip()
    explicit = text.startswith("queue:")
    name = text.removeprefix("queue:")
    if explicit or name in queues:
        if name not in queues:
            raise TransferRefused(f"unknown queue {name!r}", status=404)
        if not queue_visible(name):
            raise TransferRefused(f"queue {name!r} does not take transfers now", status=403)
        return TransferTarget(kind="queue", value=name)
    number = text.removeprefix("tel:").replace("-", "").replace(" ", "")
    if not _NUMBER.match(number):
        raise TransferRefused(f"{target!r} is neither a queue nor a phone number", status=484)
    if not number_allowed(number):
        raise TransferRefused(f"transfers to {number} are not allowed", status=403)
    return TransferTarget(kind="number", value=number)
