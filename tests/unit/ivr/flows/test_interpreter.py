"""The sans-IO interpreter: events in, exact actions out."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.flows import (
    Answer,
    CallAnswered,
    CallContext,
    CallerHungUp,
    CancelTimer,
    DigitReceived,
    FilePrompt,
    FlowSession,
    FlowSet,
    FlowWarning,
    Hangup,
    LanguageSet,
    MenuChosen,
    NodeEntered,
    PlayPrompt,
    PromptFinished,
    StartTimer,
    StopPrompt,
    TimerExpired,
    TtsPrompt,
    VariableSet,
    load_flow_set,
)
from ivr.flows.interpreter import MAX_STEPS_PER_EVENT
from ivr.flows.profile import parse_profile


def _flows(tmp_path: Path, **files: str) -> FlowSet:
    for name, text in files.items():
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    (tmp_path / "beep.wav").write_bytes(b"RIFF")
    return load_flow_set(tmp_path, prompts_dir=tmp_path)


def _session(flow_set: FlowSet, flow: str = "main", **context: object) -> FlowSession:
    values: dict[str, object] = {"caller": "+33612345678", "called": "100"}
    values.update(context)
    return FlowSession(flow_set, CallContext(**values), flow_id=flow)  # type: ignore[arg-type]


def _enter(node: str, node_type: str, flow: str = "main") -> NodeEntered:
    return NodeEntered(node_id=node, flow_id=flow, node_type=node_type)


def _tts(text: str, language: str = "en") -> TtsPrompt:
    return TtsPrompt(text=text, language=language)


def _play(
    play_id: str, *texts: str, interruptible: bool = True, language: str = "en"
) -> PlayPrompt:
    return PlayPrompt(
        play_id=play_id, items=tuple(_tts(t, language) for t in texts), interruptible=interruptible
    )


def _digits(session: FlowSession, keys: str) -> list[object]:
    actions: list[object] = []
    for key in keys:
        actions += session.handle(DigitReceived(digit=key))
    return actions


HELLO = """
    flow: main
    entry: hello
    nodes:
      hello:
        type: play
        prompts: Hello.
        next: bye
      bye:
        type: hangup
        reason: said hello
"""


def test_play_answers_first_then_hangs_up_with_bye(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=HELLO))
    assert session.start() == [_enter("hello", "play"), Answer()]
    assert session.handle(CallAnswered()) == [_play("p1", "Hello.", interruptible=False)]
    assert session.handle(PromptFinished(play_id="p1")) == [
        _enter("bye", "hangup"),
        Hangup(status=None, reason="said hello"),
    ]
    assert session.outcome is not None
    assert (session.outcome.kind, session.outcome.status, session.outcome.reason) == (
        "hangup",
        None,
        "said hello",
    )
    assert session.handle(DigitReceived(digit="1")) == []


def test_hangup_before_answer_uses_the_status(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        main="""
        flow: main
        entry: busy
        nodes:
          busy: {type: hangup, status: 486, reason: busy}
    """,
    )
    session = _session(flows)
    assert session.start() == [_enter("busy", "hangup"), Hangup(status=486, reason="busy")]
    assert session.outcome is not None and session.outcome.status == 486
    assert not session.answered


def test_end_of_flow_before_answer_declines(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        main="""
        flow: main
        entry: mark
        nodes:
          mark: {type: set, variables: {x: 1}}
    """,
    )
    session = _session(flows)
    assert session.start() == [
        _enter("mark", "set"),
        VariableSet(name="x", value=1),
        Hangup(status=603, reason="end of flow"),
    ]


MENU = """
    flow: main
    entry: menu
    nodes:
      menu:
        type: menu
        prompts: Press 1 for support.
        options:
          "1": {next: support, label: Support}
          "2": sales
        no_input: Nothing heard.
        invalid: Wrong key.
        retries: 1
        timeout_seconds: 4
        fallback: bye
      support:
        type: menu
        prompts: Press 1 for billing.
        options:
          "1": {next: billing, label: Billing}
        fallback: bye
      sales:
        type: play
        label: Sales team
        prompts: Sales.
        next: bye
      billing:
        type: hangup
        reason: billing
      bye:
        type: hangup
        reason: fallback
