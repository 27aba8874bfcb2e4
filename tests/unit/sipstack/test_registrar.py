"""Registrar (RFC 3261 §10.3): bindings, expiry, wildcard removal, ordering, limits."""

from __future__ import annotations

from sipstack.message import Request
from sipstack.registrar import Registrar
from sipstack.transaction import Flow

FLOW = Flow("UDP", ("192.0.2.10", 5062), None, ("192.0.2.1", 5060))


def register(
    contacts: list[str], *, expires: str | None = None, call_id: str = "reg-1", cseq: int = 1
) -> Request:
    request = Request(method="REGISTER", uri="sip:192.0.2.1")
    for name, value in (
        ("Via", "SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bKr"),
        ("From", "<sip:alice@example.com>;tag=f"),
        ("To", "<sip:alice@EXAMPLE.com:5060>"),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} REGISTER"),
    ):
        request.headers.add(name, value)
    for contact in contacts:
        request.headers.add("Contact", contact)
    if expires is not None:
        request.headers.add("Expires", expires)
    return request


def test_register_lists_bindings_with_remaining_expiry() -> None:
    reg = Registrar(min_expires=60, max_expires=3600)
    result = reg.register(register(["<sip:alice@192.0.2.10:5062>"], expires="600"), FLOW, 100.0)
    assert (result.status_code, result.aor) == (200, "sip:alice@example.com")
    assert result.headers == (("Contact", "<sip:alice@192.0.2.10:5062>;expires=600"),)
    second = reg.register(
        register(["<sip:alice@198.51.100.7>;expires=120;q=0.5"], cseq=2), FLOW, 200.0
    )
    assert second.headers == (
        ("Contact", "<sip:alice@192.0.2.10:5062>;expires=500"),
        ("Contact", "<sip:alice@198.51.100.7>;expires=120"),
    )
    assert [b.contact for b in reg.bindings("sip:alice@example.com", 200.0)] == [
        "sip:alice@192.0.2.10:5062",
        "sip:alice@198.51.100.7",
    ]
    assert reg.bindings("sip:alice@example.com", 200.0)[0].flow == FLOW


def test_expiry_is_capped_and_bindings_lapse() -> None:
    reg = Registrar(max_expires=3600)
    reg.register(register(["<sip:a@192.0.2.10>"], expires="99999"), FLOW, 0.0)
    assert reg.bindings("sip:alice@example.com", 0.0)[0].expires_at == 3600.0
    assert reg.bindings("sip:alice@example.com", 3600.0) == []
    gone = reg.expire(3600.0)
    assert [b.contact for b in gone] == ["sip:a@192.0.2.10"]
    assert reg.snapshot() == []


def test_too_brief_interval_is_423_with_min_expires() -> None:
    reg = Registrar(min_expires=60)
    result = reg.register(register(["<sip:a@192.0.2.10>"], expires="30"), FLOW, 0.0)
    assert result.status_code == 423
    assert result.headers == (("Min-Expires", "60"),)
    assert reg.snapshot() == []


def test_expires_zero_unregisters_one_contact_and_wildcard_all() -> None:
    reg = Registrar()
    reg.register(register(["<sip:a@192.0.2.10>", "<sip:a@192.0.2.11>"]), FLOW, 0.0)
    one = reg.register(register(["<sip:a@192.0.2.10>;expires=0"], cseq=2), FLOW, 1.0)
    assert [b.contact for b in one.removed] == ["sip:a@192.0.2.10"]
    assert len(reg.bindings("sip:alice@example.com", 1.0)) == 1
    bad = reg.register(register(["*"], cseq=3), FLOW, 2.0)
    assert bad.status_code == 400, "'*' needs Expires: 0 (§10.3 step 6)"
    everything = reg.register(register(["*"], expires="0", cseq=4), FLOW, 3.0)
    assert everything.status_code == 200 and everything.headers == ()
    assert reg.snapshot() == []


def test_out_of_order_register_in_same_call_id_is_ignored() -> None:
    reg = Registrar()
    reg.register(register(["<sip:a@192.0.2.10>"], expires="600", cseq=5), FLOW, 0.0)
    stale = reg.register(register(["<sip:a@192.0.2.10>"], expires="0", cseq=4), FLOW, 1.0)
    assert stale.removed == ()
    assert len(reg.bindings("sip:alice@example.com", 1.0)) == 1


def test_contact_limit_evicts_the_oldest() -> None:
    reg = Registrar(max_contacts_per_aor=2)
    for i, now in enumerate((0.0, 1.0, 2.0)):
        reg.register(register([f"<sip:a@192.0.2.{10 + i}>"], call_id=f"c{i}"), FLOW, now)
    assert [b.contact for b in reg.bindings("sip:alice@example.com", 3.0)] == [
        "sip:a@192.0.2.11",
        "sip:a@192.0.2.12",
    ]


def test_malformed_values_are_400_and_change_nothing() -> None:
    reg = Registrar()
    assert (
        reg.register(register(["<sip:a@192.0.2.10>"], expires="soon"), FLOW, 0).status_code == 400
    )
    assert reg.register(register(["<sip:a@192.0.2.10>;expires=x"]), FLOW, 0).status_code == 400
    assert reg.register(register(["<sip:a@192.0.2.10>;q=high"]), FLOW, 0).status_code == 400
    assert reg.register(register(["<garbage"]), FLOW, 0).status_code == 400
    assert reg.snapshot() == []


def test_snapshot_restore_keeps_only_live_bindings() -> None:
    reg = Registrar()
    reg.register(register(["<sip:a@192.0.2.10>"], expires="100"), FLOW, 0.0)
    reg.register(register(["<sip:a@192.0.2.11>"], expires="1000", call_id="x"), FLOW, 0.0)
    fresh = Registrar()
    fresh.restore(reg.snapshot(), 500.0)
    assert [b.contact for b in fresh.bindings("sip:alice@example.com", 500.0)] == [
        "sip:a@192.0.2.11"
    ]
