"""G.711 µ-law (PCMU) and A-law (PCMA) for 16-bit linear PCM, and the static codec table.

Uses the standard library's ``audioop`` (3.11/3.12) or ``audioop-lts`` (3.13+, which installs
under the same name). Static payload types per RFC 3551 §6 (table 4): PCMU 0, PCMA 8.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

from media.errors import CodecError

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = [
    "CODECS",
    "FRAME_BYTES",
    "FRAME_SAMPLES",
    "SAMPLE_RATE",
    "Codec",
    "alaw_decode",
    "alaw_encode",
    "codec_for_payload_type",
    "get_codec",
    "ulaw_decode",
    "ulaw_encode",
]

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_BYTES = 2 * FRAME_SAMPLES  # PCM16 mono


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> G.711 µ-law, one octet per sample."""
    return audioop.lin2ulaw(pcm, 2)


def ulaw_decode(payload: bytes) -> bytes:
    """G.711 µ-law -> PCM16 little-endian."""
    return audioop.ulaw2lin(payload, 2)


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 little-endian -> G.711 A-law, one octet per sample."""
    return audioop.lin2alaw(pcm, 2)


def alaw_decode(payload: bytes) -> bytes:
    """G.711 A-law -> PCM16 little-endian."""
    return audioop.alaw2lin(payload, 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Codec:
    """A narrowband audio codec: encoding name (RFC 3551 §4.5), static PT, clock, functions."""

    name: str
    payload_type: int
    clock_rate: int
    encode: Callable[[bytes], bytes]
    decode: Callable[[bytes], bytes]


CODECS: dict[str, Codec] = {
    "PCMU": Codec(
        name="PCMU", payload_type=0, clock_rate=SAMPLE_RATE, encode=ulaw_encode, decode=ulaw_decode
    ),
    "PCMA": Codec(
        name="PCMA", payload_type=8, clock_rate=SAMPLE_RATE, encode=alaw_encode, decode=alaw_decode
    ),
}


def get_codec(name: str) -> Codec:
    """Look up a codec by SDP encoding name (case-insensitive, RFC 4566 §6 ``a=rtpmap``)."""
    try:
        return CODECS[name.upper()]
    except KeyError:
        raise CodecError(f"unsupported codec {name!r}; supported: {', '.join(CODECS)}") from None


def codec_for_payload_type(payload_type: int) -> Codec | None:
    """The codec with this static payload type, or None."""
    for codec in CODECS.values():
        if codec.payload_type == payload_type:
            return codec
    return None
