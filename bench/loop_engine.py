"""Bench-only engine entry point: the real Engine with a looping-prompt behaviour.

The concurrency benchmark needs every call to keep playing until the caller hangs up. The
built-in default behaviour plays its welcome once and then waits silently for a digit, and
``Call.play`` has no loop option, so this module starts the engine exactly like
``switchhook run`` (ivr/cli.py) but passes ``behaviour=looping_welcome``, which plays the
configured welcome TTS in a loop on the call's RTP endpoint until the call ends.

Usage: python bench/loop_engine.py --config bench/out/.../switchhook.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.config import load_settings  # noqa: E402
from ivr.engine import Call, Engine  # noqa: E402
from ivr.logs import configure_logging, get_logger  # noqa: E402
from media.aio.loop import install_best_event_loop_policy  # noqa: E402


async def looping_welcome(call: Call) -> None:
    """Loop the welcome prompt until the caller hangs up (no digit collection, no timeout)."""
    # Behaviours answer the call themselves once Call.answer exists (the engine's default
    # behaviour does); older engines answered before running the behaviour.
    answer = getattr(call, "answer", None)
    if answer is not None and not await answer():
        return
    prompt = await call.engine.tts(call.engine.settings.default_call.welcome_text)
    if call.rtp is None:
        return
    call.rtp.play(prompt, loop=True)
    await call.ended.wait()


async def _serve(config: str) -> None:
    settings = load_settings(Path(config))
    engine = Engine(settings, behaviour=looping_welcome)
    await engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    get_logger("switchhook").info("ready", behaviour="bench.looping_welcome")
    await stop.wait()
    await engine.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    settings = load_settings(Path(args.config))
    configure_logging(settings.logging.level, settings.logging.format, settings.logging.file)
    install_best_event_loop_policy()
    asyncio.run(_serve(args.config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
