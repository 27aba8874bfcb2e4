"""RFC 4733 telephone-event payloads, receiver (once per key press) and sender sequences."""

from __future__ import annotations

import pytest

from media.dtmf import (
    DtmfPacket,
    DtmfReceived,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    digit_for_event,
    event_for_digit,
)
from media.errors import DtmfError


def ev(event: int, duration: int, *, end: bool = False, volume: int = 10) -> bytes:
    return bytes(TelephoneEvent(event=event, end=end, volume=volume, duration=duration))


# -- payload ---------------------------------------------------------------------------------


def test_payload_golden_bytes() -> None:
    # §2.3: event | E R volume | duration
    assert ev(5, 800, end=True) == bytes.fromhex("058a0320")
    assert TelephoneEvent.parse(bytes.fromhex("0b0a00a0")) == TelephoneEvent(
        event=11, end=False, volume=10, duration=160
    )
    # R bit set by a sender is ignored on receipt
    assert TelephoneEvent.parse(bytes.fromhex("01ca0320")) == TelephoneEvent(
        event=1, end=True, volume=10, duration=800
    )
    with pytest.raises(DtmfError):
        TelephoneEvent.parse(b"\x01\x0a\x00")


def test_digit_table() -> None:
    assert [event_for_digit(d) for d in "0123456789*#ABCD"] == list(range(16))
    assert event_for_digit("a") == 12
    assert digit_for_event(11) == "#"
    with pytest.raises(DtmfError):
        event_for_digit("E")
    with pytest.raises(DtmfError):
        digit_for_event(16)


# -- receiver --------------------------------------------------------------------------------


def feed_all(
    rx: DtmfReceiver, packets: list[tuple[int, bool, bytes]], t0: float = 0.0
) -> list[DtmfReceived]:
    out = []
    for i, (ts, marker, payload) in enumerate(packets):
        got = rx.feed(ts, marker, payload, t0 + 0.02 * i)
        if got is not None:
            out.append(got)
    return out


def press(ts: int, event: int, steps: int = 4, total: int = 800) -> list[tuple[int, bool, bytes]]:
    pkts = [(ts, i == 0, ev(event, 160 * (i + 1))) for i in range(steps)]
    pkts += [(ts, False, ev(event, total, end=True))] * 3
    return pkts


def test_one_event_per_press_with_retransmitted_end() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, press(1000, 5)) == [DtmfReceived(digit="5", duration_ms=100)]
    assert rx.poll(10.0) is None
    assert not rx.active


def test_same_digit_twice_is_two_presses() -> None:
    rx = DtmfReceiver()
    got = feed_all(rx, press(1000, 1) + press(3000, 1))
    assert got == [DtmfReceived(digit="1", duration_ms=100)] * 2


def test_duplicates_and_reordering_within_event() -> None:
    rx = DtmfReceiver()
    p = press(4000, 9)
    packets = [p[0], p[0], p[2], p[1], p[3], p[4], p[1], p[5], p[6]]
    assert feed_all(rx, packets) == [DtmfReceived(digit="9", duration_ms=100)]


def test_late_packet_of_previous_event_is_ignored() -> None:
    rx = DtmfReceiver()
    first = press(1000, 1)
    second = press(2000, 2)
    packets = first + second[:2] + [first[2], first[-1]] + second[2:]
    assert feed_all(rx, packets) == [
        DtmfReceived(digit="1", duration_ms=100),
        DtmfReceived(digit="2", duration_ms=100),
    ]


def test_all_end_packets_lost_reported_by_poll_once() -> None:
    rx = DtmfReceiver(timeout_seconds=0.25)
    for i in range(3):
        assert rx.feed(500, i == 0, ev(12, 160 * (i + 1)), 1.0 + 0.02 * i) is None
    assert rx.active
    assert rx.poll(1.2) is None  # last packet at 1.04: not yet 0.25 s of silence
    assert rx.poll(1.29) == DtmfReceived(digit="A", duration_ms=60)
    assert rx.poll(5.0) is None
    # a late end packet for the event already reported is not a new press
    assert rx.feed(500, False, ev(12, 800, end=True), 5.1) is None


def test_new_event_flushes_unfinished_previous() -> None:
    rx = DtmfReceiver()
    assert rx.feed(100, True, ev(3, 160), 0.0) is None
    assert rx.feed(100, False, ev(3, 320), 0.02) is None
    # next press starts (its end packet is the first we see): previous is reported now,
    # the new one is queued and comes out of the next poll.
    assert rx.feed(2000, False, ev(4, 800, end=True), 0.3) == DtmfReceived(
        digit="3", duration_ms=40
    )
    assert rx.active
    assert rx.poll(0.3) == DtmfReceived(digit="4", duration_ms=100)
    assert rx.poll(0.4) is None


