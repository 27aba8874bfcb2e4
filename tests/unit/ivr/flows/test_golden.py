"""Golden flows: good ones load; bad ones give exactly the located messages expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.flows import ProfileConfig, RoutesConfig, load_flow_files, load_flow_set
from ivr.yamlloc import ConfigError

ROOT = Path(__file__).resolve().parents[4]
GOLDEN = ROOT / "tests" / "golden" / "flows"
BAD_DIR = GOLDEN / "bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))
BAD_SETS = sorted(p for p in BAD_DIR.iterdir() if p.is_dir())


def test_every_bad_case_has_an_expected_output() -> None:
    assert len(BAD_FILES) >= 15
    for bad in BAD_FILES:
        assert bad.with_suffix(".expected").is_file(), bad.name
    for bad in BAD_SETS:
        assert (bad / "expected").is_file(), bad.name


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda p: p.stem)
def test_bad_flow_gives_exact_located_messages(bad: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BAD_DIR)
    with pytest.raises(ConfigError) as exc:
        load_flow_files([bad.name], prompts_dir="../prompts")
    expected = bad.with_suffix(".expected").read_text(encoding="utf-8")
    assert str(exc.value) + "\n" == expected


@pytest.mark.parametrize("bad", BAD_SETS, ids=lambda p: p.name)
def test_bad_flow_set_gives_exact_located_messages(
    bad: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD_DIR)
    with pytest.raises(ConfigError) as exc:
        load_flow_set(bad.name, prompts_dir="../prompts")
    assert str(exc.value) + "\n" == (bad / "expected").read_text(encoding="utf-8")


def test_good_flows_load() -> None:
    flow_set = load_flow_set(
        GOLDEN / "good",
        prompts_dir=GOLDEN / "prompts",
        profile=ProfileConfig(headers={"X-Tier": "tier"}),
        routes=RoutesConfig(default="every-node"),
    )
    assert sorted(flow_set.flows) == ["every-node", "shared"]
    flow = flow_set.flow("every-node")
    assert flow.entry == "screen"
    assert dict(flow.variables) == {"attempts": 0, "vip": False, "code": ""}
    assert {node.NODE_TYPE for node in flow.nodes.values()} == {
        "answer",
        "branch",
        "collect",
        "goto",
        "hangup",
        "language",
        "menu",
        "play",
        "set",
        "subflow",
    }


def test_shipped_flows_pass_the_checks() -> None:
    flow_set = load_flow_set(
        ROOT / "flows", prompts_dir=ROOT / "flows" / "prompts", routes=RoutesConfig()
    )
    assert {"default", "support", "common"} <= set(flow_set.flows)


def test_unknown_profile_field_needs_configuration(tmp_path: Path) -> None:
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "flow: f\nentry: b\nnodes:\n  b:\n    type: branch\n    conditions:\n"
        "      - {if: profile.tier == 'gold', then: h}\n    default: h\n"
        "  h:\n    type: hangup\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as exc:
        load_flow_files([flow], prompts_dir=tmp_path)
    assert "unknown profile field 'tier'" in str(exc.value)
    configured = ProfileConfig(headers={"X-Tier": "tier"})
    assert load_flow_files([flow], prompts_dir=tmp_path, profile=configured).flow("f")


def test_problems_of_several_files_come_in_file_order(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "flow: a\nentry: x\nnodes:\n  y: {type: hangup}\n", encoding="utf-8"
    )
    (tmp_path / "b.yaml").write_text(
        "flow: b\nentry: h\nnodes:\n  h: {type: hangpu}\n", encoding="utf-8"
    )
    with pytest.raises(ConfigError) as exc:
        load_flow_set(tmp_path, prompts_dir=tmp_path)
    lines = str(exc.value).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("a.yaml:2:8: entry: entry node 'x' does not exist")
    assert lines[1].endswith(
        "b.yaml:4:13: nodes.h.type: unknown node type 'hangpu'; did you mean 'hangup'?"
    )


def test_missing_or_empty_flows_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="flows directory not found"):
        load_flow_set(tmp_path / "nope", prompts_dir=tmp_path)
    with pytest.raises(ConfigError, match="no flow files"):
        load_flow_set(tmp_path, prompts_dir=tmp_path)
