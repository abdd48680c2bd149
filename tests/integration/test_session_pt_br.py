"""A student's whole session in Brazilian Portuguese on real engines (issue 16): the CLI's
lifecycle and the seat's page show none of guestlab's English, `exec` passes piped input
through and shows the machine's own errors, and Ctrl-C in a `reset` leaves no extra
container."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from orchestrator.backends.contract import LABEL_LAB, LabRef
from tests.english import english_in
from tests.integration.conftest import (
    GUESTLAB,
    ROOT,
    docker_leftovers,
    engine,
    guestlab,
    student_id,
)
from tests.integration.seat_helpers import Served, browser, check_until, wait

SCENARIO = "machine-id-clone"
#: what `exec` is fed through a pipe: more than one read of any buffer, several lines
PIPED = "".join(f"line {n} of the piped input\n" for n in range(20000)).encode()


def lab_up(backend: str, *extra: str) -> Iterator[str]:
    """A machine-id-clone lab up on `backend` for a new student, down afterwards."""
    engine(backend)
    student = student_id()
    try:
        up = guestlab("up", SCENARIO, "--student", student, "--backend", backend, *extra)
        assert up.returncode == 0, up.stdout + up.stderr
        yield student
    finally:
        down = guestlab("down", SCENARIO, "--student", student)
        assert down.returncode == 0, down.stdout + down.stderr
    assert engine(backend).find(LabRef(SCENARIO, student)) == {}


@pytest.fixture
def docker_lab() -> Iterator[str]:
    yield from lab_up("docker")


@pytest.fixture
def lxd_lab() -> Iterator[str]:
    yield from lab_up("lxd")


@pytest.fixture
def nspawn_lab() -> Iterator[str]:
    yield from lab_up("nspawn")


def exec_in(
    student: str, *command: str, stdin: bytes | None = None
) -> subprocess.CompletedProcess[bytes]:
    """`guestlab exec` in the clone, fed `stdin` through a pipe (None: /dev/null)."""
    return subprocess.run(
        [*GUESTLAB, "exec", SCENARIO, "clone", "--student", student, "--", *command],
        input=stdin,
        stdin=subprocess.DEVNULL if stdin is None else None,
        capture_output=True,
        cwd=ROOT,
        timeout=300,
    )


def piped_input_and_missing_commands(student: str) -> None:
    """`cat f | guestlab exec ... sh -c 'cat > f'` writes f; a missing command is the
    machine's own "not found", exit 127."""
    wrote = exec_in(student, "sh", "-c", "cat > /root/piped", stdin=PIPED)
    assert wrote.returncode == 0, wrote.stderr
    back = exec_in(student, "sha256sum", "/root/piped")
    import hashlib

    assert back.stdout.decode().split()[0] == hashlib.sha256(PIPED).hexdigest()
    for stdin in (None, b"ignored\n"):
        missing = exec_in(student, "nosuch-command", "arg", stdin=stdin)
        assert missing.returncode == 127, missing
        assert b"nosuch-command: not found" in missing.stderr, missing.stderr
        assert b"OCI" not in missing.stderr and b"nsenter" not in missing.stderr


@pytest.mark.docker
def test_exec_on_docker_passes_piped_input_and_the_machines_errors(docker_lab: str) -> None:
    piped_input_and_missing_commands(docker_lab)


@pytest.mark.lxd
def test_exec_on_lxd_passes_piped_input_and_the_machines_errors(lxd_lab: str) -> None:
    piped_input_and_missing_commands(lxd_lab)


@pytest.mark.nspawn
def test_exec_on_nspawn_passes_piped_input_and_the_machines_errors(nspawn_lab: str) -> None:
    piped_input_and_missing_commands(nspawn_lab)


def lab_containers(student: str) -> dict[str, str]:
    """The lab's containers by id: name."""
    key = LabRef(SCENARIO, student).key
    # sparse: one list call, no inspect of each (a container removed between the two would
    # fail the inspect while a reset is at work)
    found = docker.from_env().containers.list(
        all=True, sparse=True, filters={"label": f"{LABEL_LAB}={key}"}
    )
    return {c.id: c.attrs["Names"][0].lstrip("/") for c in found}


