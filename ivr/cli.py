"""``switchhook`` command line: run the engine, check configuration."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from media.aio.loop import install_best_event_loop_policy

from .config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings
from .logs import configure_logging, get_logger


def _config_path(value: str | None) -> Path:
    return Path(value) if value else Path(DEFAULT_CONFIG_PATH)


def cmd_check(args: argparse.Namespace) -> int:
    path = _config_path(args.config)
    try:
        load_settings(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201 - CLI output
        count = len(exc.problems)
        print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)  # noqa: T201
        return 1
    print(f"{path}: OK")  # noqa: T201
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    path = _config_path(args.config)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)  # noqa: T201
        return 1
    configure_logging(settings.logging.level, settings.logging.format,
                      settings.logging.file)
    loop_name = install_best_event_loop_policy()
    log = get_logger("switchhook")
    log.info("starting", config=str(path), event_loop=loop_name)
    try:
        asyncio.run(_serve(settings))
    except OSError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    return 0


async def _serve(settings: Settings) -> None:
    from .engine import Engine

    engine = Engine(settings)
    await engine.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    get_logger("switchhook").info("ready", listening=[f"{t}:{h}:{p}"
                                                      for t, h, p in engine.listening])
    await stop.wait()
    await engine.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switchhook",
                                     description="SIP call-control engine with YAML IVR")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="start the engine")
    run.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate the configuration and report every problem")
    check.add_argument("--config", help=f"config file (default {DEFAULT_CONFIG_PATH})")
    check.set_defaults(func=cmd_check)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
