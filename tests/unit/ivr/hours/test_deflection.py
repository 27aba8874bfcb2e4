"""ivr.hours.deflection: option models, resolution, cross-references."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.hours import (
    AfterHoursConfig,
    MessageDeflection,
    NumberDeflection,
    QueueDeflection,
    SipDeflection,
    VoicemailDeflection,
    check_references,
    deflection_enabled,
    load_hours_document,
    resolve_deflection,
)
from ivr.hours.deflection import deflection_summary

from .helpers import OFFICE, office, problems

HEAD = "hours: {timezone: UTC}\nafter_hours:\n"


def test_office_options_load() -> None:
    config = office().after_hours
    assert config.deflect and config.allow_transfers_outside_hours
    assert config.option is not None and config.option.kind == "message"
    billing = config.queues["billing"].option
    assert billing is not None
    voicemail = billing.option
    assert isinstance(voicemail, VoicemailDeflection)
    assert (voicemail.max_seconds, voicemail.silence_seconds, voicemail.finish_key) == (180, 6, "#")
    assert voicemail.callback_prompt is not None
    assert voicemail.callback_prompt["en"].tts == "Please enter your phone number, then press hash."
    partners = config.queues["partners"].option
    assert partners is not None and isinstance(partners.option, SipDeflection)
    assert [(d.field, d.type) for d in partners.option.data] == [
        ("X-Customer-Id", "dynamic"),
        ("X-Origin", "static"),
    ]
    assert partners.option.data_records.metadata and not partners.option.data_records.crm


# --- resolution -------------------------------------------------------------------------------


def test_queue_override_beats_global() -> None:
    config = office().after_hours
    assert isinstance(resolve_deflection(config, "billing"), VoicemailDeflection)
    assert resolve_deflection(config, "sales") == QueueDeflection(queue="night")
    vip = resolve_deflection(config, "vip")
    assert isinstance(vip, NumberDeflection) and vip.method == "refer"


def test_queue_without_override_follows_global() -> None:
    config = office().after_hours
    assert isinstance(resolve_deflection(config, "support"), MessageDeflection)
    assert isinstance(resolve_deflection(config, None), MessageDeflection)


def test_queue_opt_out() -> None:
    config = office().after_hours
    assert resolve_deflection(config, "night") is None
    assert not deflection_enabled(config, "night")
    assert deflection_enabled(config, "support")


def test_global_off_means_none_unless_queue_override_on() -> None:
    config = AfterHoursConfig.model_validate(
        {
            "deflect": False,
            "option": {"message": {}},
            "queues": {
                "billing": {"deflect": True, "option": {"voicemail": {}}},
                "sales": {"deflect": True},  # uses the global option even when global is off
            },
        }
    )
    assert resolve_deflection(config, "support") is None
    assert resolve_deflection(config, None) is None
    assert isinstance(resolve_deflection(config, "billing"), VoicemailDeflection)
    assert isinstance(resolve_deflection(config, "sales"), MessageDeflection)


def test_nothing_configured_means_no_deflection() -> None:
    assert resolve_deflection(AfterHoursConfig(), "support") is None


def test_summaries() -> None:
    config = office().after_hours
    assert [
        deflection_summary(resolve_deflection(config, q))
        for q in ("billing", "sales", "vip", "partners", "night", "support")
    ] == [
        "voicemail",
        "queue night",
        "number +33123456789 via carrier (refer)",
        "sip sip:afterhours@partner.example.com (2 data parameters)",
        "none",
        "message",
    ]


# --- validation -------------------------------------------------------------------------------


def test_deflect_needs_an_option(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        HEAD + "  deflect: true\n  queues:\n    billing: {deflect: true}\n",
    ) == [
        "3:12: after_hours.deflect: deflect: true needs an 'option'",
        "5:24: after_hours.queues.billing.deflect: deflect: true needs an 'option' here or a "
        "global 'option'",
    ]


def test_exactly_one_option(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        HEAD + "  option: {message: {}, voicemail: {}}\n",
    ) == ["3:36: after_hours.option.voicemail: choose one option, not message and voicemail"]
    assert problems(tmp_path, HEAD + "  option: {}\n") == [
        "3:11: after_hours.option: choose one option: queue, number, sip, voicemail, message"
    ]
    assert problems(tmp_path, HEAD + "  option: {email: {}}\n")[0].startswith(
        "3:12: after_hours.option.email: unknown field 'email'"
    )


def test_number_option_checks(tmp_path: Path) -> None:
    assert problems(
        tmp_path,
        HEAD + "  option:\n    number: {number: 33123456789, trunk: carrier, method: transfer}\n",
    ) == [
        "4:22: after_hours.option.number.number: must be quoted E.164 text like "
        "'+33123456789' (got 33123456789)",
        "4:59: after_hours.option.number.method: must be one of 'bridge', 'refer' (got 'transfer')",
    ]
    assert problems(
        tmp_path, HEAD + "  option:\n    number: {number: '+33 1 23', trunk: carrier}\n"
    ) == [
        "4:22: after_hours.option.number.number: '+33 1 23' is not an E.164 number like "
        "'+33123456789'"
    ]


def test_sip_option_checks(tmp_path: Path) -> None:
    text = HEAD + (
        "  option:\n"
        "    sip:\n"
        "      uri: http://example.com\n"
        "      data:\n"
        "        - {field: X-A, type: static}\n"
        "        - {field: Call-ID, type: static, value: x}\n"
        "        - {field: X-B, type: dynamic, value: x, source: crm, source_field: id}\n"
        "        - {field: X-C, type: dynamic}\n"
        "        - {field: 'X D', type: static, value: x}\n"
    )
    assert problems(tmp_path, text) == [
        "5:12: after_hours.option.sip.uri: 'http://example.com' is not a SIP URI like "
        "'sip:night@example.com'",
        "7:11: after_hours.option.sip.data[0].value: a static parameter needs 'value'",
        "8:19: after_hours.option.sip.data[1].field: 'Call-ID' is set by the engine itself; "
        "use an X- header",
        "9:57: after_hours.option.sip.data[2].source: must be one of 'call', 'profile', "
        "'variables' (got 'crm')",
        "10:11: after_hours.option.sip.data[3]: a dynamic parameter needs 'source' (call, "
        "profile, variables)",
        "10:11: after_hours.option.sip.data[3]: a dynamic parameter needs 'source_field'",
        "11:19: after_hours.option.sip.data[4].field: 'X D' is not a valid SIP header name",
    ]


def test_sip_duplicate_headers_and_static_shape(tmp_path: Path) -> None:
    text = HEAD + (
        "  option:\n"
        "    sip:\n"
        "      uri: sip:night@example.com\n"
        "      data:\n"
        "        - {field: X-A, type: static, value: '1'}\n"
        "        - {field: x-a, type: static, value: '2', source: call}\n"
    )
    assert problems(tmp_path, text) == [
        "8:58: after_hours.option.sip.data[1].source: 'source' is only for type: dynamic"
    ]
    text = text.replace(", source: call", "")
    assert problems(tmp_path, text) == [
        "8:19: after_hours.option.sip.data[1].field: header 'x-a' is already data[0]"
    ]


def test_voicemail_option_checks(tmp_path: Path) -> None:
    text = HEAD + (
        "  option:\n"
        "    voicemail:\n"
        "      greeting: {english: hello}\n"
        "      max_seconds: 10\n"
        "      silence_seconds: 10\n"
        "      finish_key: x\n"
        "      callback_prompt: {en: 'Number?'}\n"
        "      blocked_number_message: {en: {tts: a, file: b.wav}}\n"
    )
    assert problems(tmp_path, text) == [
        "5:27: after_hours.option.voicemail.greeting.english: 'english' is not a language tag "
        "like 'fr' or 'en-US'",
        "8:19: after_hours.option.voicemail.finish_key: must be one of '0', '1', '2', '3', "
        "'4', '5', '6', '7', '8', '9', '*', '#' (got 'x')",
        "10:36: after_hours.option.voicemail.blocked_number_message.en: give exactly one of "
        "'tts' (text) or 'file' (audio)",
    ]
    fixed = (
        text.replace("{english: hello}", "{en: hello}")
        .replace("finish_key: x", "finish_key: 0")
        .replace("{tts: a, file: b.wav}", "{file: b.wav}")
    )
    assert problems(tmp_path, fixed) == [
        "7:24: after_hours.option.voicemail.silence_seconds: must be less than max_seconds (10)",
        "9:24: after_hours.option.voicemail.callback_prompt: is only used with "
        "ask_callback_number: true",
    ]


def test_prompt_files_resolve_against_the_config_directory(tmp_path: Path) -> None:
    path = tmp_path / "hours.yaml"
    path.write_text(
        HEAD + "  option:\n    message:\n      prompt: {fr: {file: prompts/ferme.wav}}\n",
        encoding="utf-8",
    )
    _, settings = load_hours_document(path)
    assert settings.after_hours.option is not None
    message = settings.after_hours.option.option
    assert isinstance(message, MessageDeflection) and message.prompt is not None
    assert message.prompt["fr"].file == tmp_path / "prompts" / "ferme.wav"


# --- cross-references -------------------------------------------------------------------------


def test_check_references_all_known() -> None:
    document, settings = load_hours_document(OFFICE)
    found = check_references(
        settings.after_hours,
        queues={"billing", "sales", "vip", "partners", "night", "support"},
        trunks={"carrier"},
        document=document,
        hours_queues=settings.hours.queues,
    )
    assert found == []


def test_check_references_unknown_names_are_located() -> None:
    document, settings = load_hours_document(OFFICE)
    found = check_references(
        settings.after_hours,
        queues={"billing", "sales", "vip", "support"},
        trunks={"other"},
        document=document,
        hours_queues=settings.hours.queues,
    )
    known = "(known: billing, sales, support, vip)"
    assert [str(p) for p in found] == [
        f"{OFFICE}:41:7: hours.queues.night: unknown queue 'night' {known}",
        f"{OFFICE}:80:24: after_hours.queues.sales.option.queue.queue: unknown queue 'night' "
        + known,
        f"{OFFICE}:84:49: after_hours.queues.vip.option.number.trunk: unknown trunk 'carrier' "
        "(known: other)",
        f"{OFFICE}:86:7: after_hours.queues.partners: unknown queue 'partners' {known}",
        f"{OFFICE}:95:7: after_hours.queues.night: unknown queue 'night' {known}",
    ]


def test_check_references_self_deflection() -> None:
    config = AfterHoursConfig.model_validate(
        {"queues": {"night": {"deflect": True, "option": {"queue": {"queue": "night"}}}}}
    )
    (problem,) = check_references(config, queues={"night"}, trunks=())
    assert str(problem) == (
        "<config>: after_hours.queues.night.option.queue.queue: queue 'night' deflects to itself"
    )


@pytest.mark.parametrize("kind", ["queue", "number", "sip", "voicemail", "message"])
def test_every_option_kind_is_reachable(kind: str) -> None:
    bodies = {
        "queue": {"queue": "night"},
        "number": {"number": "+15551234567", "trunk": "carrier"},
        "sip": {"uri": "sips:night@example.com"},
        "voicemail": {},
        "message": {"prompt": {"en": "Closed."}},
    }
    config = AfterHoursConfig.model_validate({"deflect": True, "option": {kind: bodies[kind]}})
    assert config.option is not None and config.option.kind == kind
    assert resolve_deflection(config, "any") is config.option.option
