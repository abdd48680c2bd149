"""What the LXD backend's test modules share: the backend with its image, a lab and its
`web` machine, each made once per module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.backends.contract import LabRef, MachineSpec, no_progress
from orchestrator.backends.lxd import LxdBackend
from tests.integration.conftest import engine
from tests.integration.lxd.machine import IMAGE, new_lab


@pytest.fixture(scope="module")
def backend() -> LxdBackend:
    b = engine("lxd")
    assert isinstance(b, LxdBackend)
    b.ensure_image(IMAGE, no_progress)  # first run on a host: debootstrap, ~40 s
    return b


@pytest.fixture(scope="module")
def lab(backend: LxdBackend) -> Iterator[LabRef]:
    ref = new_lab()
    yield ref
    backend.destroy(ref)


@pytest.fixture(scope="module")
def web(backend: LxdBackend, lab: LabRef) -> MachineSpec:
    spec = MachineSpec(lab, "web", IMAGE, hostname="web-host", memory=384 * 1024**2, cpus=1.5)
    backend.create(spec, no_progress)
    return spec
