"""Opening labs: a scenario loaded and rendered for one student, new or from the state store."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import backends
from orchestrator.backends.contract import Backend, LabRef
from orchestrator.errors import ScenarioError
from orchestrator.lab.backend_choice import choose_backend
from orchestrator.lab.bound import Lab
from orchestrator.scenario import cache

if TYPE_CHECKING:
    from orchestrator.scenario.model import Scenario
    from orchestrator.state import LabRecord, Store


def prepare(ref: str, student: str, backend: str | None, lang: str = "en") -> Lab:
    """Load a scenario by id or path and render it for one student, in their language."""
    from orchestrator.scenario.catalog import resolve
    from orchestrator.scenario.i18n import localize
    from orchestrator.scenario.load import load_file
    from orchestrator.scenario.render import derive_params

    path = resolve(ref)
    scenario = localize(load_file(path), lang)
    params = derive_params(scenario, student)
    return _rendered(
        LabRef(scenario.id, student), scenario, path, choose_backend(scenario, backend), params
    )


def _rendered(
    ref: LabRef, scenario: Scenario, path: Path, backend: Backend, params: dict[str, str]
) -> Lab:
    from orchestrator.scenario.render import render_scenario

    raw = Lab(ref, scenario, path, backend, params)
    rendered = render_scenario(scenario, params, ref.student, raw.machine_facts())
    return Lab(ref, rendered, path, backend, params)


def open_lab(
    store: Store, scenario_id: str, student: str, lang: str = "en"
) -> tuple[Lab, LabRecord]:
    """A lab that is in the state store, as it was brought up."""
    record = store.require_lab(LabRef(scenario_id, student))
    path = Path(record.scenario_path)
    # a vanished file is a UsageError naming it; an unchanged one comes from the cache
    scenario, key = cache.localized(path, lang)
    backend = backends.get(record.backend)
    facts = Lab(record.ref, scenario, path, backend, record.params).machine_facts()
    inputs = json.dumps([record.ref.student, record.params, facts], sort_keys=True)

    def render() -> Scenario:  # Jinja2 is imported only when the cache has no entry
        from orchestrator.scenario.render import render_scenario

        return render_scenario(scenario, record.params, record.ref.student, facts)

    rendered = cache.remembered([*key, "render", inputs], render)
    return Lab(record.ref, rendered, path, backend, record.params), record


def scenario_errors(paths: Sequence[Path]) -> dict[Path, ScenarioError | None]:
    from orchestrator.scenario.load import load_file

    out: dict[Path, ScenarioError | None] = {}
    for p in paths:
        try:
            load_file(p)
            out[p] = None
        except ScenarioError as e:
            out[p] = e
    return out
