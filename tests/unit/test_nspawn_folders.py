"""nspawn's folders on a plain directory (copies, no btrfs): `down` of a state store's last
lab leaves no empty folder of that store behind; one with labs left keeps it."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends.contract import LabRef
from orchestrator.backends.nspawn.backend import NspawnBackend
from orchestrator.backends.nspawn.store import Trees


def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> NspawnBackend:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path / "home"))
    found = NspawnBackend()
    found._trees = Trees(tmp_path / "store")
    return found


def stopped_machine(b: NspawnBackend, lab: LabRef, name: str) -> Path:
    """A machine's folder as a stopped machine leaves it (no unit, no process)."""
    mdir = b.machine_dir(lab, name)
    (mdir / "rootfs" / "etc").mkdir(parents=True)
    return mdir


def test_the_last_lab_gone_takes_its_store_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    b = backend(tmp_path, monkeypatch)
    ann, bob = LabRef("s", "ann"), LabRef("s", "bob")
    store = stopped_machine(b, ann, "web").parent.parent
    stopped_machine(b, bob, "web")
    b.destroy(ann)
    assert store.is_dir() and list(b.find()) == [bob.key]  # bob's lab is still there
    b.destroy(bob)
    assert not store.exists() and b.find() == {}
    stopped_machine(b, ann, "web")  # a new lab makes it again
    assert list(b.find()) == [ann.key]
