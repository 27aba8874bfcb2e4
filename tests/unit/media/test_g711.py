"""G.711 codec table and µ-law/A-law conversions (ITU-T G.711 reference points)."""

from __future__ import annotations

import struct

import pytest

from media.errors import CodecError
from media.g711 import (
    CODECS,
    alaw_decode,
    alaw_encode,
    codec_for_payload_type,
    get_codec,
    ulaw_decode,
    ulaw_encode,
)


def test_codec_table() -> None:
    assert {n: (c.payload_type, c.clock_rate) for n, c in CODECS.items()} == {
        "PCMU": (0, 8000),
        "PCMA": (8, 8000),
    }
    assert get_codec("pcmu") is CODECS["PCMU"]
    assert codec_for_payload_type(8) is CODECS["PCMA"]
    assert codec_for_payload_type(18) is None
    with pytest.raises(CodecError, match="G729"):
        get_codec("G729")


def test_silence_code_words() -> None:
    silence = bytes(320)
    assert ulaw_encode(silence) == b"\xff" * 160  # µ-law zero is 0xFF
    assert alaw_encode(silence) == b"\xd5" * 160  # A-law zero is 0xD5 (even bits inverted)


def test_round_trip_is_close() -> None:
    pcm = struct.pack("<8h", 0, 100, -100, 1000, -1000, 8000, -8000, 32000)
    for enc, dec in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        out = struct.unpack("<8h", dec(enc(pcm)))
        for a, b in zip(struct.unpack("<8h", pcm), out, strict=True):
            assert abs(a - b) <= max(16, abs(a) // 16)
