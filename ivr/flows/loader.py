"""Load and validate every flow file of a directory into one immutable :class:`FlowSet`.

All problems of all files are collected and raised together as one
:class:`~ivr.yamlloc.ConfigError`, each located ``file:line:column: nodes.<id>.<field>:``:
YAML and field errors, unknown node types (with the closest known one), missing targets,
unreachable nodes, missing prompt files, bad patterns and expressions, empty TTS text,
loops that can spin without waiting for the caller, duplicate flow ids, subflows to missing
flows or calling themselves, and routes to missing flows.

A :class:`FlowSet` is a snapshot: hot reload builds a new one and swaps it in; calls keep
the one they started with.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ivr.yamlloc import (
    ConfigError,
    DocPath,
    LocatedDocument,
    Problem,
    format_path,
    load_yaml,
    validate,
)

from . import nodes as _nodes  # noqa: F401 - registers the built-in node types
from .expressions import BUILTIN_NAMES, FUNCTIONS, parse_template
from .model import (
    _ID,
    NODE_TYPES,
    FileItem,
    FlowSpec,
    NodeSpec,
    PromptVariants,
    RoutesConfig,
    TtsItem,
)
from .profile import ProfileConfig

__all__ = [
    "Flow",
    "FlowSet",
    "check_routes",
    "load_flow_files",
    "load_flow_set",
]

TEMPLATE_NAMES = frozenset({"caller", "called", "trunk", "language"})
"""Builtins a TTS ``{placeholder}`` may use besides the flow's variables."""

_RESERVED_VARIABLES = (
    BUILTIN_NAMES | frozenset(FUNCTIONS) | {"True", "False", "None", "true", "false"}
)


@dataclass(frozen=True, slots=True)
class Flow:
    """One validated flow: its nodes by id and its variables' initial values."""

    id: str
    file: str
    description: str | None
    entry: str
    language: str | None
    variables: Mapping[str, str | int | float | bool]
    nodes: Mapping[str, NodeSpec]


@dataclass(frozen=True, slots=True)
class FlowSet:
    """Every flow of a directory, validated together; immutable."""

    flows: Mapping[str, Flow]
    prompts_dir: Path
    routes: RoutesConfig
    profile: ProfileConfig

    def flow(self, flow_id: str) -> Flow:
        return self.flows[flow_id]

    def route(self, trunk: str | None, dialled: str) -> str:
        """The id of the flow for a call from ``trunk`` to ``dialled`` (first matching rule,
        else the default route)."""
        return self.routes.select(trunk, dialled)


# --------------------------------------------------------------------------------------------
# entry points


def load_flow_set(
    flows_dir: str | os.PathLike[str],
    *,
    prompts_dir: str | os.PathLike[str],
    routes: RoutesConfig | None = None,
    profile: ProfileConfig | None = None,
    routes_source: LocatedDocument | None = None,
) -> FlowSet:
    """Load every ``*.yaml`` in ``flows_dir`` (not recursive, sorted by name).

    ``routes`` are checked against the flows (``routes_source``, the config document they
    came from, locates those problems); with ``routes=None`` the default route to flow
    ``default`` is used and not checked. Raises :class:`ConfigError` with every problem.
    """
    directory = Path(flows_dir)
    if not directory.is_dir():
        raise ConfigError(
            [
                Problem(
                    file=str(directory),
                    line=None,
                    column=None,
                    path="",
                    message="flows directory not found",
                )
            ]
        )
    files = sorted(p for p in directory.glob("*.yaml") if p.is_file())
    if not files:
        raise ConfigError(
            [
                Problem(
                    file=str(directory),
                    line=None,
                    column=None,
                    path="",
                    message="no flow files (*.yaml) in the flows directory",
                )
            ]
        )
    return load_flow_files(
        files,
        prompts_dir=prompts_dir,
        routes=routes,
        profile=profile,
        routes_source=routes_source,
    )