@pytest.mark.docker
@pytest.mark.parametrize("delay", [0.0, 1.0], ids=["at-once", "a-second-in"])
def test_ctrl_c_during_reset_leaves_no_extra_container(docker_lab: str, delay: float) -> None:
    before = lab_containers(docker_lab)
    proc = subprocess.Popen(
        [*GUESTLAB, "reset", SCENARIO, "--student", docker_lab],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C at a terminal: a suite started in the background inherits SIGINT ignored,
        # and Python then leaves it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # Ctrl-C once the reset is at work on the machines: a container gone, or a new one
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if lab_containers(docker_lab).keys() != before.keys():
                time.sleep(delay)  # at once, or with the next machine under way
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the reset ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # a failed test leaves no reset holding the lab
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    left = lab_containers(docker_lab)
    assert len(left) <= len(before) and set(left.values()) <= set(before.values()), left
    # and the same command brings the lab back, whole
    again = guestlab("reset", SCENARIO, "--student", docker_lab)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(lab_containers(docker_lab).values()) == sorted(before.values())


@pytest.mark.docker
def test_a_pt_br_session_on_docker_shows_no_english(tmp_path: Path) -> None:
    engine("docker")
    student = student_id()
    env = {"COLUMNS": "120", "GUESTLAB_LANG": "", "LANG": "C.UTF-8"}
    shown: list[str] = []

    def step(*args: str, code: int = 0) -> str:
        res = guestlab(*args, "--student", student, env=env)
        assert res.returncode == code, res.stdout + res.stderr
        shown.append(res.stdout + res.stderr)
        return res.stdout + res.stderr

    served = None
    try:
        started = time.monotonic()
        assert "O laboratório está no ar em" in step(
            "up", SCENARIO, "--backend", "docker", "--lang", "pt-BR"
        )
        # the lab's language goes on without --lang
        assert "Pontuação: 0/5" in step("check", SCENARIO, code=1)
        assert "Dica 1/4 para unique-id" in step("hint", SCENARIO, "unique-id")
        assert "voltou ao estado inicial" in step("reset", SCENARIO)
        link = guestlab("link", SCENARIO, "--student", student, "--base-url", "http://x")
        assert link.returncode == 0, link.stderr
        served = Served.start()
        page = seat_page_text(served.base, link.stdout.strip().rsplit("/", 1)[1], tmp_path)
        assert "Verificar" in page and "Tarefas" in page
        assert english_in(page) == [], page
        served.stop()  # the server keeps the lab's terminals: done with them before `down`
        served = None
        step("down", SCENARIO)
        print(f"pt-BR session on docker: {time.monotonic() - started:.1f} s")
    finally:
        if served is not None:
            served.stop()
        guestlab("down", SCENARIO, "--student", student)
    assert english_in("\n".join(shown)) == [], "\n".join(shown)
    assert docker_leftovers(LabRef(SCENARIO, student).key) == []


def seat_page_text(base: str, token: str, tmp_path: Path) -> str:
    """What the seat shows in pt-BR after Check and a hint: the page's visible text."""
    from selenium.webdriver.common.by import By

    driver = browser(tmp_path)
    try:
        driver.get(f"{base}/s/{token}?lang=pt-BR")
        wait(lambda: driver.find_elements(By.ID, "check"), what="the seat page")
        status = check_until(driver, "unique-id", "fail", limit=120)
        driver.find_element(By.CSS_SELECTOR, 'button.hint[data-task="unique-id"]').click()
        hint = '.hint-text[data-task="unique-id"]'
        wait(lambda: driver.find_element(By.CSS_SELECTOR, hint).text, what="the hint")
        assert driver.find_element(By.CSS_SELECTOR, hint).text.startswith("Dica 2 de 4")
        assert driver.find_element(By.CSS_SELECTOR, status).text == "ainda não"
        # the terminal's own text is the machine's, not guestlab's: left out
        for pane in driver.find_elements(By.ID, "panes"):
            driver.execute_script("arguments[0].remove()", pane)
        return str(driver.find_element(By.TAG_NAME, "body").text)
    finally:
        driver.quit()