"""


def test_menu_invalid_then_valid_records_the_menu_path(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=MENU))
    session.start()
    assert session.handle(CallAnswered()) == [_play("p1", "Press 1 for support.")]
    assert session.handle(PromptFinished(play_id="p1")) == [StartTimer(timer_id="t2", seconds=4.0)]
    assert _digits(session, "9") == [
        CancelTimer(timer_id="t2"),
        _play("p3", "Wrong key.", "Press 1 for support."),
    ]
    # An interruptible prompt stops on the key, and the key is the choice.
    assert _digits(session, "1") == [
        StopPrompt(play_id="p3"),
        MenuChosen(label="Support", path="Support"),
        _enter("support", "menu"),
        _play("p4", "Press 1 for billing."),
    ]
    assert _digits(session, "1") == [
        StopPrompt(play_id="p4"),
        MenuChosen(label="Billing", path="Support > Billing"),
        _enter("billing", "hangup"),
        Hangup(status=None, reason="billing"),
    ]
    assert session.menu_path == "Support > Billing"
    assert session.outcome is not None and session.outcome.menu_path == "Support > Billing"


def test_menu_label_falls_back_to_the_target_label(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=MENU))
    session.start()
    session.handle(CallAnswered())
    actions = _digits(session, "2")
    assert MenuChosen(label="Sales team", path="Sales team") in actions


def test_menu_no_input_retries_then_plays_the_message_and_falls_back(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=MENU))
    session.start()
    session.handle(CallAnswered())
    session.handle(PromptFinished(play_id="p1"))
    assert session.handle(TimerExpired(timer_id="t2")) == [
        _play("p3", "Nothing heard.", "Press 1 for support."),
    ]
    assert session.handle(PromptFinished(play_id="p3")) == [StartTimer(timer_id="t4", seconds=4.0)]
    assert session.handle(TimerExpired(timer_id="t4")) == [
        _play("p5", "Nothing heard.", interruptible=False),
    ]
    assert session.handle(PromptFinished(play_id="p5")) == [
        _enter("bye", "hangup"),
        Hangup(status=None, reason="fallback"),
    ]
    assert session.menu_path == ""


def test_stale_events_are_ignored(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=MENU))
    session.start()
    session.handle(CallAnswered())
    session.handle(PromptFinished(play_id="p1"))
    assert session.handle(PromptFinished(play_id="p1")) == []
    assert session.handle(TimerExpired(timer_id="t999")) == []
    assert session.handle(DigitReceived(digit="x")) == []  # not a DTMF key


def test_type_ahead_during_a_non_interruptible_prompt(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        main="""
        flow: main
        entry: notice
        nodes:
          notice:
            type: play
            prompts: Calls are recorded.
            next: menu
          menu:
            type: menu
            prompts: Press 1.
            options: {"1": done}
            fallback: done
          done: {type: hangup}
    """,
    )
    session = _session(flows)
    session.start()
    assert session.handle(CallAnswered()) == [
        _play("p1", "Calls are recorded.", interruptible=False)
    ]
    assert _digits(session, "1") == []  # kept, the prompt plays on
    # The menu takes the buffered key at once, without playing its prompt.
    assert session.handle(PromptFinished(play_id="p1")) == [
        _enter("menu", "menu"),
        MenuChosen(label="done", path="done"),
        _enter("done", "hangup"),
        Hangup(status=None, reason="normal clearing"),
    ]


def test_interruptible_play_stops_and_passes_the_key_on(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        main="""
        flow: main
        entry: notice
        nodes:
          notice:
            type: play
            interruptible: true
            prompts: A long message.
            next: pin
          pin:
            type: collect
            variable: pin
            prompts: Enter your PIN.
            max_length: 2
            next: done
            fallback: done
          done: {type: hangup}
    """,
    )
    session = _session(flows)
    session.start()
    session.handle(CallAnswered())
    assert _digits(session, "4") == [
        StopPrompt(play_id="p1"),
        _enter("pin", "collect"),
        StartTimer(timer_id="t2", seconds=3.0),
    ]
    assert _digits(session, "2") == [
        CancelTimer(timer_id="t2"),
        VariableSet(name="pin", value="42"),
        _enter("done", "hangup"),
        Hangup(status=None, reason="normal clearing"),
    ]


COLLECT = """
    flow: main
    entry: pin
    nodes:
      pin:
        type: collect
        variable: pin
        prompts: Enter your PIN.
        min_length: 4
        max_length: 6
        pattern: "[0-9]+"
        first_digit_timeout_seconds: 5
        inter_digit_timeout_seconds: 2
        retries: 1
        invalid: Invalid PIN.
        next: ok
        fallback: failed
      ok: {type: hangup, reason: ok}
      failed: {type: hangup, reason: failed}
