"""What the nspawn backend's test modules share: the backend with its image, a lab with
a systemd machine `web` and a machine with no init `box`, each made once per module."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from orchestrator.backends.contract import LabRef, MachineSpec
from orchestrator.backends.nspawn import NspawnBackend
from tests.integration.conftest import engine
from tests.integration.nspawn.machine import (
    IMAGE,
    _new_lab,
    _progress,
)


@pytest.fixture(scope="module")
def backend() -> NspawnBackend:
    b = engine("nspawn")
    assert isinstance(b, NspawnBackend)
    b.ensure_image(IMAGE, _progress)
    return b


@pytest.fixture(scope="module")
def lab(backend: NspawnBackend) -> Iterator[LabRef]:
    ref = _new_lab()
    yield ref
    backend.destroy(ref)


@pytest.fixture(scope="module")
def web(backend: NspawnBackend, lab: LabRef) -> MachineSpec:
    spec = MachineSpec(
        lab, "web", IMAGE, hostname="web-host", memory=384 * 1024**2, cpus=0.5, pids=600
    )
    started = time.monotonic()
    backend.create(spec, _progress)
    print(f"systemd machine ready in {time.monotonic() - started:.1f} s")
    return spec


@pytest.fixture(scope="module")
def box(backend: NspawnBackend, lab: LabRef) -> MachineSpec:
    spec = MachineSpec(lab, "box", IMAGE, init="none")
    backend.create(spec, _progress)
    return spec
