"""The Docker engine shared by two test lanes, and held alone by the tests that stop it.

Docker's tests run in two xdist lanes at once. A module that stops dockerd
(`STOPS_DOCKER = True`) would take the other lane's containers down with it, so the
lanes share the engine through a readers-writer lock on files: a Docker test module
holds it shared from its first test's set-up to its last test's teardown (its module
fixtures included); a module that stops the engine holds it alone. A gate makes the lock
fair: while such a module waits, no other module takes the engine.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from pathlib import Path

import pytest

LOCKS = Path(tempfile.gettempdir()) / "guestlab-tests"


class EngineLock:
    """This worker's hold on the Docker engine, shared or alone."""

    def __init__(self) -> None:
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def take(self, alone: bool) -> None:
        LOCKS.mkdir(mode=0o700, exist_ok=True)
        gate = os.open(LOCKS / "docker-engine.gate", os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fd = os.open(LOCKS / "docker-engine.lock", os.O_CREAT | os.O_RDWR, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        finally:
            os.close(gate)  # closing gives the gate back
        self._fd = fd

    def give_back(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


HOLD = EngineLock()


def uses_docker(item: pytest.Item) -> bool:
    return item.get_closest_marker("docker") is not None


def on_setup(item: pytest.Item) -> None:
    """Take the engine before the first Docker test of a module sets anything up."""
    if uses_docker(item) and not HOLD.held:
        HOLD.take(alone=bool(getattr(item.module, "STOPS_DOCKER", False)))


def on_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Give the engine back once the module's last test and its fixtures are torn down."""
    if HOLD.held and (nextitem is None or nextitem.module is not item.module):
        HOLD.give_back()
