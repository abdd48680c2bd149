"""A class of three on the real Docker engine, through the CLI: up, isolation, grading, the
dashboard in headless Chromium, down leaving nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from orchestrator.classroom.store import ClassStore
from orchestrator.state import Store
from tests.integration.conftest import docker_leftovers, engine, student_id
from tests.integration.seat_helpers import browser as headless_browser

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "machine-id-clone"
#: `guestlab`, which carries the class commands and `serve`
WIRED = "from orchestrator.cli import main\nmain()\n"


def guestlab(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WIRED, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "200"},
    )


def container(student: str, machine: str) -> docker.models.containers.Container:
    return docker.from_env().containers.get(f"gl-{SCENARIO}--{student}-{machine}")


def sh(student: str, machine: str, script: str) -> tuple[int, str]:
    code, output = container(student, machine).exec_run(["bash", "-c", script])
    return code, output.decode()


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    engine("docker")
    ids = [student_id() for _ in range(3)]
    roster = tmp_path_factory.mktemp("class") / "class.csv"
    # a name with markup: the dashboard must show it as text
    roster.write_text(
        "id,name,email\n"
        f'{ids[0]},"Ann <b>Bold</b>",ann@example.org\n'
        f"{ids[1]},Bob,bob@example.org\n"
        f"{ids[2]},Cid,\n"
    )
    try:
        up = guestlab("class", "up", SCENARIO, "--roster", str(roster), "--parallel", "3")
        assert up.returncode == 0, up.stdout + up.stderr
        assert "3/3 lab(s) up" in up.stdout
        yield ids
    finally:
        down = guestlab("class", "down", SCENARIO)
        assert down.returncode == 0, down.stdout + down.stderr
        for s in ids:
            assert docker_leftovers(f"{SCENARIO}--{s}") == []
        again = guestlab("class", "down", SCENARIO)
        assert again.returncode == 0 and "nothing was left" in again.stdout


def test_each_student_has_their_own_machines_and_parameters(students: list[str]) -> None:
    ids = {s: sh(s, "template", "cat /etc/machine-id")[1].strip() for s in students}
    assert len(set(ids.values())) == 3
    for s in students:
        assert sh(s, "clone", "cat /etc/machine-id")[1].strip() == ids[s]  # a clone, as set up


def test_a_student_cannot_reach_another_students_machines(students: list[str]) -> None:
    a, b = students[0], students[1]
    nets = container(b, "template").attrs["NetworkSettings"]["Networks"]
    (b_ip,) = [n["IPAddress"] for n in nets.values()]
    own_nets = container(a, "template").attrs["NetworkSettings"]["Networks"]
    (a_ip,) = [n["IPAddress"] for n in own_nets.values()]
    assert a_ip and b_ip and a_ip != b_ip
    # A TCP connection from A's lab to B's machine gets no answer at all (the engine drops
    # traffic between lab networks), while A's own template answers at once with a refusal
    # (reachable, nothing listening on the port): the difference is the network, not the port.
    code, out = sh(a, "clone", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{a_ip}/22' 2>&1")
    assert code != 0 and "refused" in out.lower(), out
    started = time.monotonic()
    code, out = sh(a, "clone", f"timeout 5 bash -c 'exec 3<>/dev/tcp/{b_ip}/22' 2>&1")
    assert code != 0 and "refused" not in out.lower(), out
    assert code == 124 or "unreachable" in out.lower(), (code, out)
    assert time.monotonic() - started < 15
    # names of B's machines do not resolve in A's lab; A's own do
    assert sh(a, "clone", f"getent hosts gl-{SCENARIO}--{b}-template")[0] != 0
    assert sh(a, "clone", "getent hosts template")[0] == 0


def test_class_check_grades_everyone_and_records_the_check(students: list[str]) -> None:
    res = guestlab("class", "check", SCENARIO, "--format", "json")
    assert res.returncode == 0, res.stdout + res.stderr
    book = json.loads(res.stdout)
    rows = {r["student"]: r for r in book["students"]}
    assert set(students) <= set(rows)
    for s in students:
        assert rows[s]["total"] == 0 and rows[s]["max_total"] == 5
        assert {c["state"] for c in rows[s]["tasks"].values()} == {"fail"}
        assert rows[s]["copies"] == []
    store = Store()
    try:
        last = ClassStore(store.db).last_gradebook(SCENARIO)
        assert last is not None and last["checked_at"] == book["checked_at"]
    finally:
        store.close()


def test_a_solved_students_row_passes(students: list[str]) -> None:
    solved = students[2]
    res = guestlab("solve", SCENARIO, "--student", solved)
    assert res.returncode == 0, res.stdout + res.stderr
    res = guestlab("class", "check", SCENARIO, "--format", "csv")
    assert res.returncode == 0, res.stdout + res.stderr
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert rows[solved]["total"] == "5"
    assert [rows[s]["total"] for s in students[:2]] == ["0", "0"]
    exported = guestlab("class", "export", SCENARIO, "--format", "csv")
    assert exported.returncode == 0 and exported.stdout == res.stdout
    table = guestlab("class", "check", SCENARIO)
    assert "1/3 student(s) with full marks" in table.stdout, table.stdout


# -- the dashboard, in a real browser --------------------------------------------------------
@pytest.fixture
def dashboard(students: list[str]) -> Iterator[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WIRED, "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("Dashboard: http://127.0.0.1:"), line
        base, _, token = line.split(" ", 1)[1].strip().partition("?token=")
        yield f"{base}class/{SCENARIO}?token={token}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def cell_state(browser: Any, selector: str) -> tuple[str | None, str | None]:
    """A grid cell's state and colour, read in one script: the live grid replaces its
    cells as it updates, so an element found first and read later can be gone."""
    found = browser.execute_script(
        "const c = document.querySelector(arguments[0]);"
        "return c ? [c.dataset.state, getComputedStyle(c).backgroundColor] : [null, null];",
        selector,
    )
    return found[0], found[1]


def test_dashboard_cell_turns_green_when_a_student_solves(
    students: list[str], dashboard: str, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    browser = headless_browser(tmp_path)
    try:
        browser.get(dashboard)
        body = browser.find_element(By.TAG_NAME, "body").text
        assert "Ann <b>Bold</b>" in body and "Bob" in body and "Cid" in body  # shown as text
        assert not browser.find_elements(By.CSS_SELECTOR, "b")  # the name made no markup
        watched = students[0]
        selector = f'td.cell[data-student="{watched}"][data-task="find-id"]'
        assert cell_state(browser, selector)[0] != "pass"

        res = guestlab("solve", SCENARIO, "--student", watched, "--task", "find-id")
        assert res.returncode == 0, res.stdout + res.stderr
        res = guestlab("check", SCENARIO, "--student", watched)  # the student's own check
        assert "find-id" in res.stdout

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and cell_state(browser, selector)[0] != "pass":
            time.sleep(0.5)
        state, colour = cell_state(browser, selector)
        assert state == "pass"
        assert colour == "rgb(46, 125, 50)"  # green
        # the page was never reloaded: the grid follows by itself
        other = f'td.cell[data-student="{students[1]}"][data-task="find-id"]'
        assert cell_state(browser, other)[0] != "pass"
        browser.get(dashboard.replace(f"class/{SCENARIO}", f"class/{SCENARIO}/student/{watched}"))
        assert "Ann <b>Bold</b>" in browser.find_element(By.TAG_NAME, "h1").text
    finally:
        browser.quit()
