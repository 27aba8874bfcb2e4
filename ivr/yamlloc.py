"""YAML documents that remember where every value came from, and located validation errors.

Admins edit YAML by hand; every problem we report must say ``file:line:column``, the path of
the value (``trunks[0].sources[1]``) and what is wrong, all problems at once. This module is
generic: engine settings (``ivr.config``) and the flow language both load through it.

Loading is safe and bounded: a :class:`yaml.SafeLoader` subclass (never unsafe construction),
a file-size cap, a cap on the number of nodes after alias expansion (billion-laughs), a nesting
cap, and duplicate keys in one mapping are an error (YAML itself silently keeps the last one,
which is how admins lose edits).
"""

from __future__ import annotations

import difflib
import os
import types
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

__all__ = [
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "MAX_NODES",
    "ConfigError",
    "ConfigPath",
    "DocPath",
    "LocatedDocument",
    "Location",
    "Problem",
    "format_path",
    "load_yaml",
    "located_error",
    "merge_errors",
    "resolve_path",
    "validate",
]

MAX_FILE_BYTES = 2 * 1024 * 1024
"""Refuse YAML files larger than this (2 MiB): configs and flows are hand-written."""

MAX_NODES = 100_000
"""Refuse documents with more nodes than this once aliases are expanded (alias bombs)."""

MAX_DEPTH = 64
"""Refuse documents nested deeper than this (also stops self-referencing aliases)."""

DocPath = tuple[str | int, ...]
"""Address of a node: mapping keys and sequence indexes from the root, e.g.
``("trunks", 0, "sources", 1)``."""

# The type tag of a located error raised from a validator; see located_error().
_LOCATED = "switchhook_located"

M = TypeVar("M", bound=BaseModel)


# --------------------------------------------------------------------------------------------
# Problems


