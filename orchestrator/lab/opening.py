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
    """Load a scenario by id or path and render it for one student, in their language.

    An unchanged file and its rendering come from the scenario cache, as for the lab's
    later commands (`open_lab`): `up`, a pool claim above all, then starts without
    pydantic and Jinja2 (validated and rendered the same way when the cache misses).
    """
    from orchestrator.scenario.catalog import resolve
    from orchestrator.scenario.params import derive_params

    path = resolve(ref)
    scenario, key = cache.localized(path, lang)
    params = derive_params(scenario, student)
    return _rendered(
        LabRef(scenario.id, student), scenario, path, choose_backend(scenario, backend), params, key
    )


def _rendered(
    ref: LabRef,
    scenario: Scenario,
    path: Path,
    backend: Backend,
    params: dict[str, str],
    key: list[str],
) -> Lab:
    """The lab with its scenario rendered for the student, from the cache under `key`
    (the source's key) when it holds this rendering."""
    facts = Lab(ref, scenario, path, backend, params).machine_facts()
    inputs = json.dumps([ref.student, params, facts], sort_keys=True)

    def render() -> Scenario:  # Jinja2 is imported only when the cache has no entry
        from orchestrator.scenario.render import render_scenario

        return render_scenario(scenario, params, ref.student, facts)

    return Lab(ref, cache.remembered([*key, "render", inputs], render), path, backend, params)


def open_lab(
    store: Store, scenario_id: str, student: str, lang: str = "en"
) -> tuple[Lab, LabRecord]:
    """A lab that is in the state store, as it was brought up."""
    record = store.require_lab(LabRef(scenario_id, student))
    path = Path(record.scenario_path)
    # a vanished file is a UsageError naming it; an unchanged one comes from the cache
    scenario, key = cache.localized(path, lang)
    backend = backends.get(record.backend)
    return _rendered(record.ref, scenario, path, backend, record.params, key), record


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
