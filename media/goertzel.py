"""Goertzel single-frequency power over PCM16, used to prove which tone a leg hears.

Generalised Goertzel (exact, non-integer bin) over the whole buffer; pure Python.
"""

from __future__ import annotations

import math
import sys
from array import array

__all__ = ["dominant_frequency_present", "goertzel_power", "mean_square", "relative_power"]


def _samples(pcm: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(pcm[: len(pcm) & ~1])
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def goertzel_power(pcm: bytes, frequency: float, sample_rate: int = 8000) -> float:
    """Power of the ``frequency`` component of PCM16 LE mono, in sample units squared.

    Scaled so a sine of amplitude A at exactly ``frequency`` gives about A**2 / 2, i.e. the
    same scale as :func:`mean_square`.
    """
    samples = _samples(pcm)
    n = len(samples)
    if n == 0:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * frequency / sample_rate)
    s1 = 0.0
    s2 = 0.0
    for x in samples:
        s0 = x + coeff * s1 - s2
        s2 = s1
        s1 = s0
    magnitude_sq = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2.0 * magnitude_sq / (n * n)


def mean_square(pcm: bytes) -> float:
    """Mean of the squared samples (total signal power)."""
    samples = _samples(pcm)
    if not samples:
        return 0.0
    return sum(x * x for x in samples) / len(samples)


def relative_power(pcm: bytes, frequency: float, sample_rate: int = 8000) -> float:
    """Share (0..~1) of the signal power at ``frequency``; 0.0 for digital silence."""
    total = mean_square(pcm)
    if total == 0.0:
        return 0.0
    return goertzel_power(pcm, frequency, sample_rate) / total


def dominant_frequency_present(
    pcm: bytes, frequency: float, threshold: float = 0.2, sample_rate: int = 8000
) -> bool:
    """True if at least ``threshold`` of the signal power sits at ``frequency``.

    A pure tone scores ~1.0, each tone of an equal dual tone ~0.5, an absent tone ~0.
    """
    return relative_power(pcm, frequency, sample_rate) >= threshold
