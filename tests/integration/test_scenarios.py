"""Every scenario on every backend it declares, on the real engines.

After `up` every task fails; each task passes right after its own solution; `reset`
brings the failing state back; `down` leaves nothing the backend can find.
"""

from __future__ import annotations

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.scenario.catalog import discover
from orchestrator.scenario.load import load_file
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id


def _marks(path, backend):  # type: ignore[no-untyped-def]
    """The backend's mark, plus vagrant's when the lab has a `kind: vm` machine."""
    marks = [getattr(pytest.mark, backend)]
    if any(m.kind == "vm" for m in load_file(path).machines) and backend != "vagrant":
        marks.append(pytest.mark.vagrant)
    return marks


CASES = [
    pytest.param(path, backend, id=f"{path.stem}-{backend}", marks=_marks(path, backend))
    for path in discover()
    for backend in load_file(path).backends
]


@pytest.mark.parametrize(("path", "backend_name"), CASES)
def test_scenario_is_graded_and_solvable(path, backend_name) -> None:  # type: ignore[no-untyped-def]
    engine(backend_name)
    store = Store()
    lab = lifecycle.prepare(str(path), student_id(), backend_name)
    for used in lab.backends:  # a lab with a VM beside its containers needs vagrant too
        engine(used.name)
    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        record = store.lab(lab.ref.key)
        assert record is not None
        fresh = lifecycle.check(lab, record, store)
        assert [t.id for t in fresh.tasks if t.passed] == [], fresh
        for task in lab.scenario.tasks:
            lifecycle.solve(lab, record, store, [task.id])
            after = lifecycle.check(lab, record, store, [task.id])
            assert after.passed, after
        assert lifecycle.check(lab, record, store).score == lab.scenario.max_score
        lifecycle.reset(lab, record, store, lifecycle.Silent())
        again = lifecycle.check(lab, record, store)
        assert [t.id for t in again.tasks if t.passed] == [], again
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)
    for used in lab.backends:
        assert used.find(lab.ref) == {}, used.name
    assert store.lab(lab.ref.key) is None
