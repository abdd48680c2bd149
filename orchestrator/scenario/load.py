"""Read a scenario file and report every problem in it, each with its line and column.

The pipeline: size limit, an event pass (syntax, nesting depth, node count, one document),
`yaml.compose`, our own node-to-data conversion (recording where each key and value
starts, capping alias expansion), the pydantic model, cross-references and templates.
Every stage after the conversion runs even when an earlier one found problems, so an
author sees all of them at once.
"""

from __future__ import annotations

import difflib
import os
import posixpath
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.errors import Problem, ScenarioError, UsageError
from orchestrator.scenario import render
from orchestrator.scenario.model import LANGUAGE, NAME, SIZE, TASK_ID, Scenario

MAX_BYTES = 512 * 1024
MAX_DEPTH = 64
MAX_NODES = 50_000  # counts every alias expansion
MAX_TEMPLATES = 500  # compiling one costs ~0.2 ms; real scenarios use a few dozen
SAMPLE_STUDENT = "student"

Loader: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
Loc = tuple[str | int, ...]
Pos = tuple[int, int]

_TAG = "tag:yaml.org,2002:"
_CONSTRUCT = yaml.constructor.SafeConstructor()
_SCALARS = {
    _TAG + "null": _CONSTRUCT.construct_yaml_null,
    _TAG + "bool": _CONSTRUCT.construct_yaml_bool,
    _TAG + "int": _CONSTRUCT.construct_yaml_int,
    _TAG + "float": _CONSTRUCT.construct_yaml_float,
}

_PATTERNS = {
    NAME: "lowercase letters and digits joined by single '-' (at most 40 characters)",
    TASK_ID: "lowercase letters, digits, '-' and '_' (at most 63, starting with a letter or digit)",
    SIZE: "a size such as 512K, 256M or 1G",
    r"^\d+[smh]$": "a duration such as 90s, 15m or 1h",
    r"^/": "an absolute path (starting with /)",
    r"^0?[0-7]{3,4}$": 'an octal mode such as "0644" (quoted)',
    r"^[A-Za-z_][A-Za-z0-9_]*$": "letters, digits and '_', not starting with a digit",
    LANGUAGE: "a language tag such as pt-BR or es",
}


# --- public API -------------------------------------------------------------------------


def labs_dir_for(path: Path) -> Path:
    """`labs/` beside the folder that holds the scenario file."""
    return Path(os.path.abspath(path)).parent.parent / "labs"


