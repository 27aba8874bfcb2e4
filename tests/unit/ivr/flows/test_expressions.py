"""The expression language: load-time checks and safe evaluation."""

from __future__ import annotations

import types
from typing import Any

import pytest

from ivr.flows.expressions import (
    EvaluationError,
    ExpressionError,
    HeaderView,
    parse_expression,
    parse_template,
)

PROFILE_FIELDS = frozenset({"verified_customer", "bad_actor", "repeat_customer", "tier"})


def _scope(**variables: Any) -> dict[str, Any]:
    return {
        "caller": "+33612345678",
        "called": "100",
        "trunk": "carrier",
        "language": "fr",
        "headers": HeaderView({"X-Account": ["123456"], "x-tier": ["gold", "silver"]}),
        "profile": types.SimpleNamespace(
            verified_customer=True, bad_actor=False, repeat_customer=False, tier="gold"
        ),
        **variables,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("profile.verified_customer and not profile.bad_actor", True),
        ("startswith(caller, '+33') and called == '100'", True),
        ("endswith(caller, '78')", True),
        ("headers['x-account'] == '123456'", True),
        ("headers['X-Tier']", "gold"),  # first value; names are case-insensitive
        ("headers['X-Missing'] == ''", True),
        ("language in ('fr', 'en')", True),
        ("'33' in caller", True),
        ("matches(caller, '^\\+33[67]')", True),
        ("matches(called, '^2')", False),
        ("len(pin) == 4 and int(pin) > 1000", True),
        ("lower('ABC') + upper('d')", "abcD"),
        ("str(count + 1)", "4"),
        ("'priority' if profile.tier == 'gold' else 'standard'", "priority"),
        ("count >= 3 or false", True),
        ("-count", -3),
        ("true", True),
    ],
)
def test_evaluate(text: str, expected: Any) -> None:
    expression = parse_expression(text)
    assert expression.check(frozenset({"pin", "count"}), PROFILE_FIELDS) == []
    assert expression.evaluate(_scope(pin="1234", count=3)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expression is empty"),
        ("caller ==", "expression syntax error"),
        ("__import__('os')", "unknown function '__import__'"),
        ("caller.upper()", "only the functions"),
        ("(lambda: 1)()", "only the functions"),
        ("[c for c in caller]", "comprehensions not allowed"),
        ("2 ** 10", "'**' not allowed"),
        ("'a' * 10", "'*' not allowed"),
        ("caller[0]", "only allowed as headers['X-Name']"),
        ("headers[caller]", "needs a quoted header name"),
        ("{'a': 1}", "dict literals not allowed"),
        ("f'{caller}'", "f-strings not allowed"),
        ("caller is None", "'is' (use ==)"),
        ("x := 1", "expression syntax error"),
        ("matches(caller, '(')", "bad regular expression"),
        ("matches(caller, called)", "needs a quoted regular expression"),
        ("startswith(caller)", "takes 2 argument(s), got 1"),
        ("len(s=caller)", "takes no keyword arguments"),
        ("x in (caller, 'a')", "lists may only hold literals"),
        ("10000000000000000 > 1", "number larger than"),
        ("a" * 1001, "longer than 1000 characters"),
    ],
)
def test_rejected_at_parse(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=None) as exc:
        parse_expression(text)
    assert message in str(exc.value)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        ("callr == '1'", ["unknown name 'callr'; did you mean 'caller'?"]),
        ("profile.bad_actr", ["unknown profile field 'bad_actr'; did you mean 'bad_actor'?"]),
        ("profile.__class__", ["unknown profile field '__class__'"]),
        ("caller.real", ["'.' is only allowed as profile.<field>"]),
        ("headers == 1", ["'headers' can only be used as headers['X-Name']"]),
        ("profile", ["'profile' can only be used as profile.<field>"]),
        ("len == 1", ["'len' is a function: call it as len(...)"]),
        ("pin == caller", []),
    ],
)
def test_names_checked_at_load(text: str, problems: list[str]) -> None:
    assert parse_expression(text).check(frozenset({"pin"}), PROFILE_FIELDS) == problems


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("int(pin) > 1", "not a whole number"),
        ("caller + 1", "cannot add a string and a number"),
        ("pin < 5", "cannot order str and int"),
        ("caller - 'a'", "cannot subtract strings"),
        ("1 in count", "'in' needs a string or a list"),
        ("len(count)", "len() needs a string"),
        ("startswith(count, '1')", "startswith() needs a string"),
        ("big + big", "string longer than 4096"),
    ],
)
def test_evaluation_errors_are_evaluation_errors(text: str, message: str) -> None:
    expression = parse_expression(text)
    with pytest.raises(EvaluationError) as exc:
        expression.evaluate(_scope(pin="12a", count=3, big="x" * 4000))
    assert message in str(exc.value)


def test_templates() -> None:
    template = parse_template("You pressed {digit}. {{literal}}")
    assert template.names() == frozenset({"digit"})
    assert template.render({"digit": "5"}) == "You pressed 5. {literal}"
    assert parse_template("{flag} {missing}").render({"flag": True}) == "true "
    for bad in ("{digit!r}", "{digit:>3}", "{a.b}", "{0}", "{unclosed"):
        with pytest.raises(ExpressionError):
            parse_template(bad)
