"""Walk a call through the flows without SIP, for ``switchhook simulate``.

The simulator plays the runtime: it answers at once, every prompt finishes instantly, the
scripted digits are fed one by one whenever the flow waits for input, and once they run out
the waiting timer fires (the no-input path). It prints each node, prompt, variable, menu
choice and the outcome, so an admin can try an edit before it goes live.
"""

from __future__ import annotations

import argparse
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import NoReturn

from ivr.yamlloc import ConfigError

from .actions import (
    Action,
    Answer,
    CallAnswered,
    CancelTimer,
    DigitReceived,
    Event,
    FilePrompt,
    FlowWarning,
    Hangup,
    LanguageSet,
    MenuChosen,
    NodeEntered,
    PlayPrompt,
    PromptFinished,
    PromptItem,
    SilencePrompt,
    StartTask,
    StartTimer,
    StopPrompt,
    TaskFinished,
    TimerExpired,
    TonePrompt,
    TtsPrompt,
    VariableSet,
)
from .interpreter import CallContext, FlowSession
from .loader import FlowSet, load_flow_set
from .model import DTMF_DIGITS, RoutesConfig
from .profile import ProfileConfig, headers_from_pairs, parse_profile

__all__ = [
    "MAX_SIMULATED_EVENTS",
    "add_simulate_arguments",
    "main_simulate",
    "run_simulate",
    "simulate",
]

MAX_SIMULATED_EVENTS = 10_000
DEFAULT_TASK_RESULTS = {
    "hours": "open",
    "queue": "bridged",
    "deflect": "done",
    "voicemail": "done",
    "transfer": "done",
}


def simulate(
    flow_set: FlowSet,
    *,
    number: str,
    trunk: str | None = None,
    caller: str = "anonymous",
    digits: Iterable[str] = (),
    headers: Mapping[str, Sequence[str]] | None = None,
    lang: str | None = None,
    task_results: Mapping[str, str] | None = None,
) -> list[str]:
    """Run one simulated call; returns the lines describing it.

    Engine-side tasks (queue, hours, deflect, voicemail, transfer) are not run: each
    finishes at once with ``task_results[kind]`` (default: ``DEFAULT_TASK_RESULTS``).

    ``digits`` are keys to press, in order; an entry may hold several keys (``"1234#"``).
    ``headers`` are the initial INVITE's (name -> values).
    """
    header_map = dict(headers or {})
    profile, warnings = parse_profile(header_map, flow_set.profile)
    flow_id = flow_set.route(trunk, number)
    lines = [f"route: trunk {trunk or '-'} number {number} -> flow {flow_id}"]
    lines += [f"profile warning: {w}" for w in warnings]
    flags = [
        name for name in ("verified_customer", "bad_actor", "repeat_customer") if profile.get(name)
    ]
    extra = [f"{k}={v}" for k, v in sorted(profile.extra.items())]
    if flags or extra:
        lines.append("profile: " + ", ".join(flags + extra))
    if flow_id not in flow_set.flows:
        lines.append(f"simulation error: no flow {flow_id!r} (check the routes)")
        return lines
    keys = deque(key for entry in digits for key in entry.strip())
    context = CallContext(
        caller=caller,
        called=number,
        trunk=trunk,
        headers=header_map,
        profile=profile,
        language=lang,
    )
    session = FlowSession(flow_set, context, flow_id=flow_id)
    actions = session.start()
    results = {**DEFAULT_TASK_RESULTS, **(task_results or {})}
    answer_pending = playing = timer = task = None
    for _ in range(MAX_SIMULATED_EVENTS):
        for action in actions:
            lines.extend(_describe(action))
            if isinstance(action, Answer):
                answer_pending = action
            elif isinstance(action, PlayPrompt):
                playing = action.play_id
            elif isinstance(action, StopPrompt) and action.play_id == playing:
                playing = None
            elif isinstance(action, StartTimer):
                timer = (action.timer_id, action.seconds)
            elif isinstance(action, StartTask):
                task = action
            elif isinstance(action, CancelTimer) and timer and action.timer_id == timer[0]:
                timer = None
        if session.outcome is not None:
            break
        event: Event
        if answer_pending is not None:
            answer_pending = None
            event = CallAnswered()
        elif playing is not None:
            event, playing = PromptFinished(play_id=playing), None
        elif task is not None:
            result = results.get(task.kind, "done")
            lines.append(f"  task {task.kind} finished: {result} (simulated)")
            event, task = TaskFinished(task_id=task.task_id, result=result), None
        elif timer is not None:
            if keys:
                key = keys.popleft()
                lines.append(f"  caller presses {key}")
                event = DigitReceived(digit=key)
                if key not in DTMF_DIGITS:
                    lines.append(f"  (ignored: {key!r} is not a DTMF key)")
            else:
                lines.append(f"  no input for {_seconds(timer[1])}")
                event = TimerExpired(timer_id=timer[0])
                timer = None
        else:
            lines.append("simulation stuck: the flow waits for nothing")
            return lines
        actions = session.handle(event)
    else:
        lines.append(f"simulation stopped after {MAX_SIMULATED_EVENTS} events")
        return lines
    outcome = session.outcome
    assert outcome is not None
    how = {"hangup": "hung up", "caller_hangup": "caller hung up", "error": "error"}[outcome.kind]
    status = "BYE" if outcome.status is None else str(outcome.status)
    lines.append(
        f"outcome: {how} ({status}) in {outcome.flow_id}/{outcome.node_id}: {outcome.reason}"
    )
    lines.append(f"menu path: {outcome.menu_path or '-'}")
    if keys:
        lines.append("unused digits: " + "".join(keys))
    return lines


