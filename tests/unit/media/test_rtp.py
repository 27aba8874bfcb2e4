"""RTP/RTCP wire objects: golden round trips (tests/golden/rtp), malformed input, hot writer."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest

from media.errors import MediaError, RtcpParseError, RtpParseError
from media.rtp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpUnknown,
    RtpHeaderExtension,
    RtpHeaderWriter,
    RtpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    is_rtcp,
    rtp_payload_offset,
)

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "rtp" / "packets.txt"


def _golden() -> list[tuple[str, str, bytes]]:
    rows = []
    for line in GOLDEN.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, *hexes = line.split()
        rows.append((name, kind, bytes.fromhex("".join(hexes))))
    return rows


GOLDEN_ROWS = _golden()


@pytest.mark.parametrize(("name", "kind", "data"), GOLDEN_ROWS, ids=[r[0] for r in GOLDEN_ROWS])
def test_golden_round_trip(name: str, kind: str, data: bytes) -> None:
    if kind == "rtp":
        assert bytes(RtpPacket.parse(data)) == data
        start, end = rtp_payload_offset(data)
        assert data[start:end] == RtpPacket.parse(data).payload
        assert not is_rtcp(data)
    else:
        assert RtcpPacket.compound(RtcpPacket.parse(data)) == data
        assert is_rtcp(data)


def _row(name: str) -> bytes:
    return next(data for n, _, data in GOLDEN_ROWS if n == name)


def test_golden_pcmu_fields() -> None:
    packet = RtpPacket.parse(_row("pcmu_basic"))
    assert packet == RtpPacket(
        payload_type=0,
        sequence_number=0x1234,
        timestamp=1000,
        ssrc=0xDEADBEEF,
        payload=b"\xff" * 4,
    )


def test_golden_csrc_extension_padding_fields() -> None:
    packet = RtpPacket.parse(_row("csrc_ext_padding"))
    assert packet.csrc == (2, 3)
    assert packet.extension == RtpHeaderExtension(profile=0xBEDE, data=bytes.fromhex("12345678"))
    assert packet.padding == 3
    assert packet.payload == b"\xd5\xd5"
    assert packet.payload_type == 8 and packet.sequence_number == 5 and packet.ssrc == 1


def test_golden_dtmf_marker() -> None:
    packet = RtpPacket.parse(_row("dtmf_marker"))
    assert packet.marker and packet.payload_type == 101 and packet.timestamp == 160


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "too short"),
        (bytes.fromhex("80000001000000000000"), "too short"),
        (bytes.fromhex("40000001000000000000000000"), "version 1"),
        (bytes.fromhex("c0000001000000000000000000"), "version 3"),
        (bytes.fromhex("82000001000000000000000000000001"), "CSRC"),
        (bytes.fromhex("90000001000000000000000000be"), "extension header"),
        (bytes.fromhex("90000001000000000000000000bede000212345678"), "extension (2 words)"),
        (bytes.fromhex("a0000001000000000000000000ff00"), "padding count 0"),
        (bytes.fromhex("a000000100000000000000000009"), "padding count 9"),
    ],
)
def test_malformed_rtp_raises_parse_error(data: bytes, fragment: str) -> None:
    with pytest.raises(RtpParseError, match=fragment.split()[0]) as info:
        RtpPacket.parse(data)
    assert isinstance(info.value, MediaError)


def test_serialise_built_packet() -> None:
    packet = RtpPacket(
        marker=True,
        payload_type=8,
        sequence_number=65535,
        timestamp=0xFFFFFFFF,
        ssrc=7,
        csrc=(9,),
        padding=4,
        payload=b"ab",
    )
    data = bytes(packet)
    assert data == bytes.fromhex("a188ffffffffffff00000007000000096162000000" + "04")
    assert RtpPacket.parse(data) == packet


def test_header_writer_packs_and_wraps() -> None:
    writer = RtpHeaderWriter(
        ssrc=0x01020304, sequence_number=0xFFFF, timestamp=0xFFFFFF60, payload_type=0
    )
    first = writer.pack(b"\xff" * 160, marker=True)
    assert first[:12] == bytes.fromhex("8080ffffffffff6001020304")
    assert len(first) == 172
    writer.advance(160)
    second = writer.pack(b"\xff" * 160)
    assert second[:12] == bytes.fromhex("800000000000000001020304")
    writer.advance(160)
    event = writer.pack_with(b"\x01\x0a\x00\xa0", payload_type=101, marker=True, timestamp=5)
    assert event == bytes.fromhex("80e50001000000050102030401" + "0a00a0")
    parsed = RtpPacket.parse(second)
    assert (parsed.sequence_number, parsed.timestamp, parsed.marker) == (0, 0, False)


def test_header_writer_random_uses_injected_rng() -> None:
    a = RtpHeaderWriter.random(random.Random(42), 8)
    b = RtpHeaderWriter.random(random.Random(42), 8)
    assert (a.ssrc, a.sequence_number, a.timestamp) == (b.ssrc, b.sequence_number, b.timestamp)
    assert a.payload_type == 8


def test_rtcp_models_serialise_as_rfc_layout() -> None:
    block = ReportBlock(
        ssrc=1, fraction_lost=64, cumulative_lost=-3, highest_sequence=0x10010, jitter=32
    )
    rr = ReceiverReport(ssrc=2, reports=(block,))
    data = bytes(rr)
    assert data[:4] == bytes.fromhex("81c90007")
    assert data[12:16] == bytes.fromhex("40fffffd")  # signed 24-bit cumulative loss
    assert RtcpPacket.parse(data) == (rr,)
    sr = SenderReport(ssrc=1, ntp_timestamp=2**63, rtp_timestamp=5, packet_count=1, octet_count=160)
    sdes = SourceDescription(chunks=(SdesChunk(ssrc=1, items=((1, b"abc"),)),))
    bye = Bye(sources=(1, 2))
    compound = RtcpPacket.compound((sr, sdes, bye))
    assert RtcpPacket.parse(compound) == (sr, sdes, bye)
    # SDES chunk: 4 (ssrc) + 2 + 3 + null = 10 -> padded to 12 (§6.5)
    assert bytes(sdes) == bytes.fromhex("81ca0003000000010103616263000000")


def test_rtcp_unknown_type_kept_raw() -> None:
    (app,) = RtcpPacket.parse(_row("rtcp_unknown_app"))
    assert isinstance(app, RtcpUnknown) and app.packet_type == 204 and app.body[4:8] == b"ABCD"


@pytest.mark.parametrize(
    "hexdata",
    [
        "80c9",  # short
        "01c9000100000002",  # version 0
        "80c9000500000002",  # length overruns
        "81c9000100000002",  # report block count overruns
        "81ca000100000001",  # SDES not terminated
        "81cb00010000000105",  # wrong length: trailing junk
        "a0c900010000000200000000",  # padding count 0 (length 1 => last byte 0)
    ],
)
def test_malformed_rtcp(hexdata: str) -> None:
    with pytest.raises(RtcpParseError):
        RtcpPacket.parse(bytes.fromhex(hexdata))


def test_rtcp_padding_on_last_packet_is_stripped() -> None:
    body = struct.pack("!I", 2) + b"\x00\x00\x00\x04"
    data = bytes.fromhex("a0c90002") + body[:4] + b"\x00\x00\x00\x04"
    (rr,) = RtcpPacket.parse(data)
    assert rr == ReceiverReport(ssrc=2)
