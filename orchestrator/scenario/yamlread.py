"""A scenario file's YAML as plain data, with where each key and value starts.

Parser events first (syntax, nesting depth, node count, one document; they need no
recursion), then `yaml.compose`, then our own node-to-data conversion, which records
positions in the `Report`, caps alias expansion and builds no object from a tag.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from orchestrator.messages import N_, _
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
        report.add((), _("the file is empty; a scenario is a mapping starting with apiVersion"))
        return None
    if not isinstance(root, MappingNode):
        said = (
            _("the top level must be a mapping (apiVersion, kind, metadata, ...), not a list")
            if isinstance(root, SequenceNode)
            else _(
                "the top level must be a mapping (apiVersion, kind, metadata, ...),"
                " not a single value"
            )
        )
        report.add((), said, pos=position(root.start_mark))
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
                        _("more than one YAML document: a scenario file holds exactly one"),
                        pos=position(event.start_mark),
                    )
                    return False
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    said = _("more than {count} values").format(count=MAX_NODES)
                    report.add((), said, pos=position(event.start_mark))
                    return False
                if isinstance(event, yaml.CollectionStartEvent):
                    depth += 1
                    if depth > MAX_DEPTH:
                        said = _("nested deeper than {count} levels").format(count=MAX_DEPTH)
                        report.add((), said, pos=position(event.start_mark))
                        return False
    except yaml.YAMLError as e:
        _report_yaml_error(e, text, report)
        return False
    return True


def _report_yaml_error(error: yaml.YAMLError, text: str, report: Report) -> None:
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        problem = _parser_said(error.problem or error.context) or _("invalid YAML")
        context, started = _parser_said(error.context), error.context_mark
        if error.problem and context and started is not None:
            said = _("YAML syntax: {problem} ({context} at line {line})")
        elif error.problem and context:
            said = _("YAML syntax: {problem} ({context})")
        else:
            said = _("YAML syntax: {problem}")
        line = started.line + 1 if started is not None else 0
        pos = position(mark) if mark is not None else (1, 1)
        report.add((), said.format(problem=problem, context=context, line=line), pos=pos)
    elif isinstance(error, yaml.reader.ReaderError):
        at = max(0, min(error.position, len(text)))
        line = text.count("\n", 0, at) + 1
        column = at - text.rfind("\n", 0, at)
        char = error.character if isinstance(error.character, int) else ord(error.character)
        said = _("YAML: character #x{code} is not allowed").format(code=f"{char:04x}")
        report.add((), said, pos=(line, column))
    else:
        report.add((), _("YAML: {error}").format(error=error), pos=(1, 1))


#: what libyaml (and PyYAML's own parser) says most often, said in the reader's language;
#: any other text of theirs is shown as they wrote it
_PARSER_TEXTS = frozenset(
    {
        N_("mapping values are not allowed in this context"),
        N_("mapping values are not allowed here"),
        N_("did not find expected key"),
        N_("could not find expected ':'"),
        N_("did not find expected '-' indicator"),
        N_("did not find expected ',' or ']'"),
        N_("did not find expected ',' or '}'"),
        N_("did not find expected <document start>"),
        N_("found unexpected end of stream"),
        N_("found character that cannot start any token"),
        N_("found unknown escape character"),
        N_("found undefined alias"),
        N_("found duplicate anchor; first occurrence"),
        N_("second occurrence"),
        N_("while parsing a block mapping"),
        N_("while parsing a block collection"),
        N_("while parsing a flow sequence"),
        N_("while parsing a flow mapping"),
        N_("while parsing a quoted scalar"),
        N_("while scanning a quoted scalar"),
        N_("while scanning a simple key"),
        N_("while scanning for the next token"),
    }
)


def _parser_said(text: str | None) -> str:
    if not text:
        return ""
    return _(text) if text in _PARSER_TEXTS else text


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
            said = _("more than {count} values once aliases are expanded")
            raise _Abort(node, said.format(count=MAX_NODES))

    def _collection(self, node: Node, loc: Loc, depth: int) -> Any:
        self._counted(node)
        if depth >= MAX_DEPTH:
            said = _("nested deeper than {count} levels once aliases are expanded")
            raise _Abort(node, said.format(count=MAX_DEPTH))
        if id(node) in self.open:
            raise _Abort(node, _("an alias refers to a collection that contains it"))
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
                self.report.add(loc, _not_a_string_key(key_node), pos=key_pos)
                continue
            key = key_node.value
            if key in seen:
                said = _("duplicate key `{key}` (first at line {line})")
                self.report.add((*loc, key), said.format(key=key, line=seen[key][0]), pos=key_pos)
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
                    _("`<<` merges a mapping or a list of mappings"),
                    pos=position(source.start_mark),
                )
        return out

    def _check_tag(self, node: Node, expected: str, loc: Loc) -> None:
        if node.tag != _TAG + expected:
            self.report.add(loc, _unsupported(node.tag))

    def _scalar(self, node: ScalarNode, loc: Loc) -> Any:
        tag = node.tag
        if tag == _TAG + "str":
            return node.value
        if tag == _TAG + "timestamp":
            return node.value  # no field holds a date: keep the text the author wrote
        construct = _SCALARS.get(tag)
        if construct is None:
            self.report.add(loc, _unsupported(tag))
            return node.value
        try:
            return construct(node)
        except (ValueError, yaml.YAMLError):
            said = _("not a valid {type}: {value}")  # a YAML type: int, float, bool, null
            self.report.add(loc, said.format(type=_short_tag(tag)[2:], value=clip(node.value)))
            return node.value


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag


def _unsupported(tag: str) -> str:
    return _("unsupported YAML tag `{tag}`").format(tag=_short_tag(tag))


def _not_a_string_key(node: Node) -> str:
    if isinstance(node, ScalarNode):
        said = _("keys must be strings, not {type} `{value}` (quote it)")
        return said.format(type=_short_tag(node.tag)[2:], value=clip(node.value))
    if isinstance(node, SequenceNode):
        return _("keys must be strings, not a list")
    return _("keys must be strings, not a mapping")
