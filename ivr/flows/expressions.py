"""The flow expression language: a small, safe subset of Python expression syntax.

Conditions (``branch``) and assignments (``set``) are written as expressions such as
``profile.bad_actor or startswith(caller, '+1900')``. Parsing and checking happen when the flow
is loaded (:func:`parse_expression`, :meth:`Expression.check`), so a typo is a located problem
for the admin, never an error in the middle of a call. Evaluation uses the maintained
`simpleeval` library (no ``eval``, no attribute walking, no imports) on top of our own
whitelist of syntax, names and functions, and bounded string sizes.

What is allowed: literals (strings, numbers, ``true``/``false`` as ``True``/``False``, tuples
and lists of literals), names of the call (``caller``, ``called``, ``trunk``, ``language``) and
of the flow's variables, ``headers['X-Foo']`` (a header of the initial INVITE, ``''`` when
absent), ``profile.<field>``, comparisons (``== != < <= > >= in not in``), ``and``/``or``/
``not``, ``+`` and ``-``, conditional ``a if c else b``, and the functions in
:data:`FUNCTIONS`.
"""

from __future__ import annotations

import ast
import difflib
import re
import types
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import simpleeval  # type: ignore[import-untyped]

__all__ = [
    "BUILTIN_NAMES",
    "FUNCTIONS",
    "MAX_EXPRESSION_CHARS",
    "MAX_STRING_CHARS",
    "EvaluationError",
    "Expression",
    "ExpressionError",
    "HeaderView",
    "Template",
    "parse_expression",
    "parse_template",
]

MAX_EXPRESSION_CHARS = 1000
"""Longest expression accepted in a flow file."""

MAX_STRING_CHARS = 4096
"""Longest string an expression may build or test (``+``, ``matches`` input)."""

MAX_NUMBER = 10**15
"""Largest absolute number an expression may produce (``int()`` of digits, ``+``, ``-``)."""

BUILTIN_NAMES = frozenset({"caller", "called", "trunk", "language", "headers", "profile"})
"""Names every expression may use besides the flow's variables."""

_CONSTANT_NAMES = {"True": True, "False": False, "None": None, "true": True, "false": False}


class ExpressionError(ValueError):
    """An expression is malformed or uses something outside the language (load time)."""


class EvaluationError(Exception):
    """Evaluating a valid expression failed for this call (e.g. ``int('12a')``)."""


# --------------------------------------------------------------------------------------------
# functions


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise EvaluationError(f"{name}() needs a string (got {type(value).__name__})")
    if len(value) > MAX_STRING_CHARS:
        raise EvaluationError(f"{name}() input longer than {MAX_STRING_CHARS} characters")
    return value


def _startswith(value: Any, prefix: Any) -> bool:
    return _text(value, "startswith").startswith(_text(prefix, "startswith"))


def _endswith(value: Any, suffix: Any) -> bool:
    return _text(value, "endswith").endswith(_text(suffix, "endswith"))


def _matches(value: Any, pattern: Any) -> bool:
    # Like CEL's matches(): true when the pattern is found anywhere; anchor with ^ and $.
    return re.search(_text(pattern, "matches"), _text(value, "matches")) is not None


def _len(value: Any) -> int:
    if isinstance(value, str | tuple | list):
        return len(value)
    raise EvaluationError(f"len() needs a string (got {type(value).__name__})")


def _lower(value: Any) -> str:
    return _text(value, "lower").lower()


def _upper(value: Any) -> str:
    return _text(value, "upper").upper()


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    text = _text(value, "int").strip()
    if not re.fullmatch(r"[+-]?[0-9]{1,15}", text):
        raise EvaluationError(f"int() of {text[:40]!r}: not a whole number of at most 15 digits")
    return int(text)


def _str(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, str | int | float):
        return str(value)
    raise EvaluationError(f"str() of {type(value).__name__}")


