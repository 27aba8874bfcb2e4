"""Per-leg RTP statistics: counters, sequence tracking with wrap, loss and jitter (RFC 3550).

Pure: the arrival time of each packet is passed in (seconds, any monotonic origin).
"""

from __future__ import annotations

from media.rtp import ReportBlock

__all__ = ["RtpStats"]

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


class RtpStats:
    """Statistics of one RTP leg, both directions.

    Sequence validation follows RFC 3550 Appendix A.1 (``update_seq``, with probation of
    ``MIN_SEQUENTIAL`` packets for a new source, so the very first packet of a source is
    counted in ``packets_received`` but not in ``received``/``expected``); loss per §6.4.1
    and A.3; interarrival jitter per §6.4.1 and A.8, kept in timestamp units.
    """

    def __init__(self, *, clock_rate: int = 8000) -> None:
        self.clock_rate = clock_rate
        self.packets_sent = 0
        self.bytes_sent = 0
        self.packets_received = 0
        self.bytes_received = 0
        self.malformed_received = 0
        self.rtcp_received = 0
        self.rtcp_sent = 0
        # A.1 source state
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = RTP_SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self.expected_prior = 0
        self.received_prior = 0
        self.jitter = 0.0
        self._started = False
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        self._fraction_lost = 0

    # -- send side -----------------------------------------------------------------------

    def record_sent(self, nbytes: int) -> None:
        """Count one sent RTP packet of ``nbytes`` octets (header included)."""
        self.packets_sent += 1
        self.bytes_sent += nbytes

    # -- receive side --------------------------------------------------------------------

    def record_received(
        self, sequence_number: int, timestamp: int, nbytes: int, arrival: float
    ) -> bool:
        """Account one received RTP packet; returns False when A.1 deems it invalid."""
        self.packets_received += 1
        self.bytes_received += nbytes
        if not self._started:
            self._started = True
            self._init_seq(sequence_number)
            self.max_seq = (sequence_number - 1) & 0xFFFF
            self.probation = MIN_SEQUENTIAL
        if not self._update_seq(sequence_number):
            return False
        self._update_jitter(timestamp, arrival)
        return True

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.received_prior = 0
        self.expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        # RFC 3550 A.1, transcribed.
        udelta = (seq - self.max_seq) & 0xFFFF
        if self.probation:
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            # in order, with permissible gap
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD  # sequence number wrapped
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            # the sequence number made a very large jump
            if seq == self.bad_seq:
                # two sequential packets: assume the other side restarted without telling us
                self._init_seq(seq)
            else:
                self.bad_seq = (seq + 1) & 0xFFFF
                return False
        # else: duplicate or reordered packet
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        # §6.4.1: D(i,j) = (Rj - Ri) - (Sj - Si) in timestamp units and
        # J(i) = J(i-1) + (|D(i-1,i)| - J(i-1))/16. The timestamp difference is taken mod 2**32
        # (signed) so timestamp wrap is harmless; arrival stays a float (no truncation error).
        if self._last_arrival is not None:
            ts_delta = ((timestamp - self._last_timestamp + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)
            d = (arrival - self._last_arrival) * self.clock_rate - ts_delta
            self.jitter += (abs(d) - self.jitter) / 16.0
        self._last_arrival = arrival
        self._last_timestamp = timestamp

    # -- derived values ------------------------------------------------------------------

    @property
    def extended_max_sequence(self) -> int:
        """Extended highest sequence number received (cycles + max_seq, A.3)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected since the source was validated (A.3)."""
        if self.received == 0 and self.probation:
            return 0
        return self.extended_max_sequence - self.base_seq + 1

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received; negative with duplicates (§6.4.1)."""
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        """Interarrival jitter converted to milliseconds."""
        return self.jitter * 1000.0 / self.clock_rate

    @property
    def fraction_lost(self) -> int:
        """Fraction lost (0-255 fixed point /256) over the last report interval (A.3)."""
        return self._fraction_lost

    def close_interval(self) -> int:
        """End a report interval: compute and return the fraction lost since the last one."""
        expected = self.expected
        expected_interval = expected - self.expected_prior
        self.expected_prior = expected
        received_interval = self.received - self.received_prior
        self.received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            self._fraction_lost = 0
        else:
            self._fraction_lost = (lost_interval << 8) // expected_interval
        return self._fraction_lost

    def report_block(
        self, ssrc: int, *, last_sr: int = 0, delay_since_last_sr: int = 0
    ) -> ReportBlock:
        """A reception report block for the source ``ssrc``; closes the report interval."""
        fraction = self.close_interval()
        return ReportBlock(
            ssrc=ssrc,
            fraction_lost=fraction,
            cumulative_lost=self.cumulative_lost,
            highest_sequence=self.extended_max_sequence & 0xFFFFFFFF,
            jitter=int(self.jitter),
            last_sr=last_sr,
            delay_since_last_sr=delay_since_last_sr,
        )

    def as_dict(self) -> dict[str, int | float]:
        """Flat snapshot for structured logs."""
        return {
            "packets_sent": self.packets_sent,
            "bytes_sent": self.bytes_sent,
            "packets_received": self.packets_received,
            "bytes_received": self.bytes_received,
            "malformed_received": self.malformed_received,
            "rtcp_received": self.rtcp_received,
            "rtcp_sent": self.rtcp_sent,
            "expected": self.expected,
            "received": self.received,
            "cumulative_lost": self.cumulative_lost,
            "fraction_lost": self._fraction_lost / 256.0,
            "jitter": round(self.jitter, 3),
            "jitter_ms": round(self.jitter_ms, 3),
            "extended_max_sequence": self.extended_max_sequence,
        }
