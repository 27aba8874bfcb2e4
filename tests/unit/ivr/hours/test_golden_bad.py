"""Bad hours configs give exact located messages (tests/golden/hours/bad/*.yaml + .expected)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.hours import load_hours_settings
from ivr.yamlloc import ConfigError

from .helpers import GOLDEN

BAD_DIR = GOLDEN / "bad"
BAD_FILES = sorted(BAD_DIR.glob("*.yaml"))


def test_every_bad_file_has_its_expected_messages() -> None:
    assert len(BAD_FILES) >= 10
    for bad in BAD_FILES:
        assert bad.with_suffix(".expected").is_file(), bad.name


@pytest.mark.parametrize("bad", BAD_FILES, ids=lambda p: p.stem)
def test_bad_hours_config_gives_exact_located_messages(
    bad: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(BAD_DIR)
    with pytest.raises(ConfigError) as exc:
        load_hours_settings(bad.name)
    expected = bad.with_suffix(".expected").read_text(encoding="utf-8")
    assert str(exc.value) + "\n" == expected
