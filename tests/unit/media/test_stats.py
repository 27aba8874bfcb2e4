"""RTP statistics: RFC 3550 A.1 sequence tracking with wrap, loss, fraction lost, jitter."""

from __future__ import annotations

import pytest

from media.stats import RtpStats


def feed(stats: RtpStats, seqs: list[int], *, start_ts: int = 0) -> None:
    for i, seq in enumerate(seqs):
        stats.record_received(seq & 0xFFFF, (start_ts + 160 * i) & 0xFFFFFFFF, 172, 0.02 * i)


def test_sequence_wrap_without_loss() -> None:
    stats = RtpStats()
    feed(stats, list(range(65530, 65542)))  # 65530..65535, 0..5
    # A.1 probation: the first packet validates the source and is not counted in `received`.
    assert stats.packets_received == 12
    assert stats.received == 11
    assert stats.cycles == 65536
    assert stats.extended_max_sequence == 65536 + 5
    assert stats.expected == 11
    assert stats.cumulative_lost == 0
    assert stats.close_interval() == 0


def test_loss_across_wrap_and_fraction_lost() -> None:
    stats = RtpStats()
    seqs = [s for s in range(65530, 65542) if s not in (65535, 65537)]
    feed(stats, seqs)
    assert stats.expected == 11
    assert stats.received == 9
    assert stats.cumulative_lost == 2
    assert stats.close_interval() == (2 << 8) // 11
    assert stats.fraction_lost == 46
    # next interval: no loss
    feed_more = [65542 + i for i in range(5)]
    for i, seq in enumerate(feed_more):
        stats.record_received(seq & 0xFFFF, 160 * (20 + i), 172, 1.0 + 0.02 * i)
    block = stats.report_block(0xABC)
    assert block.fraction_lost == 0
    assert block.cumulative_lost == 2
    assert block.highest_sequence == 65536 + 65546 - 65536
    assert stats.as_dict()["cumulative_lost"] == 2


def test_duplicates_make_loss_negative() -> None:
    stats = RtpStats()
    feed(stats, [10, 11, 12, 12, 13, 13])
    assert stats.expected == 3
    assert stats.received == 5
    assert stats.cumulative_lost == -2
    assert stats.close_interval() == 0


def test_big_jump_needs_two_sequential_packets() -> None:
    stats = RtpStats()
    feed(stats, [100, 101, 102])
    assert stats.record_received(30000, 0, 172, 1.0) is False  # one stray packet: dropped
    assert stats.record_received(30001, 160, 172, 1.02) is True  # peer restarted: re-sync
    assert stats.base_seq == 30001 and stats.received == 1


def test_jitter_rfc3550_formula() -> None:
    stats = RtpStats()
    stats.record_received(1, 1000, 172, 10.0)  # probation
    stats.record_received(2, 1160, 172, 10.02)  # first valid: reference transit
    stats.record_received(3, 1320, 172, 10.04)  # on time: D = 0
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    stats.record_received(4, 1480, 172, 10.07)  # 10 ms late: |D| = 80 units
    assert stats.jitter == pytest.approx(5.0)
    stats.record_received(5, 1640, 172, 10.08)  # back on schedule: |D| = 80 again
    assert stats.jitter == pytest.approx(5.0 + (80 - 5.0) / 16)
    assert stats.jitter_ms == pytest.approx((5.0 + 75 / 16) / 8)


def test_jitter_survives_timestamp_wrap() -> None:
    stats = RtpStats()
    feed(stats, list(range(20)), start_ts=0xFFFFFF00)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_send_counters_and_as_dict() -> None:
    stats = RtpStats()
    stats.record_sent(172)
    stats.record_sent(172)
    d = stats.as_dict()
    assert d["packets_sent"] == 2 and d["bytes_sent"] == 344
    assert d["expected"] == 0 and d["received"] == 0
