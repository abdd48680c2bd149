"""Opening labs: a scenario loaded and rendered for one student, new or from the state store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator import backends
from orchestrator.backends.contract import Backend, LabRef, default_student
from orchestrator.errors import ScenarioError, UsageError
from orchestrator.lab.backend_choice import choose_backend
from orchestrator.lab.bound import Lab
from orchestrator.messages import _
from orchestrator.scenario.catalog import resolve
from orchestrator.scenario.i18n import localize
from orchestrator.scenario.load import load_file
from orchestrator.scenario.model import Scenario
from orchestrator.scenario.render import derive_params, render_scenario
from orchestrator.state import LabRecord, Store


def prepare(ref: str, student: str, backend: str | None, lang: str = "en") -> Lab:
    """Load a scenario by id or path and render it for one student, in their language."""
    path = resolve(ref)
    scenario = localize(load_file(path), lang)
    params = derive_params(scenario, student)
    return _rendered(
        LabRef(scenario.id, student), scenario, path, choose_backend(scenario, backend), params
    )


def _rendered(
    ref: LabRef, scenario: Scenario, path: Path, backend: Backend, params: dict[str, str]
) -> Lab:
    raw = Lab(ref, scenario, path, backend, params)
    rendered = render_scenario(scenario, params, ref.student, raw.machine_facts())
    return Lab(ref, rendered, path, backend, params)


def open_lab(
    store: Store, scenario_id: str, student: str, lang: str = "en"
) -> tuple[Lab, LabRecord]:
    """A lab that is in the state store, as it was brought up."""
    record = store.lab_of(LabRef(scenario_id, student))
    if record is None:
        flag = f" --student {student}" if student != default_student() else ""
        raise UsageError(
            _("no lab {lab} for student {student}").format(lab=scenario_id, student=student),
            hint=_("bring it up first: guestlab up {lab}").format(lab=scenario_id) + flag,
        )
    path = Path(record.scenario_path)
    scenario = localize(load_file(path), lang)  # a vanished file is a UsageError naming it
    lab = _rendered(record.ref, scenario, path, backends.get(record.backend), record.params)
    return lab, record


def scenario_errors(paths: Sequence[Path]) -> dict[Path, ScenarioError | None]:
    out: dict[Path, ScenarioError | None] = {}
    for p in paths:
        try:
            load_file(p)
            out[p] = None
        except ScenarioError as e:
            out[p] = e
    return out