def load_flow_files(
    files: Sequence[str | os.PathLike[str]],
    *,
    prompts_dir: str | os.PathLike[str],
    routes: RoutesConfig | None = None,
    profile: ProfileConfig | None = None,
    routes_source: LocatedDocument | None = None,
) -> FlowSet:
    """Load the given flow files as one set; see :func:`load_flow_set`."""
    loader = _Loader(Path(prompts_dir), profile or ProfileConfig())
    for file in files:
        loader.load_file(os.fspath(file))
    loader.check_set()
    flow_set = FlowSet(
        flows=types.MappingProxyType(dict(loader.flows)),
        prompts_dir=Path(os.path.abspath(prompts_dir)),
        routes=routes or RoutesConfig(),
        profile=profile or ProfileConfig(),
    )
    problems = loader.sorted_problems()
    if routes is not None:
        problems.extend(_route_problems(routes, set(loader.flow_files), routes_source, ("routes",)))
    if problems:
        raise ConfigError(problems)
    return flow_set


def check_routes(
    routes: RoutesConfig,
    flow_set: FlowSet,
    *,
    source: LocatedDocument | None = None,
    base: DocPath = ("routes",),
) -> list[Problem]:
    """Routes that name a flow missing from ``flow_set``. With ``source`` (the config
    document) and ``base`` (where ``routes`` sits in it) the problems are located."""
    return _route_problems(routes, set(flow_set.flows), source, base)


def _route_problems(
    routes: RoutesConfig,
    flow_ids: set[str],
    source: LocatedDocument | None,
    base: DocPath,
) -> list[Problem]:
    problems: list[Problem] = []
    checks: list[tuple[DocPath, str]] = [((*base, "default"), routes.default)]
    checks += [((*base, "rules", i, "flow"), rule.flow) for i, rule in enumerate(routes.rules)]
    for path, flow_id in checks:
        if flow_id in flow_ids:
            continue
        message = f"route to flow {flow_id!r}, which does not exist" + _suggest(flow_id, flow_ids)
        loc = source.location(path) if source is not None else None
        problems.append(
            Problem(
                file=source.file if source is not None else "<routes>",
                line=loc.line if loc else None,
                column=loc.column if loc else None,
                path=format_path(path),
                message=message,
            )
        )
    return problems


