from __future__ import annotations

import pytest

from ivr.acd import TransferRefused, TransferTarget, check_transfer_target

QUEUES = ("billing", "sales", "100")


def _check(target: str, *, visible: set[str] = {"billing", "100"}, numbers: bool = False):  # noqa: B006
    return check_transfer_target(
        target,
        queues=QUEUES,
        queue_visible=lambda name: name in visible,
        number_allowed=lambda number: numbers and number.startswith("+1"),
    )


def test_visible_queue() -> None:
    assert _check("billing") == TransferTarget(kind="queue", value="billing")
    assert _check("queue:billing") == TransferTarget(kind="queue", value="billing")
    assert _check("100") == TransferTarget(kind="queue", value="100")  # queue names win


@pytest.mark.parametrize(
    ("target", "status"),
    [("sales", 403), ("queue:nowhere", 404), ("not a number", 484), ("+15551234567", 403)],
)
def test_refused_targets_carry_a_sip_status(target: str, status: int) -> None:
    with pytest.raises(TransferRefused) as info:
        _check(target)
    assert info.value.status == status


def test_outside_number_by_policy() -> None:
    assert _check("tel:+1-555-123-4567", numbers=True) == TransferTarget(
        kind="number", value="+15551234567"
    )
    with pytest.raises(TransferRefused):
        _check("+445551234567", numbers=True)