"""


def _collecting(tmp_path: Path) -> FlowSession:
    session = _session(_flows(tmp_path, main=COLLECT))
    session.start()
    assert session.handle(CallAnswered()) == [_play("p1", "Enter your PIN.")]
    assert session.handle(PromptFinished(play_id="p1")) == [StartTimer(timer_id="t2", seconds=5.0)]
    return session


def test_collect_until_terminator(tmp_path: Path) -> None:
    session = _collecting(tmp_path)
    assert _digits(session, "1") == [
        CancelTimer(timer_id="t2"),
        StartTimer(timer_id="t3", seconds=2.0),
    ]
    _digits(session, "234")
    assert _digits(session, "#") == [
        CancelTimer(timer_id="t6"),
        VariableSet(name="pin", value="1234"),
        _enter("ok", "hangup"),
        Hangup(status=None, reason="ok"),
    ]
    assert session.variables["pin"] == "1234"


def test_collect_stops_at_max_length(tmp_path: Path) -> None:
    session = _collecting(tmp_path)
    actions = _digits(session, "123456")
    assert actions[-3:] == [
        VariableSet(name="pin", value="123456"),
        _enter("ok", "hangup"),
        Hangup(status=None, reason="ok"),
    ]


def test_collect_inter_digit_timeout_completes(tmp_path: Path) -> None:
    session = _collecting(tmp_path)
    _digits(session, "98765")
    assert session.handle(TimerExpired(timer_id="t7")) == [
        VariableSet(name="pin", value="98765"),
        _enter("ok", "hangup"),
        Hangup(status=None, reason="ok"),
    ]


def test_collect_too_short_or_pattern_mismatch_retries_then_falls_back(tmp_path: Path) -> None:
    session = _collecting(tmp_path)
    assert _digits(session, "12#") == [
        CancelTimer(timer_id="t2"),
        StartTimer(timer_id="t3", seconds=2.0),
        CancelTimer(timer_id="t3"),
        StartTimer(timer_id="t4", seconds=2.0),
        CancelTimer(timer_id="t4"),
        _play("p5", "Invalid PIN.", "Enter your PIN."),
    ]
    # '*' is collected but fails the pattern; the last failure plays 'invalid' then falls back.
    actions = _digits(session, "12*4#")
    assert actions[0] == StopPrompt(play_id="p5")
    assert actions[-1] == _play("p10", "Invalid PIN.", interruptible=False)
    assert session.handle(PromptFinished(play_id="p10")) == [
        _enter("failed", "hangup"),
        Hangup(status=None, reason="failed"),
    ]
    assert "pin" in session.variables and session.variables["pin"] == ""


def test_collect_first_digit_timeout_is_no_input(tmp_path: Path) -> None:
    session = _collecting(tmp_path)
    # No no_input prompt: the main prompt is replayed.
    assert session.handle(TimerExpired(timer_id="t2")) == [_play("p3", "Enter your PIN.")]
    session.handle(PromptFinished(play_id="p3"))
    assert session.handle(TimerExpired(timer_id="t4")) == [
        _enter("failed", "hangup"),
        Hangup(status=None, reason="failed"),
    ]


def test_subflow_returns_to_next_and_shares_variables(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        main="""
            flow: main
            entry: mark
            nodes:
              mark: {type: set, variables: {who: "'Ada'"}, next: greet}
              greet: {type: subflow, flow: common, next: bye}
              bye: {type: hangup, reason: back}
        """,
        common="""
            flow: common
            entry: hello
            variables: {who: nobody, extra: 1}
            nodes:
              hello: {type: play, prompts: "Hello {who}."}
        """,
    )
    session = _session(flows)
    assert session.start() == [
        _enter("mark", "set"),
        VariableSet(name="who", value="Ada"),
        _enter("greet", "subflow"),
        _enter("hello", "play", flow="common"),
        Answer(),
    ]
    assert session.handle(CallAnswered()) == [_play("p1", "Hello Ada.", interruptible=False)]
    assert session.handle(PromptFinished(play_id="p1")) == [
        _enter("bye", "hangup"),
        Hangup(status=None, reason="back"),
    ]
    assert session.variables["extra"] == 1


BRANCH = """
    flow: main
    entry: screen
    nodes:
      screen:
        type: branch
        conditions:
          - if: profile.bad_actor
            then: reject
          - if: profile.repeat_customer and startswith(caller, '+33')
            then: priority
          - if: headers['X-Queue'] == 'vip'
            then: priority
        default: normal
      reject: {type: hangup, status: 403, reason: bad actor}
      priority: {type: hangup, status: 486, reason: priority}
      normal: {type: hangup, status: 480, reason: normal}