def load_file(path: Path) -> Scenario:
    """Load and check one scenario file; ScenarioError lists every problem in it."""
    file = str(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise ScenarioError([Problem(file, 1, 1, "", _too_large())])
        with path.open("rb") as f:
            # Read one byte past the limit: a FIFO or /dev/zero reports size 0.
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UsageError(f"cannot read scenario {path}: {e.strerror or e}") from None
    if len(raw) > MAX_BYTES:
        raise ScenarioError([Problem(file, 1, 1, "", _too_large())])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise ScenarioError([Problem(file, line, column, "", "not valid UTF-8 text")]) from None
    return load_text(text, file, labs_dir=labs_dir_for(path))


def load_text(text: str, filename: str, *, labs_dir: Path | None) -> Scenario:
    """Check scenario text; `labs_dir` None skips checking that `files[].src` exist."""
    report = _Report(filename)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ScenarioError([Problem(filename, 1, 1, "", "not valid UTF-8 text")]) from None
    if size > MAX_BYTES:
        raise ScenarioError([Problem(filename, 1, 1, "", _too_large())])
    text = text.removeprefix("\ufeff")

    data = _read_yaml(text, report)
    if data is None:
        raise ScenarioError(report.problems)

    scenario: Scenario | None = None
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            _report_validation(err, report)
    _check_references(data, report, labs_dir)
    _check_templates(data, report)
    if report.problems or scenario is None:
        raise ScenarioError(report.problems)
    return scenario


def source_path(scenario_file: Path, scenario: Scenario, src: str) -> Path:
    """The host file a `files[].src` names, checked again to lie inside labs/<id>/."""
    where = next(
        (
            f"machines.{i}.files.{j}.src"
            for i, machine in enumerate(scenario.machines)
            for j, copy in enumerate(machine.files)
            if copy.src == src
        ),
        "",
    )
    target, message = _resolve_src(src, labs_dir_for(scenario_file), scenario.id)
    if message or target is None:
        problem = message or f"`{src}` cannot be resolved"
        raise ScenarioError([Problem(str(scenario_file), 0, 0, where, problem)])
    return target


# --- locating problems ------------------------------------------------------------------


class _Report:
    """Problems found so far, and where each key and value of the file starts."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.values: dict[Loc, Pos] = {}
        self.keys: dict[Loc, Pos] = {}
        self.reported: set[Loc] = set()

    def where(self, loc: Loc, *, key: bool = False) -> Pos:
        """The position of `loc`, or of its nearest recorded ancestor."""
        if key and loc in self.keys:
            return self.keys[loc]
        while loc and loc not in self.values:
            loc = loc[:-1]
        return self.values.get(loc, (1, 1))

    def add(
        self,
        loc: Loc,
        message: str,
        *,
        key: bool = False,
        pos: Pos | None = None,
        unless_reported: bool = False,
    ) -> None:
        # Later stages skip a spot an earlier one already complained about.
        if unless_reported and loc in self.reported:
            return
        self.reported.add(loc)
        line, column = pos or self.where(loc, key=key)
        self.problems.append(Problem(self.file, line, column, _dotted(loc), message))


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


def _pos(mark: Any) -> Pos:
    return (mark.line + 1, mark.column + 1)


def _too_large() -> str:
    return f"file is larger than {MAX_BYTES // 1024} KiB"


# --- YAML -------------------------------------------------------------------------------


class _Abort(Exception):
    """Stop converting: the document is hostile or broken beyond useful reporting."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def _read_yaml(text: str, report: _Report) -> dict[str, Any] | None:
    """The top-level mapping as plain data, or None when nothing more can be checked."""
    if not _scan(text, report):
        return None
    try:
        root = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as e:
        _report_yaml_error(e, text, report)
        return None
    if root is None:
        report.add((), "the file is empty; a scenario is a mapping starting with apiVersion")
        return None
    if not isinstance(root, MappingNode):
        what = "a list" if isinstance(root, SequenceNode) else "a single value"
        report.add(
            (),
            f"the top level must be a mapping (apiVersion, kind, metadata, ...), not {what}",
            pos=_pos(root.start_mark),
        )
        return None
    builder = _Builder(report)
    try:
        data = builder.build(root, (), 0)
    except _Abort as e:
        report.add((), str(e), pos=_pos(e.node.start_mark))
        return None
    return data


def _scan(text: str, report: _Report) -> bool:
    """Reject syntax errors, deep nesting, huge node counts and extra documents.

    Runs on parser events, which need no recursion, before the recursive composer.
    """
    depth = documents = nodes = 0
    try:
        for event in yaml.parse(text, Loader=Loader):
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    report.add(
                        (),
                        "more than one YAML document: a scenario file holds exactly one",
                        pos=_pos(event.start_mark),
                    )
                    return False
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    report.add((), f"more than {MAX_NODES} values", pos=_pos(event.start_mark))
                    return False
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        report.add(
                            (),
                            f"nested deeper than {MAX_DEPTH} levels",
                            pos=_pos(event.start_mark),
                        )
                        return False
    except yaml.YAMLError as e:
        _report_yaml_error(e, text, report)
        return False
    return True


def _report_yaml_error(error: yaml.YAMLError, text: str, report: _Report) -> None:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.problem and error.context:
            started = error.context_mark
            at = f" at line {started.line + 1}" if started is not None else ""
            message += f" ({error.context}{at})"
        pos = _pos(mark) if mark is not None else (1, 1)
        report.add((), f"YAML syntax: {message}", pos=pos)
    elif isinstance(error, yaml.reader.ReaderError):
        at = max(0, min(error.position, len(text)))
        line = text.count("\n", 0, at) + 1
        column = at - text.rfind("\n", 0, at)
        char = error.character if isinstance(error.character, int) else ord(error.character)
        report.add((), f"YAML: character #x{char:04x} is not allowed", pos=(line, column))
    else:
        report.add((), f"YAML: {error}", pos=(1, 1))


class _Builder:
    """Nodes to plain data, recording positions and counting every alias expansion."""

    def __init__(self, report: _Report) -> None:
        self.report = report
        self.count = 0
        self.open: set[int] = set()  # collections being converted: an alias to one loops

    def build(self, node: Node, loc: Loc, depth: int) -> Any:
        self.report.values[loc] = _pos(node.start_mark)
        if isinstance(node, ScalarNode):
            self._counted(node)
            return self._scalar(node, loc)
        return self._collection(node, loc, depth)

    def _counted(self, node: Node) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Abort(node, f"more than {MAX_NODES} values once aliases are expanded")

    def _collection(self, node: Node, loc: Loc, depth: int) -> Any:
        self._counted(node)
        if depth >= MAX_DEPTH:
            raise _Abort(node, f"nested deeper than {MAX_DEPTH} levels once aliases are expanded")
        if id(node) in self.open:
            raise _Abort(node, "an alias refers to a collection that contains it")
        self.open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                self._check_tag(node, "seq", loc)
                return [self.build(item, (*loc, i), depth + 1) for i, item in enumerate(node.value)]
            self._check_tag(node, "map", loc)
            return self._mapping(node, loc, depth)
        finally:
            self.open.discard(id(node))

    def _mapping(self, node: MappingNode, loc: Loc, depth: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        # Merged keys first, so that the mapping's own keys override them.
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                out.update(self._merged(value_node, loc, depth))
        seen: dict[str, Pos] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                continue
            key_pos = _pos(key_node.start_mark)
            if not (isinstance(key_node, ScalarNode) and key_node.tag == _TAG + "str"):
                self.report.add(
                    loc, f"keys must be strings, not {_node_kind(key_node)}", pos=key_pos
                )
                continue
            key = key_node.value
            if key in seen:
                self.report.add(
                    (*loc, key),
                    f"duplicate key `{key}` (first at line {seen[key][0]})",
                    pos=key_pos,
                )
                continue
            seen[key] = key_pos
            self.report.keys[(*loc, key)] = key_pos
            out[key] = self.build(value_node, (*loc, key), depth + 1)
        return out

    def _merged(self, node: Node, loc: Loc, depth: int) -> dict[str, Any]:
        sources = node.value if isinstance(node, SequenceNode) else [node]
        out: dict[str, Any] = {}
        # Earlier mappings in a `<<` list win, so apply them last.
        for source in reversed(sources):
            if isinstance(source, MappingNode):
                out.update(self._collection(source, loc, depth))
            else:
                self.report.add(
                    loc, "`<<` merges a mapping or a list of mappings", pos=_pos(source.start_mark)
                )
        return out

    def _check_tag(self, node: Node, expected: str, loc: Loc) -> None:
        if node.tag != _TAG + expected:
            self.report.add(loc, f"unsupported YAML tag `{_short_tag(node.tag)}`")

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        tag = node.tag
        if tag == _TAG + "str":
            return node.value
        if tag == _TAG + "timestamp":
            return node.value  # no field holds a date: keep the text the author wrote
        construct = _SCALARS.get(tag)
        if construct is None:
            self.report.add(loc, f"unsupported YAML tag `{_short_tag(tag)}`")
            return node.value
        try:
            return construct(node)
        except (ValueError, yaml.YAMLError):
            self.report.add(loc, f"not a valid {_short_tag(tag)[2:]}: {_clip(node.value)}")
            return node.value


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _node_kind(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return f"{_short_tag(node.tag)[2:]} `{_clip(node.value)}` (quote it)"
    return "a list" if isinstance(node, SequenceNode) else "a mapping"


def _clip(value: Any, width: int = 40) -> str:
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


# --- the model's complaints, in the author's terms ---------------------------------------


def _report_validation(err: Any, report: _Report) -> None:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    # A spot the YAML stage already complained about (bad tag, bad number) says it best.
    # pydantic marks a bad dict key with a trailing "[key]"; an unknown field may be named so
    if loc and loc[-1] == "[key]" and kind != "extra_forbidden":
        loc = loc[:-1]
        report.add(loc, _message(err, loc), key=True, unless_reported=True)
    elif kind == "extra_forbidden":
        report.add(loc, _message(err, loc), key=True, unless_reported=True)
    elif kind == "missing":
        report.add(loc, "required field missing", pos=report.where(loc[:-1]))
    else:
        report.add(loc, _message(err, loc), unless_reported=True)


def _message(err: Any, loc: Loc) -> str:
    kind: str = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    got = f" (got {_describe(value)})"
    if kind == "extra_forbidden":
        fields = _fields_at(loc[:-1])
        if not fields:
            return "unknown field"
        near = difflib.get_close_matches(str(loc[-1]), fields, n=1)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        return f"unknown field `{loc[-1]}`{hint} (allowed: {', '.join(fields)})"
    if kind == "literal_error":
        choices = _literal_choices(loc)
        if choices:
            return f"must be one of: {', '.join(choices)}{got}"
        return f"must be {ctx.get('expected', 'one of the allowed values')}{got}"
    if kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern", "")
        message = f"must be {_PATTERNS.get(pattern, f'text matching {pattern}')}{got}"
        if isinstance(value, str) and render.has_template(value):
            message += "; this field cannot use templates"
        return message
    if kind == "string_type":
        hint = "; quote it" if isinstance(value, int | float | bool) else ""
        return f"expected text, got {_kind(value)}{hint}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} item{'s' if n != 1 else ''}"
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return f"expected a mapping, got {_kind(value)}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false{got}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected a whole number{got}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number{got}"
    if kind == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    message = str(err["msg"]).replace("Input should be", "must be")
    return message + (got if _is_scalar(value) else "")


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(_clip(value))
    return _kind(value)


def _unwrap(tp: Any) -> Any:
    """Strip Annotated and `| None` from a type."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(args) != 1:
                return tp
            tp = args[0]
        else:
            return tp


def _type_at(loc: Loc) -> Any:
    """The declared type of the value at `loc` in a Scenario, if it can be followed."""
    tp: Any = Scenario
    for part in loc:
        tp = _unwrap(tp)
        origin = typing.get_origin(tp)
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            if field is None:
                return None
            tp = field.annotation
        elif origin is list:
            tp = typing.get_args(tp)[0]
        elif origin is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    return _unwrap(tp)


def _fields_at(loc: Loc) -> list[str]:
    tp = _type_at(loc)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return list(tp.model_fields)
    return []


def _literal_choices(loc: Loc) -> list[str]:
    tp = _type_at(loc)
    if typing.get_origin(tp) is typing.Literal:
        return [str(choice) for choice in typing.get_args(tp)]
    return []


# --- cross-references -------------------------------------------------------------------


def _items(value: Any) -> Iterator[tuple[int, dict[str, Any]]]:
    """The mappings of a list, with their indexes; tolerant of any other shape."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                yield i, item


def _check_references(data: dict[str, Any], report: _Report, labs_dir: Path | None) -> None:
    machines = list(_items(data.get("machines")))
    first: dict[str, int] = {}
    for i, machine in machines:
        name = machine.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            line = report.where(("machines", first[name], "name"))[0]
            report.add(
                ("machines", i, "name"),
                f"duplicate machine name `{name}` (first at line {line})",
                unless_reported=True,
            )
        else:
            first[name] = i

    def known(loc: Loc, name: Any) -> bool:
        """Report `name` unless it is a defined machine."""
        if not isinstance(name, str) or not first:
            return False
        if name in first:
            return True
        near = difflib.get_close_matches(name, list(first), n=1)
        hint = f"; did you mean `{near[0]}`?" if near else ""
        report.add(
            loc,
            f"unknown machine `{name}`{hint} (machines: {', '.join(first)})",
            unless_reported=True,
        )
        return False

    parent_of: dict[str, str] = {}
    for i, machine in machines:
        parent = machine.get("clone_of")
        name = machine.get("name")
        is_first = isinstance(name, str) and first.get(name) == i
        if known(("machines", i, "clone_of"), parent) and is_first:
            parent_of[name] = parent
    _check_clone_cycles(parent_of, first, report)

    def root_of(name: str) -> str:
        seen = {name}
        while name in parent_of and parent_of[name] not in seen:
            name = parent_of[name]
            seen.add(name)
        return name

    for i, step in _items(data.get("setup")):
        loc: Loc = ("setup", i, "machine")
        name = step.get("machine")
        if known(loc, name) and name in parent_of:
            report.add(
                loc,
                f"setup runs before clones are taken, and `{name}` is a clone: "
                f"run this step on `{root_of(name)}`",
                unless_reported=True,
            )

    task_ids: dict[str, int] = {}
    for t, task in _items(data.get("tasks")):
        task_id = task.get("id")
        if isinstance(task_id, str):
            if task_id in task_ids:
                line = report.where(("tasks", task_ids[task_id], "id"))[0]
                report.add(
                    ("tasks", t, "id"),
                    f"duplicate task id `{task_id}` (first at line {line})",
                    unless_reported=True,
                )
            else:
                task_ids[task_id] = t
        for c, check in _items(task.get("checks")):
            known(("tasks", t, "checks", c, "machine"), check.get("machine"))
            for form in ("distinct", "equal"):
                multi = check.get(form)
                if isinstance(multi, dict) and isinstance(multi.get("machines"), list):
                    for k, name in enumerate(multi["machines"]):
                        known(("tasks", t, "checks", c, form, "machines", k), name)
        for s, step in _items(task.get("solution")):
            known(("tasks", t, "solution", s, "machine"), step.get("machine"))

    metadata = data.get("metadata")
    scenario_id = metadata.get("id") if isinstance(metadata, dict) else None
    if not (isinstance(scenario_id, str) and re.match(NAME, scenario_id)):
        scenario_id = None  # reported by the model; never joined into a path
    for i, machine in machines:
        for j, copy in _items(machine.get("files")):
            src = copy.get("src")
            if not isinstance(src, str) or not src:
                continue
            # A templated src is checked again once rendered, by source_path.
            check_dir = None if render.has_template(src) or scenario_id is None else labs_dir
            _, message = _resolve_src(src, check_dir, scenario_id or "<id>")
            if message:
                report.add(("machines", i, "files", j, "src"), message, unless_reported=True)


def _check_clone_cycles(parent_of: dict[str, str], first: dict[str, int], report: _Report) -> None:
    done: set[str] = set()
    for start in parent_of:
        chain: list[str] = []
        name = start
        while name in parent_of and name not in chain and name not in done:
            chain.append(name)
            name = parent_of[name]
        done.update(chain)
        if name in chain:
            cycle = chain[chain.index(name) :]
            head = min(cycle, key=lambda n: first[n])
            at = cycle.index(head)
            ordered = [*cycle[at:], *cycle[:at], head]
            report.add(
                ("machines", first[head], "clone_of"),
                f"clone chain loops: {' -> '.join(ordered)}",
                unless_reported=True,
            )


def _resolve_src(src: str, labs_dir: Path | None, scenario_id: str) -> tuple[Path | None, str]:
    """The file `src` names and "" when it is fine, else a message; no disk access
    when `labs_dir` is None."""
    folder = f"labs/{scenario_id}/"
    if src.startswith(("/", "\\")) or Path(src).is_absolute():
        return None, f"must be a path relative to {folder}, not absolute"
    normal = posixpath.normpath(src)
    if normal == ".." or normal.startswith("../"):
        return None, f"leaves {folder} (through `..`)"
    if labs_dir is None:
        return None, ""
    root = labs_dir / scenario_id
    try:
        base = root.resolve()
        target = (root / src).resolve()
    except (OSError, RuntimeError, ValueError) as e:
        return None, f"cannot be resolved: {e}"
    if not target.is_relative_to(base):
        return None, f"leaves {folder} (resolves to {target})"
    if not target.exists():
        return None, f"no such file: {root / src}"
    if not target.is_file():
        return None, f"not a regular file: {root / src}"
    return target, ""


# --- templates --------------------------------------------------------------------------


def _strings(value: Any) -> Iterator[tuple[Loc, str]]:
    """Every string value with its location, depth-first without recursion."""
    stack: list[tuple[Loc, Any]] = [((), value)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            yield loc, value
        elif isinstance(value, dict):
            stack.extend(((*loc, k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            stack.extend(((*loc, i), v) for i, v in reversed(list(enumerate(value))))


def _sample_params(raw: Any) -> dict[str, str]:
    """A value for every parameter name in the file, however malformed its spec."""
    params: dict[str, str] = {}
    if not isinstance(raw, dict):
        return params
    for name, spec in raw.items():
        choices = spec.get("choices") if isinstance(spec, dict) else None
        length = spec.get("length") if isinstance(spec, dict) else None
        if isinstance(choices, list) and choices:
            params[name] = str(choices[0])
        else:
            ok = isinstance(length, int) and 1 <= length <= 64
            params[name] = "x" * (length if ok else 8)
    return params


def _sample_machines(raw: Any) -> dict[str, dict[str, str]]:
    """Facts for every machine name in the file, as a backend would give them."""
    facts = {"backend": "docker", "kind": "container", "virt": "docker"}
    names = [m.get("name") for m in raw if isinstance(m, dict)] if isinstance(raw, list) else []
    return {n: facts for n in names if isinstance(n, str)}


def _check_templates(data: dict[str, Any], report: _Report) -> None:
    params = _sample_params(data.get("parameters"))
    machines = _sample_machines(data.get("machines"))
    count = 0
    for loc, text in _strings(data):
        if not render.has_template(text):
            continue
        count += 1
        if count > MAX_TEMPLATES:
            report.add(loc, f"more than {MAX_TEMPLATES} strings use templates")
            return
        try:
            render.render_text(text, params, SAMPLE_STUDENT, machines)
        except render.RenderError as e:
            report.add(loc, str(e))
