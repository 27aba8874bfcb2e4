"""simulate on the shipped flows: each distinct outcome, and the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flows import FlowSet, RoutesConfig, load_flow_set, main_simulate, simulate

ROOT = Path(__file__).resolve().parents[4]
FLOWS = ROOT / "flows"
PROMPTS = FLOWS / "prompts"
ROUTES = RoutesConfig.model_validate({"rules": [{"number": "100", "flow": "support"}]})


@pytest.fixture(scope="module")
def shipped() -> FlowSet:
    return load_flow_set(FLOWS, prompts_dir=PROMPTS, routes=ROUTES)


def _tail(lines: list[str]) -> list[str]:
    return lines[-2:]


def test_default_flow_reproduces_the_built_in_behaviour(shipped: FlowSet) -> None:
    assert simulate(shipped, number="555", digits=["7"]) == [
        "route: trunk - number 555 -> flow default",
        "node default/welcome (collect)",
        "  answer",
        "  play (interruptible): tts [en] 'Welcome to switchhook. Please press a digit.'",
        "  wait for input (10s)",
        "  caller presses 7",
        "  set digit = '7'",
        "node default/say_digit (play)",
        "  play: tts [en] 'You pressed 7. Goodbye.'",
        "node default/done (hangup)",
        "  hangup BYE: default behaviour done",
        "outcome: hung up (BYE) in default/done: default behaviour done",
        "menu path: -",
    ]
    lines = simulate(shipped, number="555")
    assert "  no input for 10s" in lines
    assert "  play: tts [en] 'No digit received. Goodbye.'" in lines


@pytest.mark.parametrize(
    ("digits", "lang", "tail", "spoken"),
    [
        (
            ["1", "1", "1"],
            None,
            [
                "outcome: hung up (BYE) in support/billing_done: billing information given",
                "menu path: Support > Billing",
            ],
            "  play: tts [en] 'Our billing team will send your latest invoice by e-mail.'",
        ),
        (
            ["1", "1", "2", "123456"],
            None,
            [
                "outcome: hung up (BYE) in support/technical_done: technical callback scheduled",
                "menu path: Support > Technical",
            ],
            "  play: tts [en] 'Thank you. A technician will call you back about case 123456.'",
        ),
        (
            ["2", "1", "2", "12"],
            None,
            [
                "outcome: hung up (BYE) in support/technical_done: technical callback scheduled",
                "menu path: Support > Technical",
            ],
            "  play: tts [fr] 'Un technicien vous rappellera dès que possible.'",
        ),
        (
            ["1", "2"],
            None,
            [
                "outcome: hung up (BYE) in support/sales_done: sales information given",
                "menu path: Sales",
            ],
            "  play: tone 440 Hz 300 ms",
        ),
        (
            ["1"],
            None,
            [
                "outcome: hung up (BYE) in support/no_choice_done: no valid menu choice",
                "menu path: -",
            ],
            "  play: tts [en] 'Thank you for calling. Goodbye.'",
        ),
        (
            ["2", "1", "1"],
            None,
            [
                "outcome: hung up (BYE) in support/billing_done: billing information given",
                "menu path: Support > Billing",
            ],
            "  play: tts [fr] 'Merci de votre appel. Au revoir.'",
        ),
    ],
)
def test_support_line_outcomes(
    shipped: FlowSet, digits: list[str], lang: str | None, tail: list[str], spoken: str
) -> None:
    lines = simulate(shipped, number="100", digits=digits, lang=lang)
    assert _tail(lines) == tail
    assert spoken in lines


def test_bad_actor_is_screened(shipped: FlowSet) -> None:
    lines = simulate(
        shipped, number="100", digits=["1", "1", "1"], headers={"X-Reserved-Bad-Actor": ["true"]}
    )
    assert lines[:3] == [
        "route: trunk - number 100 -> flow support",
        "profile: bad_actor",
        "node support/screen (branch)",
    ]
    assert "  play: tts [en] 'We are unable to take your call. Goodbye.'" in lines
    assert lines[-3:] == [
        "outcome: hung up (BYE) in support/rejected_bye: screened bad actor",
        "menu path: -",
        "unused digits: 111",
    ]


def test_repeat_customer_gets_priority(shipped: FlowSet) -> None:
    lines = simulate(
        shipped, number="100", digits=["1", "2"], headers={"x-reserved-repeat-customer": ["YES"]}
    )
    assert "  set tier = 'priority'" in lines
    assert (
        "  play: tts [en] 'Welcome back. As a returning customer, your call is given priority.'"
    ) in lines


def test_main_simulate_cli(tmp_path: Path) -> None:
    code, lines = main_simulate(
        [
            "--number",
            "100",
            "--digits",
            "1,1,1",
            "--header",
            "X-Reserved-Bad-Actor: maybe",
            "--lang",
            "fr",
        ],
        flows_dir=FLOWS,
        prompts_dir=PROMPTS,
        routes=ROUTES,
    )
    assert code == 0
    assert lines[1] == (
        "profile warning: X-Reserved-Bad-Actor: invalid value 'maybe' ignored "
        "(expected true/false/yes/no/1/0)"
    )
    assert lines[-1] == "menu path: Support > Billing"

    assert main_simulate(["--digits", "1"], flows_dir=FLOWS, prompts_dir=PROMPTS) == (
        2,
        ["switchhook simulate: the following arguments are required: --number"],
    )
    assert main_simulate(
        ["--number", "1", "--header", "nocolon"], flows_dir=FLOWS, prompts_dir=PROMPTS
    ) == (2, ["--header 'nocolon': expected 'Name: value'"])

    (tmp_path / "broken.yaml").write_text(
        "flow: x\nentry: a\nnodes:\n  a: {type: nope}\n", encoding="utf-8"
    )
    code, lines = main_simulate(["--number", "1"], flows_dir=tmp_path, prompts_dir=tmp_path)
    assert code == 1
    assert lines == [
        f"{tmp_path}/broken.yaml:4:13: nodes.a.type: unknown node type 'nope' "
        "(known types: answer, branch, collect, deflect, goto, hangup, hours, "
        "language, menu, play, queue, set, subflow, transfer, voicemail)"
    ]

    code, lines = main_simulate(
        ["--number", "1"], flows_dir=FLOWS, prompts_dir=PROMPTS, routes=RoutesConfig(default="nope")
    )
    assert code == 1 and "route to flow 'nope', which does not exist" in lines[0]
