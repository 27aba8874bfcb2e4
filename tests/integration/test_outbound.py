"""Outbound legs (B2BUA side): the engine places calls to SIPp acting as the far end."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from ivr.call import CallState, OriginateFailed
from ivr.engine import Engine
from ivr.loading import load_all
from media.prompts import tone

from .conftest import SCENARIOS, free_port, require_peer, sipp_media_port, write_config

pytestmark = pytest.mark.integration


def sipp_uas(tmp_path: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    sipp = require_peer("sipp")
    return subprocess.Popen(
        [
            sipp,
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            "1",
            "-nostdin",
            "-trace_msg",
            "-message_file",
            str(tmp_path / "uas.log"),
            "-timeout",
            "30s",
            "-timeout_error",
            "-mi",
            "127.0.0.1",
            "-mp",
            str(sipp_media_port()),
            *args,
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def with_engine(tmp_path: Path, body):  # type: ignore[no-untyped-def]
    config_path, _ = write_config(tmp_path, free_port())
    loaded = load_all(config_path)
    engine = Engine(loaded.settings, flows=loaded.flows)
    await engine.start()
    try:
        return await body(engine)
    finally:
        await engine.shutdown()


def test_originate_answered_rtp_both_ways_and_bye(tmp_path: Path) -> None:
    port = free_port()
    uas = sipp_uas(tmp_path, port, "-sn", "uas", "-rtp_echo")

    async def body(engine: Engine) -> dict[str, int]:
        await asyncio.sleep(0.3)  # let SIPp bind
        leg = await engine.originate(
            request_uri=f"sip:+15550002222@127.0.0.1:{port}",
            to_uri="<sip:+15550002222@127.0.0.1>",
            from_uri="<sip:+15550001111@127.0.0.1>",
            destination=("127.0.0.1", port),
            timeout=10,
        )
        assert leg.state is CallState.ANSWERED
        assert leg.negotiated is not None and leg.negotiated.codec in ("PCMU", "PCMA")
        await leg.play(tone((440.0,), 1000))
        await asyncio.sleep(0.3)
        assert leg.rtp is not None
        stats = leg.rtp.stats.as_dict()
        leg.hangup("test done")
        await asyncio.sleep(0.5)
        return stats

    stats = asyncio.run(with_engine(tmp_path, body))
    assert uas.wait(timeout=20) == 0, uas.stderr.read() if uas.stderr else ""
    assert stats["packets_sent"] >= 45
    assert stats["packets_received"] >= 40, "SIPp echoed our RTP back"
    log = (tmp_path / "uas.log").read_text()
    assert "BYE sip:" in log


def test_originate_busy_raises_with_the_status(tmp_path: Path) -> None:
    port = free_port()
    uas = sipp_uas(tmp_path, port, "-sf", str(SCENARIOS / "uas_reject.xml"))

    async def body(engine: Engine) -> int:
        await asyncio.sleep(0.3)
        with pytest.raises(OriginateFailed) as failed:
            await engine.originate(
                request_uri=f"sip:busy@127.0.0.1:{port}",
                to_uri="<sip:busy@127.0.0.1>",
                from_uri="<sip:ivr@127.0.0.1>",
                destination=("127.0.0.1", port),
                timeout=10,
            )
        assert not engine.outbound, "the failed leg and its media port are released"
        return failed.value.status_code

    assert asyncio.run(with_engine(tmp_path, body)) == 486
    assert uas.wait(timeout=20) == 0


def test_originate_unanswered_times_out_with_cancel(tmp_path: Path) -> None:
    port = free_port()
    uas = sipp_uas(tmp_path, port, "-sf", str(SCENARIOS / "uas_ring_forever.xml"))

    async def body(engine: Engine) -> int:
        await asyncio.sleep(0.3)
        with pytest.raises(OriginateFailed) as failed:
            await engine.originate(
                request_uri=f"sip:nobody@127.0.0.1:{port}",
                to_uri="<sip:nobody@127.0.0.1>",
                from_uri="<sip:ivr@127.0.0.1>",
                destination=("127.0.0.1", port),
                timeout=1.5,
            )
        await asyncio.sleep(0.5)
        return failed.value.status_code

    assert asyncio.run(with_engine(tmp_path, body)) == 408
    assert uas.wait(timeout=20) == 0, "SIPp saw CANCEL, answered 200 and 487, got the ACK"
