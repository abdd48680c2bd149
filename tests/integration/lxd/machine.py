"""Helpers of the LXD backend's test modules (their fixtures are in conftest.py)."""

from __future__ import annotations

from uuid import uuid4

from orchestrator.backends.contract import LabRef, MachineSpec
from orchestrator.backends.lxd import LxdBackend

IMAGE = "debian-12-systemd"


def new_lab() -> LabRef:
    return LabRef("lxd-test", f"t{uuid4().hex[:8]}")


def run(backend: LxdBackend, spec: MachineSpec, *argv: str, timeout: float = 20) -> str:
    res = backend.exec(spec.lab, spec.name, list(argv), timeout=timeout)
    assert res.ok, res
    return res.stdout.strip()