def test_first_packets_lost_end_only() -> None:
    rx = DtmfReceiver()
    assert feed_all(rx, press(9000, 10)[4:]) == [DtmfReceived(digit="*", duration_ms=100)]


def test_timestamp_wrap_is_a_new_event_not_an_old_one() -> None:
    rx = DtmfReceiver()
    got = feed_all(rx, press(0xFFFFFF00, 0) + press(0x00000100, 11))
    assert [g.digit for g in got] == ["0", "#"]


def test_non_dtmf_events_and_malformed_payloads_ignored() -> None:
    rx = DtmfReceiver()
    assert rx.feed(1, True, ev(16, 160, end=True), 0.0) is None  # flash
    assert rx.feed(2, True, b"\x01", 0.0) is None
    assert rx.malformed == 1
    assert not rx.active


# -- sender ----------------------------------------------------------------------------------


def test_sender_exact_sequence_100ms() -> None:
    packets = DtmfSender().packets("5", 0x12345678)
    assert packets == (
        DtmfPacket(marker=True, timestamp=0x12345678, payload=bytes.fromhex("050a00a0")),
        DtmfPacket(marker=False, timestamp=0x12345678, payload=bytes.fromhex("050a0140")),
        DtmfPacket(marker=False, timestamp=0x12345678, payload=bytes.fromhex("050a01e0")),
        DtmfPacket(marker=False, timestamp=0x12345678, payload=bytes.fromhex("050a0280")),
        DtmfPacket(marker=False, timestamp=0x12345678, payload=bytes.fromhex("058a0320")),
        DtmfPacket(marker=False, timestamp=0x12345678, payload=bytes.fromhex("058a0320")),
        DtmfPacket(marker=False, timestamp=0x12345678, payload=bytes.fromhex("058a0320")),
    )


def test_sender_options_and_short_event() -> None:
    sender = DtmfSender(duration_ms=40, volume=20)
    packets = sender.packets("#", 7)
    assert [p.payload.hex() for p in packets] == ["0b1400a0", "0b940140", "0b940140", "0b940140"]
    short = sender.packets("D", 2**32 + 5, duration_ms=20)
    assert [(p.marker, p.timestamp, p.payload.hex()) for p in short] == [
        (True, 5, "0f9400a0"),
        (False, 5, "0f9400a0"),
        (False, 5, "0f9400a0"),
    ]
    odd = DtmfSender().packets("1", 0, duration_ms=90, volume=0)
    assert [p.payload.hex() for p in odd] == ["010000a0", "01000140", "010001e0", "01000280"] + [
        "018002d0"
    ] * 3
    with pytest.raises(DtmfError):
        sender.packets("x", 0)
    with pytest.raises(DtmfError):
        sender.packets("1", 0, duration_ms=0)


def test_sender_output_round_trips_through_receiver() -> None:
    rx = DtmfReceiver()
    got = []
    for i, p in enumerate(DtmfSender().packets("7", 4242, duration_ms=160)):
        r = rx.feed(p.timestamp, p.marker, p.payload, 0.02 * i)
        if r is not None:
            got.append(r)
    assert got == [DtmfReceived(digit="7", duration_ms=160)]


def test_replayed_capture_with_the_same_timestamp_is_a_new_press() -> None:
    # SIPp's play_pcap_audio replays identical packets: same timestamp, marker on the start.
    rx = DtmfReceiver()
    assert [e.digit for e in feed_all(rx, press(1000, 1), t0=0.0)] == ["1"]
    assert [e.digit for e in feed_all(rx, press(1000, 1), t0=2.0)] == ["1"]
    # A different key under the same timestamp cannot be a retransmission either.
    assert [e.digit for e in feed_all(rx, press(1000, 2), t0=2.2)] == ["2"]


def test_marker_retransmitted_soon_after_is_not_a_new_press() -> None:
    rx = DtmfReceiver()
    assert len(feed_all(rx, press(1000, 7), t0=0.0)) == 1
    # The start packet again, 60 ms after the end packets: a late duplicate.
    assert rx.feed(1000, True, ev(7, 160), 0.2) is None
    assert rx.poll(1.0) is None