FUNCTIONS: Mapping[str, Callable[..., Any]] = types.MappingProxyType(
    {
        "startswith": _startswith,
        "endswith": _endswith,
        "matches": _matches,
        "len": _len,
        "lower": _lower,
        "upper": _upper,
        "int": _int,
        "str": _str,
    }
)
"""Every function an expression may call, with its number of arguments in _ARITY."""

_ARITY = {
    "startswith": 2,
    "endswith": 2,
    "matches": 2,
    "len": 1,
    "lower": 1,
    "upper": 1,
    "int": 1,
    "str": 1,
}


# --------------------------------------------------------------------------------------------
# values the evaluator sees


class HeaderView:
    """The initial INVITE's headers for ``headers['X-Foo']``: case-insensitive, first value,
    ``''`` when the header is absent."""

    __slots__ = ("_values",)

    def __init__(self, headers: Mapping[str, tuple[str, ...] | list[str]]) -> None:
        self._values = {name.lower(): tuple(values) for name, values in headers.items()}

    def __getitem__(self, name: object) -> str:
        if not isinstance(name, str):
            raise EvaluationError("headers[...] needs a header name")
        values = self._values.get(name.lower(), ())
        return values[0] if values else ""


def _safe_add(a: Any, b: Any) -> Any:
    if isinstance(a, str) != isinstance(b, str):
        raise EvaluationError("cannot add a string and a number (use str())")
    result = a + b
    _check_size(result)
    return result


def _safe_sub(a: Any, b: Any) -> Any:
    if isinstance(a, str) or isinstance(b, str):
        raise EvaluationError("cannot subtract strings")
    result = a - b
    _check_size(result)
    return result


def _check_size(value: Any) -> None:
    if isinstance(value, str) and len(value) > MAX_STRING_CHARS:
        raise EvaluationError(f"string longer than {MAX_STRING_CHARS} characters")
    if isinstance(value, int | float) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
        raise EvaluationError(f"number larger than {MAX_NUMBER}")


def _contains(container: Any, item: Any) -> bool:
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvaluationError("'in' a string needs a string on the left")
        return item in container
    if isinstance(container, tuple | list):
        return item in container
    raise EvaluationError(f"'in' needs a string or a list (got {type(container).__name__})")


def _ordered(op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        numbers = (int, float)
        if isinstance(a, numbers) and isinstance(b, numbers):
            return op(a, b)
        if isinstance(a, str) and isinstance(b, str):
            return op(a, b)
        raise EvaluationError(
            f"cannot order {type(a).__name__} and {type(b).__name__} (use int() on digits)"
        )

    return compare


_OPERATORS: dict[type[ast.AST], Callable[..., Any]] = {
    ast.Add: _safe_add,
    ast.Sub: _safe_sub,
    ast.USub: lambda a: -a,
    ast.Not: lambda a: not a,
    ast.Eq: lambda a, b: a == b,
    ast.NotEq: lambda a, b: a != b,
    ast.Lt: _ordered(lambda a, b: a < b),
    ast.LtE: _ordered(lambda a, b: a <= b),
    ast.Gt: _ordered(lambda a, b: a > b),
    ast.GtE: _ordered(lambda a, b: a >= b),
    ast.In: lambda a, b: _contains(b, a),
    ast.NotIn: lambda a, b: not _contains(b, a),
}


# --------------------------------------------------------------------------------------------
# load-time checking


_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Call,
    ast.Subscript,
    ast.Attribute,
    ast.Tuple,
    ast.List,
    ast.IfExp,
)

_DESCRIBE = {
    ast.Lambda: "lambda",
    ast.ListComp: "comprehensions",
    ast.GeneratorExp: "comprehensions",
    ast.SetComp: "comprehensions",
    ast.DictComp: "comprehensions",
    ast.Dict: "dict literals",
    ast.Set: "set literals",
    ast.JoinedStr: "f-strings",
    ast.Pow: "'**'",
    ast.Mult: "'*'",
    ast.Div: "'/'",
    ast.FloorDiv: "'//'",
    ast.Mod: "'%'",
    ast.NamedExpr: "':='",
    ast.Starred: "'*' unpacking",
    ast.Slice: "slices",
    ast.Is: "'is' (use ==)",
    ast.IsNot: "'is not' (use !=)",
    ast.BitAnd: "'&' (use and)",
    ast.BitOr: "'|' (use or)",
    ast.Invert: "'~'",
    ast.BitXor: "'^'",
    ast.LShift: "'<<'",
    ast.RShift: "'>>'",
    ast.Await: "await",
    ast.Yield: "yield",
}