"""


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"X-Reserved-Bad-Actor": ["true"], "X-Reserved-Repeat-Customer": ["true"]}, 403),
        ({"X-Reserved-Repeat-Customer": ["yes"]}, 486),
        ({"x-queue": ["vip"]}, 486),
        ({"X-Reserved-Bad-Actor": ["nonsense"]}, 480),
        ({}, 480),
    ],
)
def test_branch_on_profile_and_headers(
    tmp_path: Path, headers: dict[str, list[str]], status: int
) -> None:
    profile, _ = parse_profile(headers)
    session = _session(_flows(tmp_path, main=BRANCH), headers=headers, profile=profile)
    actions = session.start()
    assert isinstance(actions[-1], Hangup) and actions[-1].status == status


def test_evaluation_error_takes_the_default_and_is_reported(tmp_path: Path) -> None:
    flows = _flows(
        tmp_path,
        main="""
        flow: main
        entry: check
        variables: {amount: "12a"}
        nodes:
          check:
            type: branch
            conditions:
              - {if: int(amount) > 10, then: big}
              - {if: "true", then: big}
            default: small
          big: {type: hangup, reason: big}
          small: {type: hangup, reason: small}
    """,
    )
    session = _session(flows)
    assert session.start() == [
        _enter("check", "branch"),
        FlowWarning(
            flow_id="main",
            node_id="check",
            message="conditions[0].if: expression 'int(amount) > 10' failed: int() of "
            "'12a': not a whole number of at most 15 digits",
        ),
        _enter("small", "hangup"),
        Hangup(status=603, reason="small"),
    ]


LANGUAGES = """
    flow: main
    entry: hello
    language: en
    nodes:
      hello:
        type: play
        prompts:
          en: Hello.
          fr: Bonjour.
          default: Hi.
        next: beep
      beep:
        type: play
        prompts:
          fr: [{file: beep.wav}]
          en: English only.
        next: switch
      switch: {type: language, language: fr, next: again}
      again:
        type: play
        prompts: {en: Hello., fr: Bonjour.}
        next: bye
      bye: {type: hangup}
