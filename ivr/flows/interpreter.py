"""The flow interpreter: a sans-IO session per call, events in, actions out.

``FlowSession(flow_set, context).start()`` returns the first actions; the runtime executes
them and feeds back what happened (:class:`~ivr.flows.actions.CallAnswered`,
``PromptFinished``, ``DigitReceived``, ``TimerExpired``, ``CallerHungUp``) through
:meth:`FlowSession.handle`, which returns the next actions. The session never reads a clock,
never sleeps and never touches the network: timers are actions, and their expiry is an event.
Node behaviour lives with each node type (``ivr/flows/nodes/``); this module is the
:class:`~ivr.flows.model.Runtime` those behaviours act on.
"""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from .actions import (
    Action,
    Answer,
    CallAnswered,
    CallerHungUp,
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
from .expressions import EvaluationError, Expression, HeaderView, parse_template
from .loader import Flow, FlowSet
from .model import (
    DTMF_DIGITS,
    Activity,
    FileItem,
    PromptVariants,
    SilenceItem,
    ToneItem,
    TtsItem,
    select_variant,
)
from .nodes.hangup import DEFAULT_REJECT_STATUS
from .profile import CallerProfile

__all__ = [
    "DEFAULT_LANGUAGE",
    "MAX_BUFFERED_DIGITS",
    "MAX_STEPS_PER_EVENT",
    "MAX_SUBFLOW_DEPTH",
    "CallContext",
    "FlowSession",
    "Outcome",
]

DEFAULT_LANGUAGE = "en"
MAX_STEPS_PER_EVENT = 200
"""Nodes entered while handling one event before the session gives up (runaway guard; the
loader's loop check should make this unreachable)."""
MAX_SUBFLOW_DEPTH = 16
MAX_BUFFERED_DIGITS = 32
"""Type-ahead keys kept; older ones are dropped beyond this."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """What the runtime knows about the call when the flow starts.

    ``headers`` are the initial INVITE's (name -> values, any case); ``profile`` comes from
    :func:`ivr.flows.profile.parse_profile`; ``language`` overrides the flow's default;
    ``now`` is reserved for business hours (time is always injected, never read).
    """

    caller: str
    called: str
    trunk: str | None = None
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    profile: CallerProfile = field(default_factory=CallerProfile)
    language: str | None = None
    now: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """How the call ended: ``hangup`` by the flow, ``caller_hangup``, or ``error`` (a runtime
    guard hung up)."""

    kind: Literal["hangup", "caller_hangup", "error"]
    status: int | None
    reason: str
    flow_id: str
    node_id: str
    menu_path: str


@dataclass(frozen=True, slots=True)
class _Frame:
    flow_id: str
    return_to: str | None


class FlowSession:
    """One call's walk through a :class:`FlowSet` (keep the set it started with)."""

    def __init__(
        self, flow_set: FlowSet, context: CallContext, *, flow_id: str | None = None
    ) -> None:
        self._set = flow_set
        self._context = context
        start_flow = (
            flow_id if flow_id is not None else flow_set.route(context.trunk, context.called)
        )
        if start_flow not in flow_set.flows:
            raise KeyError(f"no flow {start_flow!r} in the flow set")
        flow = flow_set.flow(start_flow)
        self._flow_id = start_flow
        self._node_id = flow.entry
        self._language = context.language or flow.language or DEFAULT_LANGUAGE
        self._variables: dict[str, Any] = dict(flow.variables)
        self._headers = HeaderView({k: tuple(v) for k, v in context.headers.items()})
        self._profile = context.profile.as_namespace(flow_set.profile.fields)
        self._frames: list[_Frame] = []
        self._menu_path: list[str] = []
        self._digits: deque[str] = deque(maxlen=MAX_BUFFERED_DIGITS)
        self._actions: list[Action] = []
        self._activity: Activity | None = None
        self._pending: tuple[str, str | None, bool] | None = None
        self._awaiting_answer: tuple[str, str] | None = None
        self._answer_sent = False
        self._answered = False
        self._playing: str | None = None
        self._timer: str | None = None
        self._task: str | None = None
        self._counter = 0
        self._started = False
        self._outcome: Outcome | None = None

    # ---- public API ---------------------------------------------------------------------------

    @property
    def flow_id(self) -> str:
        """The flow of the current node."""
        return self._flow_id

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def answered(self) -> bool:
        return self._answered

    @property
    def language(self) -> str:
        return self._language

    @property
    def variables(self) -> Mapping[str, Any]:
        return types.MappingProxyType(dict(self._variables))

    @property
    def menu_path(self) -> str:
        """The labels of the menu choices so far, ``Support > Billing``."""
        return " > ".join(self._menu_path)

    @property
    def menu_labels(self) -> tuple[str, ...]:
        return tuple(self._menu_path)

    @property
    def outcome(self) -> Outcome | None:
        """None while the call runs."""
        return self._outcome

    def start(self) -> list[Action]:
        """Enter the flow's entry node; call once."""
        if self._started:
            raise RuntimeError("FlowSession.start() called twice")
        self._started = True
        self._pending = (self._flow_id, self._set.flow(self._flow_id).entry, False)
        return self._drive()

    def handle(self, event: Event) -> list[Action]:
        """Feed one event; returns the actions it leads to (none once the call is over)."""
        if not self._started:
            raise RuntimeError("FlowSession.handle() before start()")
        if self._outcome is not None:
            return []
        if isinstance(event, CallAnswered):
            self._answered = True
            if self._awaiting_answer is not None:
                flow_id, node_id = self._awaiting_answer
                self._awaiting_answer = None
                self._pending = (flow_id, node_id, True)
        elif isinstance(event, PromptFinished):
            if event.play_id == self._playing:
                self._playing = None
                if self._activity is not None:
                    self._activity.prompt_finished(self, event.play_id)
        elif isinstance(event, DigitReceived):
            digit = event.digit.upper()
            if len(digit) == 1 and digit in DTMF_DIGITS:
                if self._activity is not None:
                    self._activity.digit(self, digit)
                else:
                    self._digits.append(digit)
        elif isinstance(event, TimerExpired):
            if event.timer_id == self._timer:
                self._timer = None
                if self._activity is not None:
                    self._activity.timer_expired(self, event.timer_id)
        elif isinstance(event, TaskFinished):
            if event.task_id == self._task:
                self._task = None
                for name, value in event.data.items():
                    if isinstance(name, str) and name.isidentifier():
                        self.set_variable(name, value)
                finished = getattr(self._activity, "task_finished", None)
                if finished is not None:
                    finished(self, event.task_id, event.result)
        elif isinstance(event, CallerHungUp):
            if self._timer is not None:
                self._emit(CancelTimer(timer_id=self._timer))
                self._timer = None
            self._finish("caller_hangup", None, "caller hung up")
        return self._drive()

    # ---- the walk -----------------------------------------------------------------------------

    def _drive(self) -> list[Action]:
        steps = 0
        while self._pending is not None and self._outcome is None:
            flow_id, node_id, announced = self._pending
            self._pending = None
            if node_id is None:
                self._end_of_flow()
                continue
            steps += 1
            if steps > MAX_STEPS_PER_EVENT:
                self._warn(
                    f"more than {MAX_STEPS_PER_EVENT} nodes without waiting for the "
                    "caller; hanging up"
                )
                self._hangup_now("flow step limit exceeded", kind="error")
                break
            node = self._set.flow(flow_id).nodes[node_id]
            self._flow_id, self._node_id = flow_id, node_id
            if not announced:
                self._emit(NodeEntered(node_id=node_id, flow_id=flow_id, node_type=node.NODE_TYPE))
            if node.NEEDS_MEDIA and not self._answered:
                if not self._answer_sent:
                    self._answer_sent = True
                    self._emit(Answer(ring_seconds=float(getattr(node, "ring_seconds", 0.0))))
                self._awaiting_answer = (flow_id, node_id)
                break
            activity = node.enter(self)
            if self._pending is None and self._outcome is None:
                self._activity = activity
        actions, self._actions = self._actions, []
        return actions

    def _end_of_flow(self) -> None:
        if self._frames:
            frame = self._frames.pop()
            self._pending = (frame.flow_id, frame.return_to, False)
            self._flow_id = frame.flow_id
            return
        self._hangup_now("end of flow")

    def _hangup_now(self, reason: str, kind: Literal["hangup", "error"] = "hangup") -> None:
        status = None if self._answered else DEFAULT_REJECT_STATUS
        self.hangup(status, reason)
        if kind == "error" and self._outcome is not None:
            self._outcome = Outcome(
                kind="error",
                status=status,
                reason=reason,
                flow_id=self._flow_id,
                node_id=self._node_id,
                menu_path=self.menu_path,
            )

    def _finish(
        self, kind: Literal["hangup", "caller_hangup", "error"], status: int | None, reason: str
    ) -> None:
        self._activity = None
        self._pending = None
        self._outcome = Outcome(
            kind=kind,
            status=status,
            reason=reason,
            flow_id=self._flow_id,
            node_id=self._node_id,
            menu_path=self.menu_path,
        )

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _warn(self, message: str) -> None:
        self._emit(FlowWarning(flow_id=self._flow_id, node_id=self._node_id, message=message))

    def _next_id(self, prefix: str) -> str:
        self._counter += 1
        return f"{prefix}{self._counter}"

    def _flow(self) -> Flow:
        return self._set.flow(self._flow_id)

    def _scope(self) -> dict[str, Any]:
        return {
            **self._variables,
            "caller": self._context.caller,
            "called": self._context.called,
            "trunk": self._context.trunk or "",
            "language": self._language,
            "headers": self._headers,
            "profile": self._profile,
        }

    # ---- Runtime (what node behaviours call) ------------------------------------------------

    def go(self, target: str | None) -> None:
        # Leaving a node: nothing of it may keep running.
        if self._timer is not None:
            self._emit(CancelTimer(timer_id=self._timer))
            self._timer = None
        if self._playing is not None:
            self._emit(StopPrompt(play_id=self._playing))
            self._playing = None
        self._activity = None
        self._pending = (self._flow_id, target, False)

    def play(self, *prompts: PromptVariants, interruptible: bool) -> str:
        flow = self._flow()
        scope = self._scope()
        items: list[PromptItem] = []
        for variants in prompts:
            written_for, chosen = select_variant(variants, self._language, flow.language)
            language = written_for or self._language
            for item in chosen:
                items.append(self._resolve(item, language, scope))
        play_id = self._next_id("p")
        self._playing = play_id
        self._emit(PlayPrompt(play_id=play_id, items=tuple(items), interruptible=interruptible))
        return play_id

    def _resolve(self, item: Any, language: str, scope: Mapping[str, Any]) -> PromptItem:
        if isinstance(item, TtsItem):
            return TtsPrompt(
                text=parse_template(item.tts).render(scope),
                language=item.language or language,
                voice=item.voice,
                rate=item.rate,
            )
        if isinstance(item, FileItem):
            return FilePrompt(path=self._set.prompts_dir / item.file)
        if isinstance(item, ToneItem):
            return TonePrompt(frequencies=item.tone, ms=item.ms)
        if isinstance(item, SilenceItem):
            return SilencePrompt(ms=item.silence_ms)
        raise TypeError(f"unknown prompt item {item!r}")

    def stop_prompt(self, play_id: str) -> None:
        if play_id == self._playing:
            self._playing = None
            self._emit(StopPrompt(play_id=play_id))

    def start_task(self, kind: str, params: Mapping[str, Any]) -> str:
        """Hand the call to an engine-side task; its TaskFinished resumes the node."""
        task_id = self._next_id("k")
        self._task = task_id
        self._emit(
            StartTask(
                task_id=task_id,
                kind=kind,
                params=dict(params),
                variables=dict(self._variables),
                menu_path=self.menu_path,
                language=self._language,
            )
        )
        return task_id

    def start_timer(self, seconds: float) -> str:
        if self._timer is not None:
            self._emit(CancelTimer(timer_id=self._timer))
        timer_id = self._next_id("t")
        self._timer = timer_id
        self._emit(StartTimer(timer_id=timer_id, seconds=seconds))
        return timer_id

    def cancel_timer(self, timer_id: str) -> None:
        if timer_id == self._timer:
            self._timer = None
            self._emit(CancelTimer(timer_id=timer_id))

    def take_digit(self) -> str | None:
        return self._digits.popleft() if self._digits else None

    def buffer_digit(self, digit: str) -> None:
        self._digits.append(digit)

    def evaluate(self, expression: Expression, field: str) -> tuple[bool, Any]:
        try:
            return True, expression.evaluate(self._scope())
        except EvaluationError as exc:
            self._warn(f"{field}: expression {expression.text!r} failed: {exc}")
            return False, None

    def set_variable(self, name: str, value: Any) -> None:
        self._variables[name] = value
        self._emit(VariableSet(name=name, value=value))

    def set_language(self, language: str) -> None:
        self._language = language
        self._emit(LanguageSet(language=language))

    def choose(self, label: str | None, target: str) -> None:
        if label is None:
            node = self._flow().nodes.get(target)
            label = node.label if node is not None and node.label else target
        self._menu_path.append(label)
        self._emit(MenuChosen(label=label, path=self.menu_path))

    def call_subflow(self, flow_id: str, return_to: str | None) -> None:
        if len(self._frames) >= MAX_SUBFLOW_DEPTH:
            self._warn(f"subflows nested deeper than {MAX_SUBFLOW_DEPTH}; hanging up")
            self._hangup_now("subflow depth limit exceeded", kind="error")
            return
        flow = self._set.flow(flow_id)
        for name, value in flow.variables.items():
            self._variables.setdefault(name, value)
        self._frames.append(_Frame(self._flow_id, return_to))
        self._activity = None
        self._pending = (flow_id, flow.entry, False)

    def hangup(self, status: int | None, reason: str) -> None:
        if self._timer is not None:
            self._emit(CancelTimer(timer_id=self._timer))
            self._timer = None
        if self._playing is not None:
            self._emit(StopPrompt(play_id=self._playing))
            self._playing = None
        self._emit(Hangup(status=None if self._answered else status, reason=reason))
        self._finish("hangup", None if self._answered else status, reason)