def _suggest(name: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# --------------------------------------------------------------------------------------------
# the loader


@dataclass
class _FileState:
    file: str
    order: int
    document: LocatedDocument
    spec: FlowSpec | None
    nodes: dict[str, NodeSpec]
    all_node_ids: set[str]
    nodes_ok: bool


class _Loader:
    def __init__(self, prompts_dir: Path, profile: ProfileConfig) -> None:
        self.prompts_dir = prompts_dir
        self.profile_fields = profile.fields
        self.problems: list[tuple[int, Problem]] = []
        self.files: list[_FileState] = []
        self.flows: dict[str, Flow] = {}
        self.flow_files: dict[str, _FileState] = {}

    # ---- problems ---------------------------------------------------------------------------

    def _add(self, state_or_order: _FileState | int, problem: Problem) -> None:
        order = state_or_order if isinstance(state_or_order, int) else state_or_order.order
        self.problems.append((order, problem))

    def _at(self, state: _FileState, path: DocPath, message: str, *, key: bool = False) -> None:
        loc = state.document.location(path, key=key)
        self._add(
            state,
            Problem(
                file=state.file,
                line=loc.line if loc else None,
                column=loc.column if loc else None,
                path=format_path(path),
                message=message,
            ),
        )

    def sorted_problems(self) -> list[Problem]:
        return [
            p
            for _, p in sorted(
                self.problems,
                key=lambda item: (
                    item[0],
                    item[1].line is None,
                    item[1].line or 0,
                    item[1].column or 0,
                ),
            )
        ]

    # ---- one file ---------------------------------------------------------------------------

    def load_file(self, file: str) -> None:
        order = len(self.files)
        try:
            document = load_yaml(file)
        except ConfigError as exc:
            for problem in exc.problems:
                self._add(order, problem)
            self.files.append(
                _FileState(file, order, LocatedDocument(file, {}, {}, {}), None, {}, set(), False)
            )
            return
        state = _FileState(file, order, document, None, {}, set(), True)
        self.files.append(state)
        try:
            state.spec = validate(document, FlowSpec)
        except ConfigError as exc:
            for problem in exc.problems:
                self._add(state, problem)
        raw_nodes = document.data.get("nodes") if isinstance(document.data, dict) else None
        if isinstance(raw_nodes, dict):
            state.all_node_ids = {k for k in raw_nodes if isinstance(k, str)}
            for node_id, raw in raw_nodes.items():
                node = self._node(state, node_id, raw)
                if node is None:
                    state.nodes_ok = False
                else:
                    state.nodes[node_id] = node
        else:
            state.nodes_ok = False
        if state.spec is not None:
            self._check_flow(state, state.spec)

    def _node(self, state: _FileState, node_id: Any, raw: Any) -> NodeSpec | None:
        base: DocPath = ("nodes", node_id)
        if not isinstance(node_id, str) or not re.fullmatch(_ID, node_id):
            self._at(
                state,
                base,
                "node id must start with a letter or '_' and contain only "
                "letters, digits, '_' and '-' (at most 64)",
                key=True,
            )
            return None
        if not isinstance(raw, dict):
            self._at(state, base, "a node must be a mapping with at least 'type'")
            return None
        kind = raw.get("type")
        known = sorted(NODE_TYPES)
        if "type" not in raw:
            self._at(
                state, base, "field 'type' required (one of " + ", ".join(known) + ")", key=True
            )
            return None
        if not isinstance(kind, str) or kind not in NODE_TYPES:
            suggestion = _suggest(kind, known) if isinstance(kind, str) else ""
            message = f"unknown node type {kind!r}" + (
                suggestion or " (known types: " + ", ".join(known) + ")"
            )
            self._at(state, (*base, "type"), message)
            return None
        sub = _sub_document(state.document, base)
        try:
            return validate(sub, NODE_TYPES[kind])
        except ConfigError as exc:
            prefix = format_path(base)
            for problem in exc.problems:
                path = problem.path
                joined = (
                    prefix
                    if not path
                    else (prefix + path if path.startswith("[") else f"{prefix}.{path}")
                )
                self._add(
                    state,
                    Problem(
                        file=problem.file,
                        line=problem.line,
                        column=problem.column,
                        path=joined,
                        message=problem.message,
                    ),
                )
            return None

    def _check_flow(self, state: _FileState, spec: FlowSpec) -> None:
        ids = state.all_node_ids
        if spec.entry not in ids:
            self._at(
                state,
                ("entry",),
                f"entry node {spec.entry!r} does not exist" + _suggest(spec.entry, ids),
            )
        assigned: dict[str, DocPath] = {}
        for node_id, node in state.nodes.items():
            for path, target in node.targets():
                if target not in ids:
                    self._at(
                        state,
                        ("nodes", node_id, *path),
                        f"target node {target!r} does not exist in flow {spec.flow!r}"
                        + _suggest(target, ids),
                    )
            for path, name in node.assigned_variables():
                assigned.setdefault(name, ("nodes", node_id, *path))
        for name in spec.variables:
            if name in _RESERVED_VARIABLES:
                self._at(
                    state,
                    ("variables", name),
                    f"variable name {name!r} is reserved (builtin or function)",
                    key=True,
                )
        for name, path in assigned.items():
            if name in _RESERVED_VARIABLES:
                self._at(
                    state,
                    path,
                    f"variable name {name!r} is reserved (builtin or function)",
                    key=path[-1] == name,
                )
        variables = frozenset(spec.variables) | frozenset(assigned)
        for node_id, node in state.nodes.items():
            for path, expression in node.expressions():
                for message in expression.check(variables, self.profile_fields):
                    self._at(state, ("nodes", node_id, *path), message)
            for path, variants in node.prompt_sets():
                self._check_prompts(state, ("nodes", node_id, *path), variants, variables)
        if state.nodes_ok and spec.entry in ids:
            self._check_reachable(state, spec)
        defaults: dict[str, str | int | float | bool] = {name: "" for name in assigned}
        defaults.update(spec.variables)
        if spec.flow not in self.flow_files:
            self.flow_files[spec.flow] = state
            self.flows[spec.flow] = Flow(
                id=spec.flow,
                file=state.file,
                description=spec.description,
                entry=spec.entry,
                language=spec.language,
                variables=types.MappingProxyType(defaults),
                nodes=types.MappingProxyType(dict(state.nodes)),
            )
        else:
            first = self.flow_files[spec.flow]
            loc = first.document.location(("flow",))
            where = f"{first.file}:{loc.line}" if loc else first.file
            self._at(
                state, ("flow",), f"duplicate flow id {spec.flow!r} (first defined at {where})"
            )

    def _check_prompts(
        self, state: _FileState, path: DocPath, variants: PromptVariants, variables: frozenset[str]
    ) -> None:
        raw = _raw(state.document, path)
        known = variables | TEMPLATE_NAMES
        for language, items in variants.items():
            for index, item in enumerate(items):
                item_path = _item_path(raw, path, language, index)
                if isinstance(item, TtsItem):
                    unknown = sorted(parse_template(item.tts).names() - known)
                    for name in unknown:
                        field_path = (
                            item_path
                            if isinstance(_raw(state.document, item_path), str)
                            else (*item_path, "tts")
                        )
                        self._at(
                            state,
                            field_path,
                            f"unknown placeholder {{{name}}} in TTS text"
                            + _suggest(name, known)
                            + " (write {{ and }} for braces)",
                        )
                elif isinstance(item, FileItem):
                    target = self.prompts_dir / item.file
                    if not target.is_file():
                        self._at(
                            state,
                            (*item_path, "file"),
                            f"prompt file {item.file!r} not found in the prompts directory",
                        )

    def _check_reachable(self, state: _FileState, spec: FlowSpec) -> None:
        seen = {spec.entry}
        queue = deque([spec.entry])
        while queue:
            node = state.nodes.get(queue.popleft())
            if node is None:
                continue
            for _, target in node.targets():
                if target not in seen:
                    seen.add(target)
                    queue.append(target)
        for node_id in state.nodes:
            if node_id not in seen:
                self._at(
                    state,
                    ("nodes", node_id),
                    f"node {node_id!r} is unreachable from the entry {spec.entry!r}",
                    key=True,
                )

    # ---- the whole set ----------------------------------------------------------------------

    def check_set(self) -> None:
        for state in self.flow_files.values():
            for node_id, node in state.nodes.items():
                for path, called in node.subflows():
                    if called not in self.flows:
                        self._at(
                            state,
                            ("nodes", node_id, *path),
                            f"subflow {called!r} does not exist" + _suggest(called, self.flows),
                        )
        self._check_subflow_recursion()
        waits = {fid: self._flow_waits(fid, set()) for fid in self.flows}
        for flow_id, state in self.flow_files.items():
            self._check_spin(state, self.flows[flow_id], waits)

    def _flow_waits(self, flow_id: str, visiting: set[str]) -> bool:
        """Whether running this flow always involves a prompt or input somewhere."""
        if flow_id in visiting or flow_id not in self.flows:
            return False
        visiting.add(flow_id)
        for node in self.flows[flow_id].nodes.values():
            if node.WAITS:
                return True
            for _, called in node.subflows():
                if self._flow_waits(called, visiting):
                    return True
        return False

    def _check_subflow_recursion(self) -> None:
        graph: dict[str, list[tuple[str, str, DocPath]]] = {
            fid: [
                (called, node_id, path)
                for node_id, node in flow.nodes.items()
                for path, called in node.subflows()
                if called in self.flows
            ]
            for fid, flow in self.flows.items()
        }
        reported: set[frozenset[str]] = set()
        for start in self.flows:
            for called, node_id, path in graph[start]:
                chain = _path_between(graph, called, start)
                if chain is None:
                    continue
                cycle = [start, *chain]
                key = frozenset(cycle)
                if key in reported:
                    continue
                reported.add(key)
                self._at(
                    self.flow_files[start],
                    ("nodes", node_id, *path),
                    "subflows call each other in a loop: " + " -> ".join(cycle),
                )

    def _check_spin(self, state: _FileState, flow: Flow, waits: Mapping[str, bool]) -> None:
        def passive(node: NodeSpec) -> bool:
            if node.WAITS:
                return False
            return not any(waits.get(called, False) for _, called in node.subflows())

        graph = {
            node_id: [t for _, t in node.targets() if t in flow.nodes and passive(flow.nodes[t])]
            for node_id, node in flow.nodes.items()
            if passive(node)
        }
        for component in _strongly_connected(graph):
            start = next(n for n in flow.nodes if n in component)
            if len(component) == 1 and start not in graph[start]:
                continue
            cycle = _cycle_from(graph, start, component)
            self._at(
                state,
                ("nodes", start),
                "loop without waiting for the caller: "
                + " -> ".join(cycle)
                + " (add a play, menu or collect to it)",
                key=True,
            )


def _path_between(
    graph: Mapping[str, list[tuple[str, str, DocPath]]], start: str, goal: str
) -> list[str] | None:
    """Flows from ``start`` to ``goal`` through subflow calls (inclusive), or None."""
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        if current == goal:
            chain: list[str] = []
            node: str | None = current
            while node is not None:
                chain.append(node)
                node = previous[node]
            return chain[::-1]
        for called, _, _ in graph.get(current, []):
            if called not in previous:
                previous[called] = current
                queue.append(called)
    return None


def _strongly_connected(graph: Mapping[str, list[str]]) -> Iterator[set[str]]:
    """Tarjan's algorithm, iterative (flows are small but recursion depth is not ours)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    counter = 0
    result: list[set[str]] = []
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, child = work.pop()
            if child == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            recurse = False
            edges = graph[node]
            while child < len(edges):
                target = edges[child]
                child += 1
                if target not in index:
                    work.append((node, child))
                    work.append((target, 0))
                    recurse = True
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            if recurse:
                continue
            if low[node] == index[node]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return iter(result)


def _cycle_from(graph: Mapping[str, list[str]], start: str, component: set[str]) -> list[str]:
    """A shortest cycle through ``start`` inside ``component``, as node ids."""
    previous: dict[str, str] = {}
    visited = {start}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for target in graph[current]:
            if target not in component:
                continue
            if target == start:
                chain = [current]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [*reversed(chain), start]
            if target not in visited:
                visited.add(target)
                previous[target] = current
                queue.append(target)
    return [start, start]


def _sub_document(document: LocatedDocument, base: DocPath) -> LocatedDocument:
    size = len(base)
    return LocatedDocument(
        file=document.file,
        data=document.get(base),
        value_locations={
            p[size:]: loc for p, loc in document.value_locations.items() if p[:size] == base
        },
        key_locations={
            p[size:]: loc for p, loc in document.key_locations.items() if p[:size] == base
        },
    )


def _raw(document: LocatedDocument, path: DocPath) -> Any:
    try:
        return document.get(path)
    except KeyError:
        return None


_ITEM_KEYS = ("tts", "file", "tone", "silence_ms")


def _item_path(raw: Any, path: DocPath, language: str, index: int) -> DocPath:
    """Where prompt item ``index`` of ``language`` is written, whatever shorthand was used."""
    container = raw
    base = path
    if isinstance(raw, dict) and not any(k in raw for k in _ITEM_KEYS):
        container = raw.get(language)
        base = (*path, language)
    if isinstance(container, list):
        return (*base, index)
    return base
