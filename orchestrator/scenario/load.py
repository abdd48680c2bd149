"""Read a scenario file and report every problem in it, each with its line and column.

The pipeline: size limit, then the YAML with positions (`yamlread`: an event pass for
syntax, nesting depth, node count and one document, `yaml.compose`, our own node-to-data
conversion recording where each key and value starts and capping alias expansion),
pydantic's validation into the format's types (its complaints said in the author's terms
by `explain`), cross-references (`references`) and templates (`template_check`). Every
stage after the conversion runs even when an earlier one found problems, so an author
sees all of them at once; every stage reports through one `located.Report`.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from orchestrator.errors import Problem, ScenarioError
from orchestrator.messages import _
from orchestrator.scenario.explain import report_validation
from orchestrator.scenario.located import Loc, Pos, Report
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.model_base import parse
from orchestrator.scenario.references import check_references, resolve_src
from orchestrator.scenario.source import MAX_BYTES, read_source, too_large
from orchestrator.scenario.template_check import MAX_TEMPLATES, SAMPLE_STUDENT, check_templates
from orchestrator.scenario.yamlread import MAX_DEPTH, MAX_NODES, Loader, read_yaml

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_TEMPLATES",
    "SAMPLE_STUDENT",
    "Loader",
    "Loc",
    "Pos",
    "labs_dir_for",
    "load_bytes",
    "load_file",
    "load_text",
    "source_path",
]


def labs_dir_for(path: Path) -> Path:
    """`labs/` beside the folder that holds the scenario file."""
    return Path(os.path.abspath(path)).parent.parent / "labs"


def load_file(path: Path) -> Scenario:
    """Load and check one scenario file; ScenarioError lists every problem in it."""
    return load_bytes(read_source(path), path)


def load_bytes(raw: bytes, path: Path) -> Scenario:
    """Check the bytes read from `path` (the scenario cache validates what it read once)."""
    if len(raw) > MAX_BYTES:
        raise ScenarioError([Problem(str(path), 1, 1, "", too_large())])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise ScenarioError(
            [Problem(str(path), line, column, "", _("not valid UTF-8 text"))]
        ) from None
    return load_text(text, str(path), labs_dir=labs_dir_for(path))


def load_text(text: str, filename: str, *, labs_dir: Path | None) -> Scenario:
    """Check scenario text; `labs_dir` None skips checking that `files[].src` exist."""
    report = Report(filename)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ScenarioError([Problem(filename, 1, 1, "", _("not valid UTF-8 text"))]) from None
    if size > MAX_BYTES:
        raise ScenarioError([Problem(filename, 1, 1, "", too_large())])
    text = text.removeprefix("\ufeff")

    data = read_yaml(text, report)
    if data is None:
        raise ScenarioError(report.problems)

    scenario: Scenario | None = None
    try:
        scenario = parse(Scenario, data)
    except ValidationError as e:
        for err in e.errors(include_url=False):
            report_validation(err, report)
    check_references(data, report, labs_dir)
    check_templates(data, report)
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
    target, message = resolve_src(src, labs_dir_for(scenario_file), scenario.id)
    if message or target is None:
        problem = message or _("`{src}` cannot be resolved").format(src=src)
        raise ScenarioError([Problem(str(scenario_file), 0, 0, where, problem)])
    return target
