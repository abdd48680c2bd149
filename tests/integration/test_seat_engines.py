"""A browser terminal's websocket on every other backend: LXD, nspawn and a VM.

Each test brings one lab up, opens a terminal through `guestlab serve` with the lab's
token, reads the machine's hostname, and checks that closing the socket ends the shell
inside the machine too. (Docker, with the browser itself, is test_seat_docker.py.)
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.integration.conftest import engine, guestlab, student_id
from tests.integration.seat_helpers import Served, refused, terminal


def lab_with_link(scenario: str, backend: str, timeout: float = 600) -> Iterator[tuple[str, str]]:
    """(student, token) of a lab that is up; removed afterwards."""
    engine(backend)
    student = student_id()
    try:
        up = guestlab("up", scenario, "--backend", backend, "--student", student, timeout=timeout)
        assert up.returncode == 0, up.stdout + up.stderr
        link = guestlab("link", scenario, "--student", student, "--base-url", "http://x")
        assert link.returncode == 0, link.stderr
        yield student, link.stdout.strip().rsplit("/s/", 1)[1]
    finally:
        down = guestlab("down", scenario, "--student", student)
        assert down.returncode == 0, down.stdout + down.stderr


def in_machine(scenario: str, student: str, machine: str, marker: str) -> list[str]:
    """The processes in the machine whose command line holds `marker`."""
    ps = guestlab("exec", scenario, machine, "--student", student, "--", "ps", "-eo", "args")
    assert ps.returncode == 0, ps.stderr
    return [line for line in ps.stdout.splitlines() if marker in line and "ps -eo" not in line]


def terminal_ends_in_the_machine(scenario: str, student: str, token: str, hostname: str) -> None:
    served = Served.start()
    try:
        out = terminal(
            served.base,
            token,
            "guest",
            [(b"hostname; echo end-$((6*7))\r", b"end-42"), (b"sleep 4242 &\r", b"]")],
            timeout=120,
        )
        assert re.search(rf"[\r\n]{hostname}\r\n", out[0]), out[0]  # a line of its own
        assert refused(served.base, None, "/api/terminal/guest") == 403
        deadline = time.monotonic() + 30
        while in_machine(scenario, student, "guest", "sleep 4242") and time.monotonic() < deadline:
            time.sleep(1)
        assert in_machine(scenario, student, "guest", "sleep 4242") == []
    finally:
        served.stop()


@pytest.mark.parametrize(
    "backend",
    [pytest.param("lxd", marks=pytest.mark.lxd), pytest.param("nspawn", marks=pytest.mark.nspawn)],
)
def test_a_container_terminal_opens_and_ends_with_its_socket(backend: str) -> None:
    for student, token in lab_with_link("machine-id-inspect", backend):
        terminal_ends_in_the_machine("machine-id-inspect", student, token, "guest")


@pytest.mark.vagrant
def test_a_vm_terminal_opens_and_ends_with_its_socket(vm_seat: tuple[str, str]) -> None:
    student, token = vm_seat
    terminal_ends_in_the_machine("guest-drivers", student, token, "guest")
