"""Every scenario on every backend it declares, on the real engines.

After `up` every task fails; each task passes right after its own solution (an
`after_reboot` task through its reboot); `reset` brings the failing state back; `down`
leaves nothing the backend can find: `guestlab prove`'s steps (orchestrator/lab/prove.py).
"""

from __future__ import annotations

import pytest

from orchestrator import lab as lifecycle
from orchestrator.lab.prove import prove_lab, prove_student
from orchestrator.scenario.catalog import discover
from orchestrator.scenario.load import load_file
from orchestrator.state import Store
from tests.integration.conftest import engine


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
    """`guestlab prove`'s steps, every one of which must hold."""
    engine(backend_name)
    store = Store()
    lab = lifecycle.prepare(str(path), prove_student(), backend_name)
    for used in lab.backends:  # a lab with a VM beside its containers needs vagrant too
        engine(used.name)
    proof = prove_lab(lab, store, lifecycle.Silent())
    assert proof.ok, "\n".join(f"{s.name}: {'ok' if s.ok else s.detail}" for s in proof.steps)
    assert [s.name for s in proof.steps][-1] == "down leaves nothing"
    for used in lab.backends:
        assert used.find(lab.ref) == {}, used.name
    assert store.lab(lab.ref.key) is None
