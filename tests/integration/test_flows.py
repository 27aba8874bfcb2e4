"""YAML flows on a live engine, driven by SIPp: menus by RFC 4733 DTMF, reserved caller
data, and hot reload (broken edits rejected, valid edits for the next call only)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import SIPP_PCAPS, RunningEngine, SippResult, run_sipp

pytestmark = pytest.mark.integration

PCAPS = {
    **{d: f"dtmf_2833_{d}.pcap" for d in "0123456789"},
    "#": "dtmf_2833_pound.pcap",
    "*": "dtmf_2833_star.pcap",
}


def key_actions(digits: str, *, first_ms: int = 1500, gap_ms: int = 1200) -> str:
    """SIPp XML: wait, press each key (an RFC 4733 pcap), wait between keys."""
    out = []
    for i, digit in enumerate(digits):
        out.append(f'  <pause milliseconds="{first_ms if i == 0 else gap_ms}"/>')
        out.append(
            f'  <nop><action><exec play_pcap_audio="{SIPP_PCAPS / PCAPS[digit]}"/></action></nop>'
        )
    return "\n".join(out)


def menu_call(
    engine: RunningEngine,
    tmp_path: Path,
    digits: str,
    *,
    headers: tuple[str, ...] = (),
    service: str = "800",
) -> SippResult:
    extra = "".join(f"\n      {h}" for h in headers)
    return run_sipp(
        "uac_menu.xml",
        engine,
        tmp_path,
        service=service,
        subst={"actions": key_actions(digits), "extra_headers": extra, "bye_timeout": "40000"},
        timeout=60,
    )


def bye_reason(result: SippResult) -> str:
    """The text of the Reason header on the engine's BYE (RFC 3326)."""
    bye = result.messages.split("BYE sip:", 1)[1][:1500]
    line = next(line for line in bye.splitlines() if line.startswith("Reason:"))
    return line.split('text="', 1)[1].rstrip('"')


@pytest.mark.parametrize(
    ("digits", "reason", "path"),
    [
        ("111", "billing information given", "Support > Billing"),
        ("12", "sales information given", "Sales"),
    ],
)
def test_dtmf_walks_the_two_level_menu_to_distinct_outcomes(
    engine: RunningEngine, tmp_path: Path, digits: str, reason: str, path: str
) -> None:
    result = menu_call(engine, tmp_path, digits)
    assert result.returncode == 0, result.stderr + result.stdout
    assert bye_reason(result) == reason
    ended = engine.wait_for("flow ended")
    assert (ended["reason"], ended["menu_path"]) == (reason, path)


def test_bad_actor_header_takes_the_screening_branch(engine: RunningEngine, tmp_path: Path) -> None:
    result = menu_call(engine, tmp_path, "", headers=("X-Reserved-Bad-Actor: true",))
    assert result.returncode == 0, result.stderr + result.stdout
    assert bye_reason(result) == "screened bad actor"
    assert engine.wait_for("caller profile")["bad_actor"] is True
    assert not [n for n in engine.events("flow node") if n["node"] == "choose_language"]


def test_invalid_reserved_value_is_ignored_with_a_warning(
    engine: RunningEngine, tmp_path: Path
) -> None:
    result = menu_call(engine, tmp_path, "12", headers=("X-Reserved-Bad-Actor: maybe",))
    assert result.returncode == 0, result.stderr + result.stdout
    assert bye_reason(result) == "sales information given"
    assert engine.wait_for("caller data ignored")


def _flows_dir(engine: RunningEngine) -> Path:
    return Path(engine.config["flows"]["dir"])


def test_broken_edit_is_rejected_and_calls_keep_the_old_flow(
    engine: RunningEngine, tmp_path: Path
) -> None:
    support = _flows_dir(engine) / "support.yaml"
    support.write_text(support.read_text().replace("type: menu", "type: menuu", 1))
    rejected = engine.wait_for("reload rejected; the running flows stay")
    assert any("support.yaml" in e and "menuu" in e for e in rejected["errors"])
    result = menu_call(engine, tmp_path, "111")
    assert result.returncode == 0, result.stderr + result.stdout
    assert bye_reason(result) == "billing information given"


def test_valid_reload_applies_to_the_next_call_only(engine: RunningEngine, tmp_path: Path) -> None:
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(menu_call(engine, tmp_path, "111")), daemon=True
    )
    first.start()
    engine.wait_for("call answered")
    support = _flows_dir(engine) / "support.yaml"
    support.write_text(
        support.read_text().replace("reason: billing information given", "reason: billing v2")
    )
    engine.wait_for("flows reloaded")
    first.join(timeout=60)
    assert results and results[0].returncode == 0
    assert bye_reason(results[0]) == "billing information given", "in-progress call unchanged"
    time.sleep(0.2)
    second = menu_call(engine, tmp_path, "111")
    assert second.returncode == 0, second.stderr
    assert bye_reason(second) == "billing v2"


def test_sighup_reloads_when_file_watching_is_off(engine_factory: Any, tmp_path: Path) -> None:
    import signal

    engine: RunningEngine = engine_factory(watch_flows=False)
    support = _flows_dir(engine) / "support.yaml"
    support.write_text(
        support.read_text().replace("reason: sales information given", "reason: sales v2")
    )
    time.sleep(0.5)
    assert not engine.events("flows reloaded"), "no watching: nothing reloads by itself"
    engine.process.send_signal(signal.SIGHUP)
    engine.wait_for("flows reloaded")
    result = menu_call(engine, tmp_path, "12")
    assert result.returncode == 0, result.stderr
    assert bye_reason(result) == "sales v2"
