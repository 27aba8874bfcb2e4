"""ivr.yamlloc: located YAML loading and located validation problems."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ivr.yamlloc import (
    ConfigError,
    Location,
    Problem,
    format_path,
    load_yaml,
    located_error,
    validate,
)


def write(tmp_path: Path, text: str | bytes, name: str = "doc.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[ConfigError]) -> list[Problem]:
    return exc.value.problems


# --- paths and rendering ----------------------------------------------------------------------


def test_format_path() -> None:
    assert format_path(("trunks", 0, "sources", 1)) == "trunks[0].sources[1]"
    assert format_path(()) == ""
    assert format_path((0, "a")) == "[0].a"


def test_problem_str() -> None:
    problem = Problem("config/switchhook.yaml", 12, 5, "trunks[0].sources[1]", "bad")
    assert str(problem) == "config/switchhook.yaml:12:5: trunks[0].sources[1]: bad"
    assert str(Problem("f.yaml", None, None, "", "file not found")) == "f.yaml: file not found"
    assert str(Problem("f.yaml", 3, None, "a", "m")) == "f.yaml:3: a: m"


def test_config_error_renders_one_problem_per_line() -> None:
    error = ConfigError([Problem("f", 1, 1, "a", "x"), Problem("f", 2, 3, "b", "y")])
    assert str(error) == "f:1:1: a: x\nf:2:3: b: y"


# --- locations ----------------------------------------------------------------------------------


def test_locations_of_keys_and_values(tmp_path: Path) -> None:
    doc = load_yaml(
        write(
            tmp_path,
            "trunks:\n  - name: carrier\n    sources:\n      - 10.0.0.0/8\n      - 192.0.2.0/24\n",
        )
    )
    assert doc.data == {"trunks": [{"name": "carrier", "sources": ["10.0.0.0/8", "192.0.2.0/24"]}]}
    assert doc.value_locations[("trunks", 0, "sources", 1)] == Location(5, 9)
    assert doc.key_locations[("trunks", 0, "sources")] == Location(3, 5)
    assert doc.value_locations[("trunks", 0, "name")] == Location(2, 11)
    assert doc.get(("trunks", 0, "name")) == "carrier"
    # Missing paths fall back to the deepest existing node.
    assert doc.location(("trunks", 0, "auth", "realm")) == Location(2, 5)
    assert doc.location(("trunks", 0, "sources"), key=True) == Location(3, 5)


def test_flow_style_locations(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "a: {b: [1, 2, 3]}\n"))
    assert doc.value_locations[("a", "b", 2)] == Location(1, 15)


def test_empty_document_is_an_empty_mapping(tmp_path: Path) -> None:
    assert load_yaml(write(tmp_path, "# only a comment\n")).data == {}
    assert load_yaml(write(tmp_path, "")).data == {}


def test_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "base: &b {x: 1, y: 2}\nderived:\n  <<: *b\n  y: 3\n"))
    assert doc.data["derived"] == {"x": 1, "y": 3}
    assert doc.value_locations[("derived", "y")] == Location(4, 6)


# --- refusals -----------------------------------------------------------------------------------


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "a:\n  b: 1\n  c: 2\n  b: 3\n"))
    assert [str(p) for p in problems_of(exc)] == [
        f"{tmp_path / 'doc.yaml'}:4:3: a.b: duplicate key 'b' (first defined at line 2); "
        "YAML would silently keep only the last one"
    ]


def test_syntax_error_has_exact_mark(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "a: [1, 2\nb: 3\n"))
    (problem,) = problems_of(exc)
    assert (problem.line, problem.column) == (2, 2)
    assert problem.message.startswith("YAML syntax error: ")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(tmp_path / "nope.yaml")
    assert str(exc.value) == f"{tmp_path / 'nope.yaml'}: file not found"


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a directory"):
        load_yaml(tmp_path)


def test_root_must_be_a_mapping(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "- a\n- b\n"))
    (problem,) = problems_of(exc)
    assert (problem.line, problem.column) == (1, 1)
    assert "must be a mapping" in problem.message


def test_bad_utf8_is_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, b"a: 1\nb: caf\xe9\n"))
    (problem,) = problems_of(exc)
    assert (problem.line, problem.column) == (2, 7)
    assert "not valid UTF-8" in problem.message


def test_control_characters_are_located(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "a: 1\nb: x\x07y\n"))
    (problem,) = problems_of(exc)
    assert (problem.line, problem.column) == (2, 5)


def test_file_size_limit(tmp_path: Path) -> None:
    path = write(tmp_path, "a: " + "x" * 100 + "\n")
    with pytest.raises(ConfigError, match="larger than 50 bytes"):
        load_yaml(path, max_bytes=50)


def test_alias_bomb_is_refused(tmp_path: Path) -> None:
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for n in range(1, 9):
        prev, cur = chr(ord("a") + n - 1), chr(ord("a") + n)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
    with pytest.raises(ConfigError, match="more than 100000 nodes"):
        load_yaml(write(tmp_path, "\n".join(lines) + "\n"))


def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nested deeper"):
        load_yaml(write(tmp_path, "a: &a [*a]\n"))


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nested deeper"):
        load_yaml(write(tmp_path, "a: " + "[" * 200 + "]" * 200 + "\n"))


def test_python_tags_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_yaml(write(tmp_path, "a: !!python/object/apply:os.system ['true']\n"))
    (problem,) = problems_of(exc)
    assert problem.line == 1
    assert problem.path == "a"


def test_non_scalar_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="keys must be plain scalars"):
        load_yaml(write(tmp_path, "? [a, b]\n: 1\n"))


# --- validation ---------------------------------------------------------------------------------


class Item(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    size: int = Field(1, ge=1)


class Box(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    items: tuple[Item, ...] = ()
    low: int = 0
    high: int = 10

    @model_validator(mode="after")
    def _ordered(self) -> Box:
        if self.low > self.high:
            raise located_error((("low",), "low is above high"), (("high",), "high is below low"))
        return self


def validate_text(tmp_path: Path, text: str) -> list[str]:
    doc = load_yaml(write(tmp_path, text))
    with pytest.raises(ConfigError) as exc:
        validate(doc, Box, file="box.yaml")
    return [str(p) for p in exc.value.problems]


def test_validate_success(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "items:\n  - name: a\n    size: 2\n"))
    box = validate(doc, Box, file="box.yaml")
    assert box.items == (Item(name="a", size=2),)


def test_every_error_is_located_and_sorted(tmp_path: Path) -> None:
    assert validate_text(
        tmp_path,
        "items:\n  - size: 0\n  - name: b\n    sise: 3\nhigh: lots\n",
    ) == [
        "box.yaml:2:5: items[0].name: field required",
        "box.yaml:2:11: items[0].size: must be >= 1 (got 0)",
        "box.yaml:4:5: items[1].sise: unknown field 'sise' (extra fields are not permitted); "
        "did you mean 'size'?",
        "box.yaml:5:7: high: must be a whole number (got 'lots')",
    ]


def test_unknown_field_without_close_match_has_no_suggestion(tmp_path: Path) -> None:
    assert validate_text(tmp_path, "colour: red\n") == [
        "box.yaml:1:1: colour: unknown field 'colour' (extra fields are not permitted)"
    ]


def test_located_error_points_at_each_field(tmp_path: Path) -> None:
    assert validate_text(tmp_path, "low: 5\nhigh: 1\n") == [
        "box.yaml:1:6: low: low is above high",
        "box.yaml:2:7: high: high is below low",
    ]


def test_located_error_on_missing_field_falls_back_to_parent(tmp_path: Path) -> None:
    assert validate_text(tmp_path, "items: []\nlow: 50\n") == [
        "box.yaml:1:1: high: high is below low",
        "box.yaml:2:6: low: low is above high",
    ]


def test_wrong_container_types(tmp_path: Path) -> None:
    assert validate_text(tmp_path, "items: 3\n") == ["box.yaml:1:8: items: must be a list (got 3)"]
    assert validate_text(tmp_path, "items: [oops]\n") == [
        "box.yaml:1:9: items[0]: must be a mapping of 'key: value' entries (got 'oops')"
    ]


def test_file_defaults_to_the_document_name(tmp_path: Path) -> None:
    doc = load_yaml(write(tmp_path, "low: x\n"))
    with pytest.raises(ConfigError) as exc:
        validate(doc, Box)
    assert exc.value.problems[0].file == str(tmp_path / "doc.yaml")
