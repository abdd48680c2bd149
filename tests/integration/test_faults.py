"""Faults: a killed `up`, a stopped engine, races, a broken state store, a student who
breaks their machine. Each must end in a clear sentence and a lab `down` can remove."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import docker
import pytest

from orchestrator import backends, paths
from orchestrator.backends.contract import LabRef
from orchestrator.backends.docker.engine import container_name
from orchestrator.state import Store
from tests.integration.conftest import GUESTLAB, ROOT, engine, guestlab, student_id, wait_for_step

SCENARIO = "machine-id-clone"
CONTAINERS = [pytest.param(n, marks=getattr(pytest.mark, n)) for n in ("docker", "lxd", "nspawn")]


def nspawn_processes(ref: LabRef, machines: list[str]) -> list[str]:
    """Every systemd-nspawn process on the host that runs one of the lab's machines."""
    from orchestrator.backends.nspawn import unit_name

    names = {f"--machine={unit_name(ref, m)}".encode() for m in machines}
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"systemd-nspawn") and names & set(argv):
            found.append(cmdline.parent.name)
    return found


ORDER = ["provision", "setup", "clone", "snapshot"]


@pytest.mark.parametrize("backend_name", CONTAINERS)
@pytest.mark.parametrize("step", ORDER)
def test_kill_9_during_up_then_down_leaves_nothing(backend_name: str, step: str) -> None:
    backend = engine(backend_name)
    student = student_id()
    ref = LabRef(SCENARIO, student)
    proc = subprocess.Popen(
        [*GUESTLAB, "up", SCENARIO, "--student", student, "--backend", backend_name],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # a step too quick to catch is killed in the next one: the kill still lands mid-`up`
        caught = wait_for_step(ref.key, set(ORDER[ORDER.index(step) :]), proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    store = Store()
    record = store.lab(ref.key)
    assert record is not None and record.status == "provisioning" and record.step == caught
    if step == "clone":  # once: a second `up` finishes the job instead
        again = guestlab("up", SCENARIO, "--student", student, "--backend", backend_name)
        assert again.returncode == 0, again.stderr
        assert "did not finish" in again.stdout
        up_record = store.lab(ref.key)
        assert up_record is not None and up_record.status == "up"
    down = guestlab("down", SCENARIO, "--student", student)
    assert down.returncode == 0, down.stderr
    assert backend.find(ref) == {}
    assert store.lab(ref.key) is None
    if backend_name == "nspawn":
        assert nspawn_processes(ref, ["template", "clone"]) == []
    store.close()


@pytest.mark.docker
def test_two_ups_of_one_lab_at_once_provision_it_once() -> None:
    backend = engine("docker")
    student = student_id()
    argv = [*GUESTLAB, "up", SCENARIO, "--student", student]
    procs = [
        subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    try:
        codes = sorted(code for code, _ in results)
        # the loser is told the lab is busy, or, if it came late, that the lab is up
        assert codes in ([0, 5], [0, 0]), results
        if codes == [0, 5]:
            assert any("is busy" in err for _, err in results)
        found = backend.find(LabRef(SCENARIO, student))
        assert sorted(found[LabRef(SCENARIO, student).key].machines) == ["clone", "template"]
    finally:
        assert guestlab("down", SCENARIO, "--student", student).returncode == 0


@pytest.mark.docker
def test_down_during_a_check_ends_the_check_with_sentences(tmp_path: Path) -> None:
    engine("docker")
    root = tmp_path / "course"
    (root / "scenarios").mkdir(parents=True)
    (root / "scenarios" / "slow-check.yaml").write_text(
        "apiVersion: guestlab/v1\nkind: Scenario\n"
        "metadata: {id: slow-check, title: A check that takes its time}\n"
        "machines: [{name: box, init: none}]\n"
        "tasks:\n"
        "  - id: wait\n    title: Wait\n"
        "    checks: [{machine: box, run: 'sleep 8; true', timeout: 30}]\n"
    )
    student = student_id()
    path = str(root / "scenarios" / "slow-check.yaml")
    assert guestlab("up", path, "--student", student).returncode == 0
    check = subprocess.Popen(
        [*GUESTLAB, "check", "slow-check", "--student", student, "--format", "json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # down while the check's command runs, not before the check has begun (a busy host
    # can take seconds to start it: then the check, not down, would find the lab busy)
    box = docker.from_env().containers.get(container_name(LabRef("slow-check", student), "box"))
    deadline = time.monotonic() + 60
    while not any("sleep 8" in " ".join(p) for p in box.top()["Processes"]):
        assert time.monotonic() < deadline and check.poll() is None, "the check never ran"
        time.sleep(0.1)
    down = guestlab("down", "slow-check", "--student", student)
    out, err = check.communicate(timeout=120)
    assert down.returncode == 0, down.stderr
    assert check.returncode == 1, err
    assert "Traceback" not in err
    assert '"passed": false' in out
    assert backends.get("docker").find(LabRef("slow-check", student)) == {}


def test_a_corrupt_state_store_is_one_sentence_and_exit_5(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "state.db").write_bytes(b"not a database at all" * 200)
    res = guestlab("status", env={"GUESTLAB_HOME": str(home)})
    assert res.returncode == 5
    assert "cannot be used" in res.stderr and "Traceback" not in res.stderr
    assert "guestlab gc" in res.stderr


@pytest.mark.docker
def test_a_locked_state_store_is_one_sentence_and_exit_5() -> None:
    engine("docker")
    student = student_id()
    assert guestlab("up", SCENARIO, "--student", student).returncode == 0
    try:
        holder = sqlite3.connect(paths.home() / "state.db", isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a write
        try:
            res = guestlab("hint", SCENARIO, "find-id", "--student", student, timeout=120)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert res.returncode == 5, res.stderr
        assert "locked" in res.stderr and "Traceback" not in res.stderr
        # nothing that was committed is lost
        assert guestlab("hint", SCENARIO, "find-id", "--student", student).returncode == 0
    finally:
        assert guestlab("down", SCENARIO, "--student", student).returncode == 0


BREAKAGES = {
    "deletes /bin/sh": "rm -f /bin/sh /usr/bin/sh",
    "fills /tmp past its memory": "head -c 2G /dev/zero > /tmp/fill; true",
    "kills PID 1": "kill -9 1; systemctl halt --force --force; true",
    "forks a bomb": "timeout -s KILL 20 bash -c 'b() { b | b & }; b' 2>/dev/null; true",
}


@pytest.mark.docker
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_student_who_breaks_a_machine_still_gets_check_reset_and_down(breakage: str) -> None:
    backend = engine("docker")
    student = student_id()
    ref = LabRef(SCENARIO, student)
    assert guestlab("up", SCENARIO, "--student", student).returncode == 0
    try:
        proc = subprocess.run(
            [
                *GUESTLAB,
                "exec",
                SCENARIO,
                "clone",
                "--student",
                student,
                "--timeout",
                "60",
                "--",
                "bash",
                "-c",
                BREAKAGES[breakage],
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert "Traceback" not in proc.stderr
        # the host is unaffected: it can still start processes and answer
        assert subprocess.run(["true"], timeout=10).returncode == 0
        broken = guestlab("check", SCENARIO, "--student", student, "--format", "json", timeout=300)
        assert broken.returncode == 1 and "Traceback" not in broken.stderr, broken.stderr
        reset = guestlab("reset", SCENARIO, "--student", student, timeout=300)
        assert reset.returncode == 0, reset.stderr
        fresh = guestlab("check", SCENARIO, "--student", student, "--format", "json")
        assert fresh.returncode == 1
        assert "could not run" not in fresh.stdout  # every check ran again after the reset
    finally:
        assert guestlab("down", SCENARIO, "--student", student, timeout=300).returncode == 0
    assert backend.find(ref) == {}