def _seconds(value: float) -> str:
    return f"{value:g}s"


def _describe(action: Action) -> list[str]:
    if isinstance(action, NodeEntered):
        return [f"node {action.flow_id}/{action.node_id} ({action.node_type})"]
    if isinstance(action, Answer):
        return ["  answer"]
    if isinstance(action, PlayPrompt):
        suffix = " (interruptible)" if action.interruptible else ""
        return [f"  play{suffix}: {_item(item)}" for item in action.items]
    if isinstance(action, StopPrompt):
        return ["  prompt interrupted"]
    if isinstance(action, StartTask):
        params = ", ".join(f"{k}={v}" for k, v in action.params.items() if v is not None)
        return [f"  task {action.kind}({params})"]
    if isinstance(action, StartTimer):
        return [f"  wait for input ({_seconds(action.seconds)})"]
    if isinstance(action, VariableSet):
        return [f"  set {action.name} = {action.value!r}"]
    if isinstance(action, LanguageSet):
        return [f"  language = {action.language}"]
    if isinstance(action, MenuChosen):
        return [f"  menu choice: {action.label} (path: {action.path})"]
    if isinstance(action, FlowWarning):
        return [f"  warning: {action.message}"]
    if isinstance(action, Hangup):
        status = "BYE" if action.status is None else str(action.status)
        return [f"  hangup {status}: {action.reason}"]
    return []  # CancelTimer: an implementation detail for the reader


def _item(item: PromptItem) -> str:
    if isinstance(item, TtsPrompt):
        extra = "".join(
            f", {k} {v}" for k, v in (("voice", item.voice), ("rate", item.rate)) if v is not None
        )
        return f"tts [{item.language}{extra}] {item.text!r}"
    if isinstance(item, FilePrompt):
        return f"file {os.fspath(item.path)}"
    if isinstance(item, TonePrompt):
        freqs = "+".join(f"{f:g}" for f in item.frequencies)
        return f"tone {freqs} Hz {item.ms} ms"
    if isinstance(item, SilencePrompt):
        return f"silence {item.ms} ms"
    raise TypeError(item)


# --------------------------------------------------------------------------------------------
# command line


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``simulate`` options, for the engine CLI's subcommand."""
    parser.add_argument("--number", required=True, help="dialled number")
    parser.add_argument("--trunk", help="trunk name the call comes from")
    parser.add_argument("--caller", default="anonymous", help="caller number")
    parser.add_argument(
        "--digits", default="", help="keys to press, comma-separated (e.g. 1,2 or 123456#)"
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header of the initial INVITE (repeatable)",
    )
    parser.add_argument("--lang", help="call language at start (e.g. fr)")
    parser.add_argument(
        "--task-result",
        action="append",
        default=[],
        metavar="KIND=RESULT",
        help="outcome of an engine task (e.g. hours=closed, queue=overflow); "
        "repeatable; defaults: hours=open, queue=bridged, others done",
    )


def run_simulate(args: argparse.Namespace, flow_set: FlowSet) -> tuple[int, list[str]]:
    """Run ``simulate`` from parsed arguments; returns (exit status, lines to print)."""
    pairs: list[tuple[str, str]] = []
    for header in args.header:
        name, sep, value = header.partition(":")
        if not sep or not name.strip():
            return 2, [f"--header {header!r}: expected 'Name: value'"]
        pairs.append((name.strip(), value.strip()))
    digits = [d for d in args.digits.split(",") if d.strip()]
    results: dict[str, str] = {}
    for item in getattr(args, "task_result", []):
        kind, sep, result = item.partition("=")
        if not sep or not kind.strip() or not result.strip():
            return 2, [f"--task-result {item!r}: expected KIND=RESULT"]
        results[kind.strip()] = result.strip()
    lines = simulate(
        flow_set,
        number=args.number,
        trunk=args.trunk,
        caller=args.caller,
        digits=digits,
        headers=headers_from_pairs(pairs),
        lang=args.lang,
        task_results=results,
    )
    stuck = lines[-1].startswith("simulation ")
    return (1 if stuck else 0), lines


def main_simulate(
    argv: Sequence[str],
    *,
    flows_dir: str | os.PathLike[str],
    prompts_dir: str | os.PathLike[str],
    routes: RoutesConfig | None = None,
    profile: ProfileConfig | None = None,
) -> tuple[int, list[str]]:
    """``switchhook simulate`` in one call: parse ``argv``, load the flows, simulate.

    Exit status 0 when the call reached an outcome, 1 when the flows have problems (the
    lines are the located problems) or the simulation got stuck, 2 on a usage error.
    """
    parser = _Parser(prog="switchhook simulate", add_help=False)
    add_simulate_arguments(parser)
    try:
        args = parser.parse_args(list(argv))
    except _UsageError as exc:
        return 2, [f"switchhook simulate: {exc}"]
    try:
        flow_set = load_flow_set(flows_dir, prompts_dir=prompts_dir, routes=routes, profile=profile)
    except ConfigError as exc:
        return 1, [str(problem) for problem in exc.problems]
    return run_simulate(args, flow_set)