def format_path(path: Iterable[str | int]) -> str:
    """Render a path the way admins read it: ``trunks[0].sources[1]``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else str(part))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in one file, located as precisely as we know."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A YAML file could not be loaded or validated; carries every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        if not problems:
            raise ValueError("ConfigError needs at least one problem")
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


# --------------------------------------------------------------------------------------------
# Located documents


@dataclass(frozen=True, slots=True)
class Location:
    """1-based line and column of a node in its file."""

    line: int
    column: int

    @classmethod
    def from_mark(cls, mark: yaml.Mark) -> Location:
        return cls(line=mark.line + 1, column=mark.column + 1)


@dataclass(frozen=True, slots=True)
class LocatedDocument:
    """A parsed YAML document (plain dicts, lists and scalars) plus where each node is.

    ``value_locations[path]`` is where the value at ``path`` starts; ``key_locations[path]``
    is where its key is written (mapping entries only). The root is at path ``()``.
    """

    file: str
    data: Any
    value_locations: Mapping[DocPath, Location] = field(repr=False)
    key_locations: Mapping[DocPath, Location] = field(repr=False)

    def get(self, path: Iterable[str | int]) -> Any:
        """The value at ``path``; raises KeyError if there is none."""
        node = self.data
        for part in path:
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif (
                isinstance(node, list)
                and isinstance(part, int)
                and not isinstance(part, bool)
                and 0 <= part < len(node)
            ):
                node = node[part]
            else:
                raise KeyError(tuple(path))
        return node

    def deepest_existing(self, path: Iterable[str | int]) -> DocPath:
        """The longest prefix of ``path`` that names a node of this document."""
        best: DocPath = ()
        current: list[str | int] = []
        for part in path:
            current.append(part)
            if tuple(current) in self.value_locations:
                best = tuple(current)
            else:
                break
        return best

    def location(self, path: Iterable[str | int], *, key: bool = False) -> Location | None:
        """Where ``path`` is, or where its deepest existing ancestor is.

        With ``key=True`` prefer the key of a mapping entry (for unknown fields and for
        missing fields located at their parent).
        """
        found = self.deepest_existing(path)
        if key and found in self.key_locations:
            return self.key_locations[found]
        return self.value_locations.get(found)


class _Loader(yaml.SafeLoader):
    """SafeLoader; we only use it to compose nodes and construct scalars safely."""


class _TooLarge(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark


class _Builder:
    """Turns a composed node graph into plain data, recording locations as it goes."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self._loader = loader
        self._file = file
        self._nodes = 0
        self.values: dict[DocPath, Location] = {}
        self.keys: dict[DocPath, Location] = {}
        self.problems: list[Problem] = []

    def _problem(self, mark: yaml.Mark | None, path: DocPath, message: str) -> None:
        loc = Location.from_mark(mark) if mark is not None else None
        self.problems.append(
            Problem(
                file=self._file,
                line=loc.line if loc else None,
                column=loc.column if loc else None,
                path=format_path(path),
                message=message,
            )
        )

    def build(self, node: yaml.Node, path: DocPath, depth: int = 0) -> Any:
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _TooLarge(
                f"document has more than {MAX_NODES} nodes after expanding aliases", node.start_mark
            )
        if depth > MAX_DEPTH:
            raise _TooLarge(f"document is nested deeper than {MAX_DEPTH} levels", node.start_mark)
        self.values.setdefault(path, Location.from_mark(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            if node.tag != "tag:yaml.org,2002:seq":
                self._problem(node.start_mark, path, f"unsupported YAML tag {node.tag!r}")
                return None
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        try:
            return self._loader.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self._problem(exc.problem_mark or node.start_mark, path, _yaml_message(exc))
            return None
        except (ValueError, OverflowError) as exc:
            # e.g. an unquoted impossible date (2026-02-30): YAML resolves it as a timestamp
            # and the constructor raises; report it where it is written.
            self._problem(node.start_mark, path, f"invalid value {node.value!r}: {exc}")
            return None

    def _mapping(self, node: yaml.MappingNode, path: DocPath, depth: int) -> dict[Any, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            self._problem(node.start_mark, path, f"unsupported YAML tag {node.tag!r}")
            return {}
        # Duplicates are checked among the keys written in this mapping; keys brought in by a
        # merge (`<<: *defaults`) are meant to be overridden, so they are not duplicates.
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = Location.from_mark(seen[key])
                self._problem(
                    key_node.start_mark,
                    (*path, key),
                    f"duplicate key {key!r} (first defined at line {first.line}); "
                    "YAML would silently keep only the last one",
                )
            else:
                seen[key] = key_node.start_mark
        try:
            self._loader.flatten_mapping(node)
        except yaml.constructor.ConstructorError as exc:
            self._problem(exc.problem_mark or node.start_mark, path, _yaml_message(exc))
            return {}
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path, report=False)
            if key is None:
                continue
            child = (*path, key)
            # Merged entries come first and explicit ones later: keep the explicit location.
            self.keys[child] = Location.from_mark(key_node.start_mark)
            self.values.pop(child, None)
            result[key] = self.build(value_node, child, depth + 1)
        return result

    def _key(self, key_node: yaml.Node, path: DocPath, *, report: bool = True) -> Any:
        if not isinstance(key_node, yaml.ScalarNode):
            if report:
                self._problem(key_node.start_mark, path, "mapping keys must be plain scalars")
            return None
        try:
            return self._loader.construct_object(key_node)
        except yaml.constructor.ConstructorError as exc:
            if report:
                self._problem(exc.problem_mark or key_node.start_mark, path, _yaml_message(exc))
            return None


def _yaml_message(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "invalid YAML"
    if exc.context:
        context = exc.context
        if exc.context_mark is not None and exc.context_mark != exc.problem_mark:
            context += f" at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1}"
        return f"YAML syntax error: {problem} ({context})"
    return f"YAML syntax error: {problem}"


def _line_column(text: str, index: int) -> tuple[int, int]:
    before = text[:index]
    line = before.count("\n") + 1
    return line, index - (before.rfind("\n") + 1) + 1


def _fail(file: str, message: str, line: int | None = None, column: int | None = None) -> NoReturn:
    raise ConfigError([Problem(file=file, line=line, column=column, path="", message=message)])


def load_yaml(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> LocatedDocument:
    """Load one YAML document whose root is a mapping, keeping every node's location.

    An empty document (or one with only comments) is an empty mapping. Raises
    :class:`ConfigError` for a missing or unreadable file, a file over ``max_bytes``, bad
    UTF-8, YAML syntax errors, duplicate keys, alias bombs and a root that is not a mapping.
    """
    file = os.fspath(path)
    try:
        with open(file, "rb") as stream:
            raw = stream.read(max_bytes + 1)
    except FileNotFoundError:
        _fail(file, "file not found")
    except IsADirectoryError:
        _fail(file, "is a directory, not a YAML file")
    except OSError as exc:
        _fail(file, f"cannot read file: {exc.strerror or exc}")
    if len(raw) > max_bytes:
        _fail(file, f"file is larger than {max_bytes} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        good = raw[: exc.start].decode("utf-8-sig", errors="replace")
        line, column = _line_column(good, len(good))
        _fail(file, f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})", line, column)

    try:
        # The reader checks for unprintable characters as soon as it is constructed.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line, column = _line_column(text, exc.position)
        _fail(file, f"character {exc.character:#x} is not allowed in YAML", line, column)
    loader.name = file
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            loc = Location.from_mark(mark) if mark is not None else None
            _fail(file, _yaml_message(exc), loc.line if loc else None, loc.column if loc else None)
        except yaml.reader.ReaderError as exc:
            line, column = _line_column(text, exc.position)
            _fail(file, f"character {exc.character:#x} is not allowed in YAML", line, column)
        except RecursionError:
            _fail(file, f"document is nested deeper than {MAX_DEPTH} levels")
        if root is None:
            return LocatedDocument(
                file=file, data={}, value_locations={(): Location(1, 1)}, key_locations={}
            )
        if not isinstance(root, yaml.MappingNode):
            loc = Location.from_mark(root.start_mark)
            _fail(
                file, "the document must be a mapping of 'key: value' entries", loc.line, loc.column
            )
        builder = _Builder(loader, file)
        try:
            data = builder.build(root, ())
        except _TooLarge as exc:
            loc = Location.from_mark(exc.mark) if exc.mark is not None else None
            _fail(file, exc.message, loc.line if loc else None, loc.column if loc else None)
        if builder.problems:
            raise ConfigError(_sorted(builder.problems))
        return LocatedDocument(
            file=file, data=data, value_locations=builder.values, key_locations=builder.keys
        )
    finally:
        loader.dispose()


# --------------------------------------------------------------------------------------------
# Validation


def located_error(*problems: tuple[DocPath, str]) -> PydanticCustomError:
    """An error for a validator to raise, located at paths relative to the validated value.

    A model's ``mode="after"`` validator only gets the model's own location; cross-field
    checks want to point at the offending field or list item, possibly several at once::

        raise located_error((("listen", 1), "duplicate listener udp 127.0.0.1:5060"))
    """
    if not problems:
        raise ValueError("located_error needs at least one problem")
    message = "; ".join(message for _, message in problems)
    return PydanticCustomError(
        _LOCATED,
        "{message}",
        {"message": message, "problems": tuple((tuple(p), m) for p, m in problems)},
    )


def merge_errors(error: ValidationError | None, extra: PydanticCustomError) -> ValidationError:
    """Combine the errors of a wrapped handler with one more (for ``mode="wrap"`` checks).

    Lets a wrap validator report a cross-item problem even when some items failed on their
    own, so an admin sees every problem at once.
    """
    details: list[InitErrorDetails] = []
    if error is not None:
        for entry in error.errors(include_url=False):
            ctx = dict(entry.get("ctx") or {})
            ctx["_message"] = entry["msg"]
            details.append(
                InitErrorDetails(
                    type=PydanticCustomError(entry["type"], "{_message}", ctx),
                    loc=entry["loc"],
                    input=entry["input"],
                )
            )
    details.append(InitErrorDetails(type=extra, loc=(), input=None))
    return ValidationError.from_exception_data("validation", details)


def validate(
    document: LocatedDocument,
    model: type[M],
    *,
    file: str | None = None,
    context: dict[str, Any] | None = None,
) -> M:
    """Validate ``document.data`` against ``model``; every error becomes a located Problem.

    ``file`` overrides the file name used in problems (default: the document's). ``context``
    is passed to pydantic validators (``info.context``). Raises :class:`ConfigError` with
    all problems, sorted by position in the file.
    """
    name = document.file if file is None else file
    try:
        return model.model_validate(document.data, context=context)
    except ValidationError as exc:
        problems: list[Problem] = []
        for entry in exc.errors(include_url=False):
            problems.extend(_problems_from_error(document, model, name, entry))
        raise ConfigError(_sorted(problems)) from None


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(
        problems,
        key=lambda p: (p.line is None, p.line or 0, p.column or 0),
    )


def _problems_from_error(
    document: LocatedDocument, model: type[BaseModel], file: str, entry: Mapping[str, Any]
) -> Iterator[Problem]:
    kind: str = entry["type"]
    path = _doc_path(document.data, entry["loc"])
    if kind == _LOCATED:
        for subpath, message in entry["ctx"]["problems"]:
            yield _locate(document, file, (*path, *subpath), message)
        return
    if kind == "extra_forbidden":
        name = path[-1] if path else "?"
        message = f"unknown field {name!r} (extra fields are not permitted)"
        known = _known_fields(model, path[:-1])
        if isinstance(name, str) and known:
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            if close:
                message += f"; did you mean {close[0]!r}?"
        yield _locate(document, file, path, message, key=True)
        return
    if kind == "missing":
        yield _locate(document, file, path, "field required", key=True)
        return
    yield _locate(document, file, path, _clean_message(entry))


def _locate(
    document: LocatedDocument, file: str, path: DocPath, message: str, *, key: bool = False
) -> Problem:
    loc = document.location(path, key=key)
    return Problem(
        file=file,
        line=loc.line if loc else None,
        column=loc.column if loc else None,
        path=format_path(path),
        message=message,
    )


def _doc_path(data: Any, loc: Sequence[str | int]) -> DocPath:
    """Map a pydantic ``loc`` onto document keys.

    pydantic inserts tags that are not document keys (union member names, ``function-after``
    ...); skip any element that does not exist in the data, except the last one (a missing or
    unknown field).
    """
    path: list[str | int] = []
    node = data
    for index, part in enumerate(loc):
        last = index == len(loc) - 1
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif (
            isinstance(node, list)
            and isinstance(part, int)
            and not isinstance(part, bool)
            and 0 <= part < len(node)
        ):
            path.append(part)
            node = node[part]
        elif last:
            path.append(part)
            node = None
        # else: a pydantic tag, not a document key
    return tuple(path)


def _known_fields(model: type[BaseModel], path: DocPath) -> set[str]:
    """Field names (and aliases) of the model found at ``path``, if we can tell."""
    current: Any = model
    for part in path:
        current = _descend(current, part)
        if current is None:
            return set()
    models = _models_in(current)
    names: set[str] = set()
    for found in models:
        for name, info in found.model_fields.items():
            names.add(info.alias or name)
    return names


def _unwrap(annotation: Any) -> Any:
    while hasattr(annotation, "__metadata__"):  # Annotated[X, ...]
        annotation = get_args(annotation)[0]
    return annotation


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    annotation = _unwrap(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _models_in(arg)]
    return []


def _descend(annotation: Any, part: str | int) -> Any:
    annotation = _unwrap(annotation)
    if isinstance(part, str):
        for found in _models_in(annotation):
            for name, info in found.model_fields.items():
                if part in (name, info.alias):
                    return info.annotation
        return None
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            found_type = _descend(arg, part)
            if found_type is not None:
                return found_type
        return None
    if origin in (list, tuple, set, frozenset):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        if origin is tuple and len(args) > 1:
            return args[part] if 0 <= part < len(args) else None
        return args[0] if args else None
    return None


_GOT_TYPES = (str, int, float, bool)


def _clean_message(entry: Mapping[str, Any]) -> str:
    """pydantic's messages, reworded for admins editing YAML."""
    kind: str = entry["type"]
    msg: str = entry["msg"]
    ctx: Mapping[str, Any] = entry.get("ctx") or {}
    value = entry.get("input")
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            return msg[len(prefix) :]
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of 'key: value' entries (got {_describe(value)})"
    if kind in ("list_type", "tuple_type", "set_type"):
        return f"must be a list (got {_describe(value)})"
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        return f"must be one of {expected.replace(' or ', ', ')} (got {_describe(value)})"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return f"must be a whole number (got {_describe(value)})"
    if kind in ("float_parsing", "float_type"):
        return f"must be a number (got {_describe(value)})"
    if kind in ("bool_parsing", "bool_type"):
        return f"must be true or false (got {_describe(value)})"
    if kind in ("string_type",):
        return f"must be a string (got {_describe(value)})"
    bounds = {
        "greater_than": ("gt", ">"),
        "greater_than_equal": ("ge", ">="),
        "less_than": ("lt", "<"),
        "less_than_equal": ("le", "<="),
    }
    if kind in bounds:
        key, sign = bounds[kind]
        return f"must be {sign} {ctx.get(key)} (got {_describe(value)})"
    if kind in ("string_too_short", "too_short") and ctx.get("min_length") == 1:
        return "must not be empty"
    if msg.startswith("Input should be "):
        msg = "must be " + msg[len("Input should be ") :]
        if isinstance(value, _GOT_TYPES):
            msg += f" (got {_describe(value)})"
    return msg


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def no_control_chars(value: str) -> str:
    """Validator: config strings end up in SIP headers, SDP and TTS; CR/LF would inject."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError("must not contain control characters (line breaks, tabs)")
    return value


def resolve_in_context(value: Path, info: ValidationInfo) -> Path:
    """Validator: a path relative to the config file (``context={"base_dir": ...}``)."""
    base = (info.context or {}).get("base_dir")
    return resolve_path(value, Path(base) if base is not None else None)


def resolve_path(value: str | os.PathLike[str], base_dir: Path | None) -> Path:
    """A config path, relative paths taken against ``base_dir`` (the YAML file's directory)."""
    path = Path(value).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    return Path(os.path.normpath(path))


# A path in a config model, relative paths resolved against the config file's directory (the
# ``base_dir`` of the validation context). Give a default ``validate_default=True`` so the
# default resolves too.
ConfigPath = Annotated[Path, AfterValidator(resolve_in_context)]
