"""``switchhook check``: exit status and located problems on the command line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ivr.cli import main

ROOT = Path(__file__).resolve().parents[3]
BAD = ROOT / "tests" / "golden" / "config" / "bad"


def test_check_accepts_the_shipped_configs(capsys: pytest.CaptureFixture[str]) -> None:
    for path in (
        ROOT / "config" / "switchhook.yaml",
        ROOT / "config" / "examples" / "carrier-trunk.yaml",
    ):
        assert main(["check", "--config", str(path)]) == 0
        out = capsys.readouterr().out.strip()
        assert ": OK (3 flows: common, default, support)" in out


@pytest.mark.parametrize("name", sorted(p.stem for p in BAD.glob("*.yaml")))
def test_check_reports_every_located_problem(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The golden messages name files relative to their folder.
    monkeypatch.chdir(BAD)
    assert main(["check", "--config", f"{name}.yaml"]) == 1
    err = capsys.readouterr().err
    expected = (BAD / f"{name}.expected").read_text().strip().splitlines()
    lines = err.strip().splitlines()
    assert lines[:-1] == expected
    count = len(expected)
    assert lines[-1] == f"{count} problem{'s' if count != 1 else ''} found"


def test_check_missing_file_is_a_located_problem(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["check", "--config", os.fspath(missing)]) == 1
    assert "nope.yaml" in capsys.readouterr().err
