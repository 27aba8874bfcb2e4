"""Routes: trunk + exact/prefix/pattern number -> flow, default route, located checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from ivr.flows import RoutesConfig, check_routes, load_flow_set
from ivr.yamlloc import ConfigError, load_yaml, validate

ROOT = Path(__file__).resolve().parents[4]


def _routes(**data: object) -> RoutesConfig:
    return RoutesConfig.model_validate(data)


def test_first_matching_rule_wins_else_default() -> None:
    routes = _routes(
        default="default",
        rules=[
            {"trunk": "carrier", "number": "100", "flow": "vip"},
            {"number": "100", "flow": "support"},
            {"prefix": "+3314", "flow": "paris"},
            {"pattern": r"\+1[0-9]{10}", "flow": "us"},
            {"trunk": "internal", "flow": "internal"},
        ],
    )
    assert routes.select("carrier", "100") == "vip"
    assert routes.select("other", "100") == "support"
    assert routes.select(None, "100") == "support"
    assert routes.select(None, "+33145678900") == "paris"
    assert routes.select(None, "+12125550100") == "us"
    assert routes.select(None, "+121255501001") == "default"  # pattern matches the whole number
    assert routes.select("internal", "999") == "internal"
    assert routes.select(None, "999") == "default"


def test_a_rule_takes_one_matcher_only() -> None:
    with pytest.raises(ValueError, match="give only one of number, prefix, pattern"):
        _routes(rules=[{"number": "1", "prefix": "1", "flow": "x"}])
    with pytest.raises(ValueError, match="bad regular expression"):
        _routes(rules=[{"pattern": "[", "flow": "x"}])
    with pytest.raises(ValueError, match="Extra inputs"):
        _routes(rules=[{"numbr": "1", "flow": "x"}])


class _Settings(BaseModel):
    """Stands in for the engine settings that embed RoutesConfig."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    routes: RoutesConfig = RoutesConfig()


def test_routes_to_missing_flows_are_located_problems(tmp_path: Path) -> None:
    config = tmp_path / "switchhook.yaml"
    config.write_text(
        "routes:\n"
        "  default: defualt\n"
        "  rules:\n"
        "    - {number: '100', flow: support}\n"
        "    - {prefix: '+33', flow: suport}\n",
        encoding="utf-8",
    )
    document = load_yaml(config)
    settings = validate(document, _Settings)
    flow_set = load_flow_set(ROOT / "flows", prompts_dir=ROOT / "flows" / "prompts")
    problems = check_routes(settings.routes, flow_set, source=document)
    assert [str(p).replace(str(tmp_path) + "/", "") for p in problems] == [
        "switchhook.yaml:2:12: routes.default: route to flow 'defualt', which does not exist; "
        "did you mean 'default'?",
        "switchhook.yaml:5:29: routes.rules[1].flow: route to flow 'suport', which does not "
        "exist; did you mean 'support'?",
    ]
    with pytest.raises(ConfigError) as exc:
        load_flow_set(
            ROOT / "flows",
            prompts_dir=ROOT / "flows" / "prompts",
            routes=settings.routes,
            routes_source=document,
        )
    assert len(exc.value.problems) == 2


def test_flow_set_route_uses_its_routes() -> None:
    routes = _routes(rules=[{"number": "100", "flow": "support"}])
    flow_set = load_flow_set(ROOT / "flows", prompts_dir=ROOT / "flows" / "prompts", routes=routes)
    assert flow_set.route(None, "100") == "support"
    assert flow_set.route("any", "200") == "default"
    assert check_routes(routes, flow_set) == []
