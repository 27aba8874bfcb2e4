"""``switchhook`` command line: run the engine, check configuration, simulate, hours."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
from pathlib import Path

from media.aio.loop import install_best_event_loop_policy

from .config import DEFAULT_CONFIG_PATH, ConfigError, load_settings
from .logs import configure_logging, get_logger


def _config_path(value: str | None) -> Path:
    return Path(value) if value else Path(DEFAULT_CONFIG_PATH)


def _print_problems(exc: ConfigError) -> None:
    print(str(exc), file=sys.stderr)
    count = len(exc.problems)
    print(f"{count} problem{'s' if count != 1 else ''} found", file=sys.stderr)


def cmd_check(args: argparse.Namespace) -> int:
    """Validate the config, every flow and their cross references at once."""
    from .loading import load_all

    path = _config_path(args.config)
    try:
        loaded = load_all(path)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    print(f"{path}: OK ({len(loaded.flows.flows)} flows: {', '.join(sorted(loaded.flows.flows))})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .loading import load_all

    path = _config_path(args.config)
    try:
        loaded = load_all(path)
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    settings = loaded.settings
    configure_logging(settings.logging.level, settings.logging.format, settings.logging.file)
    loop_name = install_best_event_loop_policy()
    log = get_logger("switchhook")
    log.info("starting", config=str(path), event_loop=loop_name, flows=sorted(loaded.flows.flows))
    wall_clock = None
    if args.clock:
        from .hours import parse_clock

        try:
            wall_clock = parse_clock(args.clock)
        except ValueError as exc:
            print(f"--clock: {exc}", file=sys.stderr)
            return 2
        log.warning("TEST ONLY: wall clock overridden", clock=args.clock)
    try:
        asyncio.run(_serve(loaded, path, wall_clock))
    except OSError as exc:
        log.error("cannot start", error=str(exc))
        return 1
    return 0


async def _serve(loaded: object, path: Path, wall_clock: object = None) -> None:
    from .engine import Engine
    from .loading import Loaded

    assert isinstance(loaded, Loaded)
    engine = Engine(loaded.settings, flows=loaded.flows, config_path=path, wall_clock=wall_clock)  # type: ignore[arg-type]
    await engine.start()
    # Everything allocated so far lives as long as the process: keep it out of the
    # collector's generations so full collections only walk per-call objects.
    gc.collect()
    gc.freeze()
    thresholds = loaded.settings.gc_thresholds
    override = os.environ.get("SWITCHHOOK_GC_THRESHOLD")  # bench knob: "a,b,c"
    if override:
        thresholds = tuple(int(x) for x in override.split(","))  # type: ignore[assignment]
    gc.set_threshold(*thresholds)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, engine.reload)
    get_logger("switchhook").info(
        "ready", listening=[f"{t}:{h}:{p}" for t, h, p in engine.listening]
    )
    await stop.wait()
    await engine.shutdown()


def cmd_simulate(args: argparse.Namespace) -> int:
    """Walk a call through the flows without SIP and print what happens."""
    from .flows.simulate import run_simulate
    from .loading import load_all

    try:
        loaded = load_all(_config_path(args.config))
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    code, lines = run_simulate(args, loaded.flows)
    for line in lines:
        print(line)
    return code


def cmd_hours(args: argparse.Namespace) -> int:
    """Print open/closed windows, or the decision and its rule at one instant."""
    from .hours import SystemClock, parse_clock, run_hours_command

    try:
        settings = load_settings(_config_path(args.config))
    except ConfigError as exc:
        _print_problems(exc)
        return 1
    if settings.hours is None:
        print("no business hours configured (section 'hours'): always open", file=sys.stderr)
        return 1
    try:
        clock = parse_clock(args.clock) if args.clock else SystemClock()
    except ValueError as exc:
        print(f"--clock: {exc}", file=sys.stderr)
        return 2
    code, lines = run_hours_command(
        settings.hours,
        now=clock.now(),
        queue=args.queue,
        language=args.lang,
        channel=args.channel,
        from_date=args.from_date,
        days=args.days,
        at=args.at,
        known_queues=[q.name for q in settings.acd.queues],
    )
    for line in lines:
        print(line)
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="switchhook", description="SIP call-control engine with YAML IVR"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    config_help = f"config file (default {DEFAULT_CONFIG_PATH})"

    run = sub.add_parser("run", help="start the engine")
    run.add_argument("--config", help=config_help)
    run.add_argument(
        "--clock",
        help="TEST ONLY: run business hours on a fixed instant "
        "(2026-12-25T10:00:00+01:00) or an offset (+3d4h)",
    )
    run.set_defaults(func=cmd_run)

    check = sub.add_parser("check", help="validate config and flows; report every problem")
    check.add_argument("--config", help=config_help)
    check.set_defaults(func=cmd_check)

    from .flows.simulate import add_simulate_arguments

    simulate = sub.add_parser("simulate", help="walk a call through the flows without SIP")
    simulate.add_argument("--config", help=config_help)
    add_simulate_arguments(simulate)
    simulate.set_defaults(func=cmd_simulate)

    hours = sub.add_parser("hours", help="business hours: windows, or open/closed at a time")
    hours.add_argument("--config", help=config_help)
    hours.add_argument("--queue")
    hours.add_argument("--lang")
    hours.add_argument("--channel", default="voice")
    hours.add_argument("--from", dest="from_date", metavar="DATE")
    hours.add_argument("--days", type=int, default=7)
    hours.add_argument("--at", metavar="TIME", help="e.g. 2026-12-24T17:30 (calendar's zone)")
    hours.add_argument(
        "--clock",
        help="TEST ONLY: evaluate 'now' as this instant "
        "(2026-12-25T10:00:00+01:00) or offset (+3d4h)",
    )
    hours.set_defaults(func=cmd_hours)

    from .admin.client import add_commands as add_admin_commands

    add_admin_commands(sub, config_help)  # calls, agents, monitor, end-call, hash-secret

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
