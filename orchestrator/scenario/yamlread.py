"""A scenario file's YAML as plain data, with where each key and value starts.

Parser events first (syntax, nesting depth, node count, one document; they need no
recursion), then `yaml.compose`, then our own node-to-data conversion, which records
positions in the `Report`, caps alias expansion and builds no object from a tag.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.scenario.located import Loc, Pos, Report, clip, position

MAX_DEPTH = 64
MAX_NODES = 50_000  # counts every alias expansion

Loader: Any = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader

_TAG = "tag:yaml.org,2002:"
_CONSTRUCT = yaml.constructor.SafeConstructor()
_SCALARS = {
    _TAG + "null": _CONSTRUCT.construct_yaml_null,
    _TAG + "bool": _CONSTRUCT.construct_yaml_bool,
    _TAG + "int": _CONSTRUCT.construct_yaml_int,
    _TAG + "float": _CONSTRUCT.construct_yaml_float,
}


class _Abort(Exception):
    """Stop converting: the document is hostile or broken beyond useful reporting."""

    def __init__(self, node: Node, message: str) -> None:
        super().__init__(message)
        self.node = node


def read_yaml(text: str, report: Report) -> dict[str, Any] | None:
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
            pos=position(root.start_mark),
        )
        return None
    builder = _Builder(report)
    try:
        data = builder.build(root, (), 0)
    except _Abort as e:
        report.add((), str(e), pos=position(e.node.start_mark))
        return None
    return data


def _scan(text: str, report: Report) -> bool:
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
                        pos=position(event.start_mark),
                    )
                    return False
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    report.add((), f"more than {MAX_NODES} values", pos=position(event.start_mark))
                    return False
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        report.add(
                            (),
                            f"nested deeper than {MAX_DEPTH} levels",
                            pos=position(event.start_mark),
                        )
                        return False
    except yaml.YAMLError as e:
        _report_yaml_error(e, text, report)
        return False
    return True


def _report_yaml_error(error: yaml.YAMLError, text: str, report: Report) -> None:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        message = error.problem or error.context or "invalid YAML"
        if error.problem and error.context:
            started = error.context_mark
            at = f" at line {started.line + 1}" if started is not None else ""
            message += f" ({error.context}{at})"
        pos = position(mark) if mark is not None else (1, 1)
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

    def __init__(self, report: Report) -> None:
        self.report = report
        self.count = 0
        self.open: set[int] = set()  # collections being converted: an alias to one loops

    def build(self, node: Node, loc: Loc, depth: int) -> Any:
        self.report.values[loc] = position(node.start_mark)
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
            key_pos = position(key_node.start_mark)
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
                    loc,
                    "`<<` merges a mapping or a list of mappings",
                    pos=position(source.start_mark),
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
            self.report.add(loc, f"not a valid {_short_tag(tag)[2:]}: {clip(node.value)}")
            return node.value


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _node_kind(node: Node) -> str:
    if isinstance(node, ScalarNode):
        return f"{_short_tag(node.tag)[2:]} `{clip(node.value)}` (quote it)"
    return "a list" if isinstance(node, SequenceNode) else "a mapping"