"""


@pytest.mark.parametrize(
    ("language", "first"),
    [
        (None, ("Hello.", "en")),
        ("fr", ("Bonjour.", "fr")),
        ("fr-CA", ("Bonjour.", "fr")),
        ("de", ("Hi.", "de")),
    ],
)
def test_prompts_follow_the_call_language(
    tmp_path: Path, language: str | None, first: tuple[str, str]
) -> None:
    session = _session(_flows(tmp_path, main=LANGUAGES), language=language)
    session.start()
    assert session.handle(CallAnswered()) == [
        PlayPrompt(play_id="p1", items=(_tts(*first),), interruptible=False)
    ]


def test_language_node_switches_prompts(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=LANGUAGES), language="de")
    session.start()
    session.handle(CallAnswered())
    # 'de' has neither a variant nor a default here: the flow's language (en) is used.
    assert session.handle(PromptFinished(play_id="p1")) == [
        _enter("beep", "play"),
        PlayPrompt(play_id="p2", items=(_tts("English only.", "en"),), interruptible=False),
    ]
    assert session.handle(PromptFinished(play_id="p2")) == [
        _enter("switch", "language"),
        LanguageSet(language="fr"),
        _enter("again", "play"),
        _play("p3", "Bonjour.", interruptible=False, language="fr"),
    ]
    assert session.language == "fr"


def test_file_prompt_is_an_absolute_path(tmp_path: Path) -> None:
    session = _session(_flows(tmp_path, main=LANGUAGES), language="fr")
    session.start()
    session.handle(CallAnswered())
    (action,) = session.handle(PromptFinished(play_id="p1"))[1:]
    assert isinstance(action, PlayPrompt)
    assert action.items == (FilePrompt(path=tmp_path.absolute() / "beep.wav"),)


def test_step_guard_hangs_up_a_runaway_flow(tmp_path: Path) -> None:
    # Validation cannot see that this subflow's play is always skipped: the guard can.
    flows = _flows(
        tmp_path,
        main="""
            flow: main
            entry: again
            nodes:
              again: {type: subflow, flow: maybe, next: count}
              count: {type: set, variables: {n: n + 1}, next: again}
            variables: {n: 0}
        """,
        maybe="""
            flow: maybe
            entry: skip
            nodes:
              skip:
                type: branch
                conditions: [{if: "true", then: done}]
                default: talk
              talk: {type: play, prompts: Never., next: done}
              done: {type: set, variables: {x: 1}}
        """,
    )
    session = _session(flows)
    actions = session.start()
    assert actions[-2:] == [
        FlowWarning(
            flow_id="main",
            node_id="count",
            message=f"more than {MAX_STEPS_PER_EVENT} nodes without waiting for the "
            "caller; hanging up",
        ),
        Hangup(status=603, reason="flow step limit exceeded"),
    ]
    assert session.outcome is not None and session.outcome.kind == "error"


def test_caller_hang_up_ends_the_session(tmp_path: Path) -> None:
    session = _collecting(tmp_path)
    assert session.handle(CallerHungUp()) == [CancelTimer(timer_id="t2")]
    assert session.outcome is not None
    assert (session.outcome.kind, session.outcome.node_id) == ("caller_hangup", "pin")
    assert session.handle(TimerExpired(timer_id="t2")) == []


def test_session_routes_by_default_and_refuses_misuse(tmp_path: Path) -> None:
    flows = _flows(tmp_path, default=HELLO.replace("flow: main", "flow: default"))
    session = FlowSession(flows, CallContext(caller="1", called="2"))
    assert session.flow_id == "default"
    with pytest.raises(RuntimeError):
        session.handle(CallAnswered())
    session.start()
    with pytest.raises(RuntimeError):
        session.start()
    with pytest.raises(KeyError):
        FlowSession(flows, CallContext(caller="1", called="2"), flow_id="nope")
