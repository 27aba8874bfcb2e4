from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ivr.acd import AcdSettings, check_acd
from ivr.yamlloc import ConfigError, load_yaml, validate

GOOD = """\
whisper:
  call_type: Inbound call
  template: "{call_type} from {queue}"
  speed: 1.25
  countdown: true
agents:
  - id: alice
    display_name: Alice Martin
    sip: {username: alice, password: s3cret}
    teams: [tier1]
    queues: [billing, {queue: sales, level: 2}]
    sms_number: "+15551230001"
  - id: bob
    display_name: Bob Stone
    sip: {username: bob, ha1: 0123456789abcdef0123456789abcdef}
    queues: [sales]
queues:
  - name: billing
    display_name: Billing
    strategy: longest_idle
    priority_rules:
      - {when: profile.repeat_customer, priority: 10}
    hold_audio: {file: moh/default.mp3}
    periodic_announcement: {every_seconds: 45, audio: "Your call is important to us"}
    announce_position: true
    announce_estimated_wait: true
    max_wait_seconds: 600
    max_queue_size: 20
    overflow: voicemail:billing
    offer:
      timeout_seconds: 15
      renotify_every_seconds: 30
      ring_tone: https://pbx.example.com/tones/billing.mp3
      max_missed_offers_before_not_ready: 2
    wrap_up_seconds: 20
    whisper: {queue_name: true, speed: 1.5}
    sms: {enabled: true}
  - name: sales
    strategy: ring_all
    hold_audio: {tone: [440], ms: 400, pause_ms: 4000}
"""


def _load(tmp_path: Path, text: str) -> AcdSettings:
    path = tmp_path / "acd.yaml"
    path.write_text(textwrap.dedent(text))
    return validate(load_yaml(path), AcdSettings)


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text)
    return [f"{p.line}: {p.path}: {p.message}" for p in info.value.problems]


def test_good_config(tmp_path: Path) -> None:
    settings = _load(tmp_path, GOOD)
    billing = settings.queue("billing")
    assert billing is not None and billing.offer.renotify_every_seconds == 30
    alice = settings.agent_by_username("ALICE")
    assert alice is not None and alice.level_in("sales") == 2
    assert settings.agent("bob") is not None
    assert settings.agent("bob").sip.ha1_algorithm == "MD5"  # type: ignore[union-attr]
    assert check_acd(settings.agents, settings.queues) == []


def test_cross_problems_are_located(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        agents:
          - id: alice
            display_name: Alice
            sip: {username: alice, password: x}
            queues: [billing, bilingg]
          - id: alice
            display_name: Alice Again
            sip: {username: ALICE, password: x}
        queues:
          - name: billing
            max_wait_seconds: 60
            overflow: queue:nowhere
          - name: billing
        """,
    )
    assert problems == [
        "5: agents[0].queues[1]: unknown queue 'bilingg'; did you mean 'billing'?",
        "6: agents[1].id: duplicate agent id 'alice' (first used by agents[0])",
        "8: agents[1].sip.username: SIP username 'ALICE' is already used by agents[0]",
        "12: queues[0].overflow: unknown queue 'nowhere'",
        "13: queues[1].name: duplicate queue name 'billing' (first used by queues[0])",
    ]


def test_field_problems_and_cross_problems_together(tmp_path: Path) -> None:
    problems = _problems(
        tmp_path,
        """\
        whisper: {speed: 3}
        agents:
          - id: alice
            display_name: Alice
            sip: {username: alice, password: x, ha1: abc}
            queues: [support]
          - id: bob
            display_name: Bob
            sip: {username: bob, password: x}
            queues: [support]
        queues:
          - name: billing
            max_wait_seconds: 60
          - name: sales
            offer: {timeout_seconds: 20, renotify_every_seconds: 10}
            whisper: {template: "{call_typ} from {queue}", tts: hello}
        """,
    )
    # alice's membership is not cross-checked while alice herself is invalid; bob's is.
    assert problems == [
        "1: whisper.speed: playback speed must be between 0.5 and 2.0 (got 3)",
        "5: agents[0].sip: give exactly one of 'password' or 'ha1' (got both)",
        "10: agents[1].queues[0]: unknown queue 'support'",
        "13: queues[0].max_wait_seconds: max_wait_seconds needs an 'overflow' target "
        "(queue:<name>, voicemail:<box> or node:<id>)",
        "15: queues[1].offer.renotify_every_seconds: must be at least timeout_seconds (20): "
        "an offer cannot be renewed while it is still ringing",
        "16: queues[1].whisper.template: unknown placeholder {call_typ}; did you mean "
        "{call_type}? (available: call_type, caller_name, caller_number, language, "
        "menu_path, queue)",
    ]


@pytest.mark.parametrize(
    ("queue", "message"),
    [
        ("{name: q, overflow: somewhere}", "is not an overflow target"),
        ("{name: q, overflow: queue:q}", "a queue cannot overflow to itself"),
        ("{name: q, strategy: random}", "must be one of"),
        ("{name: q, hold_audio: {file: a.mp3, tts: hi}}", "exactly one of 'file', 'tts' or 'tone'"),
        ("{name: q, whisper: {speed: 0.25}}", "between 0.5 and 2.0"),
        ("{name: q, whisper: {queue_name: true, file: x.mp3}}", "give only one of"),
        ("{name: q, priority_rules: [{when: Profile.X, priority: 5}]}", "neither 'profile."),
        ('{name: q, offer: {ring_tone: "a\\nb"}}', "control characters"),
        ("{name: q, strategy: ring_all, extra: 1}", "unknown field 'extra'"),
    ],
)
def test_queue_problems(tmp_path: Path, queue: str, message: str) -> None:
    problems = _problems(tmp_path, f"queues:\n  - {queue}\n")
    assert any(message in p for p in problems), problems


def test_feature_codes_must_differ(tmp_path: Path) -> None:
    problems = _problems(tmp_path, "feature_codes: {log_in: '*41', ready: '*41'}\n")
    assert problems == ["1: feature_codes.ready: '*41' is already the code for log_in"]


def test_empty_section_is_valid(tmp_path: Path) -> None:
    settings = _load(tmp_path, "{}\n")
    assert settings.agents == () and settings.whisper.template == "{call_type} from {queue}"
