"""JUnit XML, the one writer behind `check --format junit` and the class gradebook's.

Test cases carry what machines printed, so every string goes through `textsafe.xml` on
the way in: the document parses whatever bytes a student's machine produced.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field

from orchestrator import textsafe


@dataclass(frozen=True)
class Case:
    classname: str
    name: str
    failure: str | None = None  # its text; the first line is the message
    error: str | None = None
    skipped: str | None = None


@dataclass(frozen=True)
class Suite:
    name: str
    cases: Sequence[Case]
    timestamp: str = ""
    properties: Sequence[tuple[str, str]] = field(default_factory=tuple)


def outcome_case(classname: str, name: str, passed: bool | None, text: str = "") -> Case:
    """The case of one graded thing: passed, failed saying `text`, or None: not checked."""
    if passed is None:
        return Case(classname, name, skipped="not checked")
    return Case(classname, name, failure=None if passed else text)


def _el(parent: ET.Element | None, tag: str, **attrs: str) -> ET.Element:
    safe = {k: textsafe.xml(v) for k, v in attrs.items()}
    return ET.Element(tag, safe) if parent is None else ET.SubElement(parent, tag, safe)


def _suite(parent: ET.Element | None, suite: Suite) -> ET.Element:
    attrs = {
        "name": suite.name,
        "tests": str(len(suite.cases)),
        "failures": str(sum(1 for c in suite.cases if c.failure is not None)),
        "errors": str(sum(1 for c in suite.cases if c.error is not None)),
        "skipped": str(sum(1 for c in suite.cases if c.skipped is not None)),
    }
    if suite.timestamp:
        attrs["timestamp"] = suite.timestamp
    el = _el(parent, "testsuite", **attrs)
    if suite.properties:
        props = _el(el, "properties")
        for name, value in suite.properties:
            _el(props, "property", name=name, value=value)
    for case in suite.cases:
        c = _el(el, "testcase", classname=case.classname, name=case.name)
        if case.failure is not None:
            text = textsafe.xml(case.failure)
            _el(c, "failure", message=text.split("\n")[0]).text = text
        if case.error is not None:
            _el(c, "error", message=case.error)
        if case.skipped is not None:
            _el(c, "skipped", message=case.skipped)
    return el


def document(suites: Sequence[Suite], name: str | None = None) -> str:
    """A <testsuites> document named `name`; a lone <testsuite> when `name` is None."""
    if name is None:
        if len(suites) != 1:
            raise ValueError("a JUnit document without a name holds exactly one suite")
        root = _suite(None, suites[0])
    else:
        root = _el(None, "testsuites", name=name)
        for suite in suites:
            _suite(root, suite)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True)
