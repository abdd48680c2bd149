"""Faults of the engine itself: Docker stops under a lab and under an open terminal.

These tests stop the host's dockerd. Every Docker test runs in one of Docker's two xdist
lanes (tests/conftest.py), this module last in lane one, and it holds the engine alone
(integration/conftest.docker_engine_held): lane two's module of the moment ends first, and
its next one waits until the engine is back, so no test has a container on it while it is
down.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import backends
from orchestrator.backends import btrfs_quota
from orchestrator.backends.contract import LabRef
from orchestrator.backends.docker import DockerBackend
from orchestrator.state import Store
from tests.integration.conftest import engine, guestlab, student_id

SCENARIO = "machine-id-clone"
#: read by the conftests: this module stops the engine, so it runs last in its lane and
#: holds the engine alone
STOPS_DOCKER = True


@pytest.fixture(scope="module", autouse=True)
def quotas_as_found() -> Iterator[None]:
    """A new dockerd turns the pool's simple quotas into full qgroup accounting (seen on
    2026-12-02: squota before `dockerd` started again, qgroup after), under which a
    `docker commit` is ten times slower: once this module's labs are gone, the pool gets
    back the mode the set-up gave it, as the host was before these tests."""
    docker = engine("docker")
    assert isinstance(docker, DockerBackend)
    root = Path(docker.facts.data_root)
    before = btrfs_quota.mode(root)
    yield
    left = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=guestlab.lab"], capture_output=True, text=True
    ).stdout.split()
    if before == "squota" and btrfs_quota.mode(root) != "squota" and not left:
        assert btrfs_quota.use_simple_quotas(root) == "squota"


def _engine_processes() -> list[str]:
    """dockerd and the containerd it runs: a new dockerd cannot start while they end."""
    found = subprocess.run(
        ["pgrep", "-f", "^dockerd|/var/run/docker/containerd/containerd.toml"],
        capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    return found


def _start_dockerd() -> None:
    """Start Docker again once the stopped one has fully ended; a second try if the first
    start does not answer (under load, containerd can be slow to go)."""
    for _attempt in range(2):
        deadline = time.monotonic() + 90
        while _engine_processes() and time.monotonic() < deadline:
            time.sleep(0.5)
        log = open("/var/log/dockerd.log", "ab")  # noqa: SIM115 - handed to the daemon for good
        subprocess.Popen(["dockerd"], stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)
        subprocess.run(["pkill", "-TERM", "-x", "dockerd"], check=False)
    raise AssertionError("dockerd did not come back")


def _dockerd_pid() -> int | None:
    out = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def _dockerd_and_a_lab() -> tuple[int, str]:
    """dockerd's pid (the engine-stop tests stop it by pid) and a lab brought up on it."""
    engine("docker")
    pid = _dockerd_pid()
    if pid is None:
        pytest.fail("dockerd runs under a service manager here; this test stops it by pid")
    student = student_id()
    assert guestlab("up", SCENARIO, "--student", student).returncode == 0
    return pid, student


@pytest.mark.docker
def test_the_engine_stops_mid_lab_then_comes_back() -> None:
    pid, student = _dockerd_and_a_lab()
    os.kill(pid, signal.SIGTERM)
    try:
        deadline = time.monotonic() + 60
        while _dockerd_pid() == pid and time.monotonic() < deadline:
            time.sleep(0.2)
        gone = guestlab("check", SCENARIO, "--student", student)
        assert gone.returncode == 3, gone.stderr
        assert "cannot reach the Docker engine" in gone.stderr and "Traceback" not in gone.stderr
    finally:
        _start_dockerd()
    back = guestlab("check", SCENARIO, "--student", student, "--format", "json")
    assert back.returncode == 1 and "Traceback" not in back.stderr  # machines stopped: checks fail
    assert guestlab("reset", SCENARIO, "--student", student).returncode == 0
    after = guestlab("check", SCENARIO, "--student", student, "--format", "json")
    assert after.returncode == 1 and "could not run" not in after.stdout
    assert guestlab("down", SCENARIO, "--student", student).returncode == 0
    assert backends.get("docker").find(LabRef(SCENARIO, student)) == {}


@pytest.mark.docker
def test_the_engine_stops_under_an_open_terminal_and_the_seat_keeps_serving() -> None:
    """A student's terminal ends with a sentence when Docker stops; the server answers
    that student and the others, and the seat works again once Docker is back."""
    import asyncio
    import json

    import websockets

    from orchestrator.credentials import Seats
    from tests.integration.seat_helpers import Served, terminal

    pid, student = _dockerd_and_a_lab()
    store = Store()
    token = Seats(store.db).issue(LabRef(SCENARIO, student).key)
    store.close()
    served = Served.start()

    async def stop_under_the_terminal() -> str:
        url = served.base.replace("http://", "ws://") + "/api/terminal/clone"
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {token}"}
        ) as ws:
            await ws.send(b"echo up-$((2+2))\r")
            out = b""
            while b"up-4" not in out:
                out += await asyncio.wait_for(ws.recv(), 30)
            os.kill(pid, signal.SIGTERM)
            while True:
                msg = await asyncio.wait_for(ws.recv(), 90)
                if isinstance(msg, str):
                    return json.loads(msg)["message"]

    try:
        sentence = asyncio.run(stop_under_the_terminal())
        assert sentence and "Traceback" not in sentence
        status, me = served.get("/api/me", token)  # the server still answers, from its store
        assert status == 200 and me["student"] == student
        status, body = served.post("/api/check", token)
        assert status in (409, 503) and "error" in body, (status, body)  # a sentence, not a 500
    finally:
        _start_dockerd()
    try:
        assert guestlab("reset", SCENARIO, "--student", student).returncode == 0
        out = terminal(
            served.base, token, "clone", [(b"echo back-$((4+4))\r", b"back-8")], timeout=60
        )
        assert "back-8" in out[0]
    finally:
        err = served.stop()
        assert "Traceback" not in err
        assert guestlab("down", SCENARIO, "--student", student).returncode == 0
