"""Every scenario on every backend it declares, on the real engines.

After `up` every task fails; each task passes right after its own solution (an
`after_reboot` task through its reboot); `reset` brings the failing state back; `down`
leaves nothing the backend can find: `guestlab prove`'s steps (orchestrator/lab/prove.py).
"""

from __future__ import annotations

from pathlib import Path

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


#: labs whose proof runs in a test module of their own, on the VM that module's tests go
#: on with (a VM boot and its reboots are minutes under emulation: one boot for both)
PROVEN_IN = {
    ("data-disk", "vagrant"): "test_data_disk.py",
    ("guest-drivers", "vagrant"): "test_guest_drivers.py",
    ("vm-or-container", "lxd"): "test_vm_or_container.py",
}

CASES = [
    pytest.param(path, backend, id=f"{path.stem}-{backend}", marks=_marks(path, backend))
    for path in discover()
    for backend in load_file(path).backends
    if (path.stem, backend) not in PROVEN_IN
]


def test_labs_proven_elsewhere_are_proven_there() -> None:
    """Each module named in PROVEN_IN proves its lab (`prove_up_lab`, `ModuleLab.prove`)."""
    library = {(p.stem, b) for p in discover() for b in load_file(p).backends}
    for (scenario, backend), module in PROVEN_IN.items():
        assert (scenario, backend) in library
        source = (Path(__file__).parent / module).read_text()
        proves = "prove_up_lab(" in source or ".prove()" in source
        assert proves and f'"{scenario}"' in source, module


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
