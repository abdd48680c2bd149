"""Shared test set-up: each test session gets its own state directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


#: which worker group a test joins when it carries several engine marks: a lab with a VM
#: beside its containers goes with its containers' engine (a fault test stops the Docker
#: engine, which only the docker group may see), so the vagrant group holds pure VM tests
ENGINE_ORDER = ("docker", "lxd", "nspawn", "vagrant")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put every engine test in its engine's xdist group: tests of one engine run in
    order on one worker (they share its daemon, networks and images), engines side by
    side. A test that names its group itself keeps it."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        marks = {m.name for m in item.iter_markers()}
        group = next((e for e in ENGINE_ORDER if e in marks), None)
        if group:
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session", autouse=True)
def guestlab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private GUESTLAB_HOME; built images stay shared so they are built once per host."""
    from orchestrator import paths

    images = os.environ.get("GUESTLAB_IMAGES") or str(paths.home() / "images")
    home = tmp_path_factory.mktemp("guestlab-home")
    os.environ["GUESTLAB_HOME"] = str(home)
    os.environ["GUESTLAB_IMAGES"] = images
    os.environ["GUESTLAB_SCENARIOS"] = str(ROOT / "scenarios")
    return home
