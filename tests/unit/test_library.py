"""The lab library: every scenario is complete, in English and Brazilian Portuguese."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import orchestrator
from orchestrator.images.catalog import CATALOG
from orchestrator.scenario.i18n import localize
from orchestrator.scenario.load import load_file
from orchestrator.scenario.model_base import dump
from orchestrator.scenario.render import render_scenario

ROOT = Path(orchestrator.__file__).resolve().parent.parent
SCENARIOS = sorted((ROOT / "scenarios").glob("*.yaml"))
LANG = "pt-BR"


def test_there_is_a_library() -> None:
    assert len(SCENARIOS) >= 5


@pytest.fixture(params=SCENARIOS, ids=lambda p: p.stem)
def scenario(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    return load_file(request.param)


def test_every_task_has_hints_points_and_a_solution(scenario) -> None:  # type: ignore[no-untyped-def]
    assert scenario.description.strip(), "no description"
    for task in scenario.tasks:
        assert task.instructions.strip(), f"{task.id}: no instructions"
        assert task.hints, f"{task.id}: no hint"
        assert task.solution, f"{task.id}: no solution"
        assert task.points >= 1, f"{task.id}: no points"


def test_every_student_facing_text_is_in_portuguese(scenario) -> None:  # type: ignore[no-untyped-def]
    assert LANG in scenario.translations, f"no {LANG} translation"
    tr = scenario.translations[LANG]
    missing: list[str] = []
    if not tr.metadata.title:
        missing.append("metadata.title")
    if scenario.description and not tr.description:
        missing.append("description")
    for task in scenario.tasks:
        text = tr.tasks.get(task.id)
        if text is None:
            missing.append(f"tasks.{task.id}")
            continue
        for field in ("title", "instructions"):
            if getattr(task, field) and not getattr(text, field):
                missing.append(f"tasks.{task.id}.{field}")
        if task.hints and not text.hints:
            missing.append(f"tasks.{task.id}.hints")
        for i, check in enumerate(task.checks):
            given = text.checks[i] if i < len(text.checks) else None
            for field in ("name", "fail_message"):
                if getattr(check, field) and not (given and getattr(given, field)):
                    missing.append(f"tasks.{task.id}.checks.{i}.{field}")
    assert not missing, f"untranslated: {', '.join(missing)}"


def test_translations_differ_from_the_english(scenario) -> None:  # type: ignore[no-untyped-def]
    """A copied-and-forgotten English text is not a translation."""
    pt = localize(scenario, LANG)
    same = [t.id for t, o in zip(pt.tasks, scenario.tasks, strict=True) if t.title == o.title]
    assert pt.metadata.title != scenario.metadata.title
    assert not same, f"titles not translated: {same}"


def test_the_portuguese_version_renders(scenario) -> None:  # type: ignore[no-untyped-def]
    params = {name: "x" for name in scenario.parameters}
    facts = {
        m.name: {"backend": "docker", "kind": "container", "virt": "docker"}
        for m in scenario.machines
    }
    rendered = render_scenario(localize(scenario, LANG), params, "student", facts)
    assert rendered.metadata.title == scenario.translations[LANG].metadata.title


def test_machines_use_catalog_images(scenario) -> None:  # type: ignore[no-untyped-def]
    for machine in scenario.machines:
        assert machine.image is None or machine.image in CATALOG, machine.image


def test_per_student_parameters_where_answers_could_be_copied(scenario) -> None:  # type: ignore[no-untyped-def]
    """A lab whose answers are fixed strings must have parameters; the others get their
    uniqueness from what the machines generate (keys, IDs) or from the backend's truth."""
    text = json.dumps(dump(scenario))
    uses_truth = "machines." in text or "ssh-keygen" in text or "docker" in text
    assert scenario.parameters or uses_truth


def test_the_readme_lists_every_lab() -> None:
    readme = (ROOT / "README.md").read_text()
    table = re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|", readme, flags=re.M)
    missing = [p.stem for p in SCENARIOS if p.stem not in table]
    assert not missing, f"README lab table lacks: {', '.join(missing)}"
    twice = sorted({t for t in table if table.count(t) > 1 and t in {p.stem for p in SCENARIOS}})
    assert not twice, f"README lab table lists twice: {', '.join(twice)}"
