"""Shared test set-up: each test session gets its own state directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


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
