from __future__ import annotations

from ivr.acd import QueueConfig, WhisperDefaults, WhisperFile, WhisperTts, build_whisper


def _queue(**whisper: object) -> QueueConfig:
    return QueueConfig.model_validate(
        {"name": "billing", "display_name": "Billing", "whisper": whisper}
    )


def test_global_template_renders_call_type_and_queue_name() -> None:
    items = build_whisper(_queue(), WhisperDefaults())
    assert items == (WhisperTts(text="Inbound call from Billing", speed=1.0),)


def test_call_type_override_per_call_and_per_queue() -> None:
    assert build_whisper(_queue(), WhisperDefaults(), call_type="Transferred call") == (
        WhisperTts(text="Transferred call from Billing", speed=1.0),
    )
    assert build_whisper(_queue(call_type="Callback"), WhisperDefaults())[0].text == (
        "Callback from Billing"
    )


def test_countdown_follows_the_whisper_at_the_same_speed() -> None:
    defaults = WhisperDefaults(speed=1.5, countdown=True)
    assert build_whisper(_queue(), defaults) == (
        WhisperTts(text="Inbound call from Billing", speed=1.5),
        WhisperTts(text="Your turn! Call starts in 3, 2, 1", speed=1.5),
    )


def test_per_queue_overrides_the_global_setting() -> None:
    defaults = WhisperDefaults(speed=1.5, countdown=True)
    assert build_whisper(_queue(queue_name=True, countdown=False), defaults) == (
        WhisperTts(text="Billing", speed=1.5),
    )
    assert build_whisper(_queue(tts="Platinum line", speed=0.75), defaults) == (
        WhisperTts(text="Platinum line", speed=0.75),
        WhisperTts(text="Your turn! Call starts in 3, 2, 1", speed=0.75),
    )
    assert build_whisper(_queue(file="whisper/billing.mp3", countdown=False), defaults) == (
        WhisperFile(file="whisper/billing.mp3", speed=1.5),
    )
    assert build_whisper(
        _queue(template="{queue} via {menu_path}", countdown=False),
        defaults,
        menu_path=("main", "invoices"),
    ) == (WhisperTts(text="Billing via main > invoices", speed=1.5),)


def test_disabled_whisper_can_keep_the_countdown_or_play_nothing() -> None:
    assert build_whisper(_queue(enabled=False), WhisperDefaults(countdown=True)) == (
        WhisperTts(text="Your turn! Call starts in 3, 2, 1", speed=1.0),
    )
    assert build_whisper(_queue(enabled=False), WhisperDefaults()) == ()
    assert build_whisper(_queue(), WhisperDefaults(enabled=False)) == ()
    assert build_whisper(_queue(enabled=True), WhisperDefaults(enabled=False)) != ()


def test_queue_without_display_name_uses_its_name() -> None:
    queue = QueueConfig.model_validate({"name": "sales"})
    assert build_whisper(queue, WhisperDefaults())[0].text == "Inbound call from sales"