@dataclass(frozen=True, slots=True, eq=False)
class Expression:
    """A parsed expression, syntax-checked; :meth:`check` validates its names."""

    text: str
    tree: ast.Expression = field(repr=False)

    def names(self) -> Iterator[str]:
        """Every bare name the expression reads (variables and builtins)."""
        called = self._called_names()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id not in _CONSTANT_NAMES:
                if id(node) not in called:
                    yield node.id

    def _called_names(self) -> set[int]:
        return {
            id(node.func)
            for node in ast.walk(self.tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        }

    def check(self, variables: frozenset[str], profile_fields: frozenset[str]) -> list[str]:
        """Problems with the names this expression uses, as messages (empty when fine)."""
        problems: list[str] = []
        known = variables | BUILTIN_NAMES
        called = self._called_names()
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id not in _CONSTANT_NAMES:
                if id(node) in called:
                    continue
                if node.id in FUNCTIONS:
                    problems.append(f"{node.id!r} is a function: call it as {node.id}(...)")
                elif node.id not in known:
                    problems.append(_unknown("name", node.id, sorted(known)))
                elif node.id in ("headers", "profile") and not _used_properly(self.tree, node):
                    usage = "headers['X-Name']" if node.id == "headers" else "profile.<field>"
                    problems.append(f"{node.id!r} can only be used as {usage}")
            elif isinstance(node, ast.Attribute):
                if not (isinstance(node.value, ast.Name) and node.value.id == "profile"):
                    problems.append("'.' is only allowed as profile.<field>")
                elif node.attr not in profile_fields:
                    problems.append(_unknown("profile field", node.attr, sorted(profile_fields)))
        return problems

    def evaluate(self, scope: Mapping[str, Any]) -> Any:
        """Evaluate with ``scope`` (variables and builtins); raise :class:`EvaluationError`."""
        evaluator = simpleeval.SimpleEval(
            operators=dict(_OPERATORS),
            functions=dict(FUNCTIONS),
            names={**_CONSTANT_NAMES, **scope},
        )
        # profile is a SimpleNamespace: never fall back from .x to ['x'] on other objects.
        evaluator.ATTR_INDEX_FALLBACK = False
        evaluator.nodes[ast.Tuple] = lambda node: tuple(evaluator._eval(e) for e in node.elts)
        evaluator.nodes[ast.List] = lambda node: tuple(evaluator._eval(e) for e in node.elts)
        try:
            result = evaluator.eval(self.text, previously_parsed=self.tree.body)
        except EvaluationError:
            raise
        except (
            simpleeval.InvalidExpression,
            ArithmeticError,
            TypeError,
            ValueError,
            KeyError,
            AttributeError,
            re.error,
            RecursionError,
        ) as exc:
            raise EvaluationError(f"{type(exc).__name__}: {exc}") from None
        _check_size(result)
        return result


def _used_properly(tree: ast.AST, name: ast.Name) -> bool:
    for node in ast.walk(tree):
        if name.id == "headers" and isinstance(node, ast.Subscript) and node.value is name:
            return isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)
        if name.id == "profile" and isinstance(node, ast.Attribute) and node.value is name:
            return True
    return False


def _unknown(kind: str, name: str, known: list[str]) -> str:
    message = f"unknown {kind} {name!r}"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message


def parse_expression(text: str) -> Expression:
    """Parse and syntax-check one expression; raise :class:`ExpressionError` with a message
    an admin can act on. Names are checked later by :meth:`Expression.check`."""
    if not isinstance(text, str):
        raise ExpressionError("must be an expression written as a string")
    if not text.strip():
        raise ExpressionError("expression is empty")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    source = text.strip()
    try:
        with warnings.catch_warnings():
            # '\+' in a regex literal is an "invalid escape" to Python but kept as written,
            # which is what an admin writing matches(caller, '^\+33') means.
            warnings.simplefilter("ignore", (DeprecationWarning, SyntaxWarning))
            tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"expression syntax error{where}: {exc.msg}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            what = _DESCRIBE.get(type(node), type(node).__name__)
            raise ExpressionError(f"{what} not allowed in expressions")
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, str | int | float | bool) and node.value is not None:
                raise ExpressionError(f"literal {node.value!r} not allowed in expressions")
            if isinstance(node.value, str) and len(node.value) > MAX_STRING_CHARS:
                raise ExpressionError(f"string longer than {MAX_STRING_CHARS} characters")
            if (
                isinstance(node.value, int | float)
                and not isinstance(node.value, bool)
                and (abs(node.value) > MAX_NUMBER)
            ):
                raise ExpressionError(f"number larger than {MAX_NUMBER}")
        if isinstance(node, ast.Call):
            _check_call(node)
        if isinstance(node, ast.Subscript) and not (
            isinstance(node.value, ast.Name) and node.value.id == "headers"
        ):
            raise ExpressionError("[...] is only allowed as headers['X-Name']")
        if isinstance(node, ast.Subscript) and not (
            isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)
        ):
            raise ExpressionError("headers[...] needs a quoted header name")
        if isinstance(node, ast.Tuple | ast.List) and not all(
            isinstance(e, ast.Constant) for e in node.elts
        ):
            raise ExpressionError("lists may only hold literals, e.g. ('fr', 'en')")
    return Expression(text=source, tree=tree)


def _check_call(node: ast.Call) -> None:
    if not isinstance(node.func, ast.Name):
        raise ExpressionError("only the functions " + ", ".join(FUNCTIONS) + " may be called")
    name = node.func.id
    if name not in FUNCTIONS:
        raise ExpressionError(_unknown("function", name, sorted(FUNCTIONS)))
    if node.keywords:
        raise ExpressionError(f"{name}() takes no keyword arguments")
    if len(node.args) != _ARITY[name]:
        raise ExpressionError(f"{name}() takes {_ARITY[name]} argument(s), got {len(node.args)}")
    if name == "matches":
        pattern = node.args[1]
        if not (isinstance(pattern, ast.Constant) and isinstance(pattern.value, str)):
            raise ExpressionError("matches() needs a quoted regular expression as 2nd argument")
        try:
            re.compile(pattern.value)
        except re.error as exc:
            raise ExpressionError(f"matches(): bad regular expression: {exc}") from None


# --------------------------------------------------------------------------------------------
# TTS templates


_TEMPLATE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Template:
    """TTS text with ``{name}`` placeholders (``{{``/``}}`` for literal braces)."""

    text: str
    parts: tuple[tuple[str, str | None], ...] = field(repr=False)

    def names(self) -> frozenset[str]:
        return frozenset(name for _, name in self.parts if name is not None)

    def render(self, scope: Mapping[str, Any]) -> str:
        out: list[str] = []
        for literal, name in self.parts:
            out.append(literal)
            if name is not None:
                out.append(_str(scope.get(name, "")))
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse ``{name}`` placeholders; raise :class:`ExpressionError` on bad syntax."""
    import string

    parts: list[tuple[str, str | None]] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise ExpressionError(
            f"bad placeholder: {exc} (write {{{{ and }}}} for literal braces)"
        ) from None
    for literal, name, spec, conversion in parsed:
        if name is not None:
            if not _TEMPLATE_NAME.fullmatch(name) or spec or conversion:
                raise ExpressionError(
                    f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                    f"{':' + spec if spec else ''}}} must be a plain variable name like {{digit}}"
                )
        parts.append((literal, name))
    return Template(text=text, parts=tuple(parts))
