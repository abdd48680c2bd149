"""Labs on the real Docker engine: the whole lifecycle, through the library and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.backends.contract import LABEL_LAB, Backend, LabRef
from orchestrator.state import Store, lab_lock
from tests.integration.conftest import docker_leftovers, guestlab, student_id, wait_for_step

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = "machine-id-clone"


@pytest.fixture
def store() -> Iterator[Store]:
    s = Store()
    yield s
    s.close()


@pytest.fixture
def lab_up(docker_backend: Backend, store: Store) -> Iterator[lifecycle.Lab]:
    lab = lifecycle.prepare(SCENARIO, student_id(), "docker")
    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        yield lab
    finally:
        teardown.down(lab.ref, ["docker"], store)
    assert docker_leftovers(lab.ref.key) == []


def run(lab: lifecycle.Lab, machine: str, cmd: str) -> str:
    res = lab.backend.exec(lab.ref, machine, ["sh", "-c", cmd], timeout=30)
    assert res.exit_code == 0, res
    return res.stdout.strip()


def test_machines_boot_systemd_and_the_clone_copies_the_template(lab_up: lifecycle.Lab) -> None:
    lab = lab_up
    assert run(lab, "template", "cat /proc/1/comm") == "systemd"
    assert run(lab, "clone", "systemctl is-system-running") in ("running", "degraded")
    assert run(lab, "clone", "hostname") == "clone"
    # the clone is a copy taken after setup: same ID, same files, with the student's ID
    tid = run(lab, "template", "cat /etc/machine-id")
    assert tid == lab.params["template_id"]
    assert run(lab, "clone", "cat /etc/machine-id") == tid
    assert run(lab, "clone", "cat /var/lib/dbus/machine-id") == tid
    assert "machine-id-clone" in run(lab, "clone", "cat /etc/motd")
    assert run(lab, "template", "stat -c %a /etc/motd") == "644"


def test_resources_and_labels_are_applied(lab_up: lifecycle.Lab) -> None:
    c = docker.from_env()
    containers = c.containers.list(filters={"label": f"{LABEL_LAB}={lab_up.ref.key}"})
    assert sorted(x.labels["guestlab.machine"] for x in containers) == ["clone", "template"]
    for ct in containers:
        host = ct.attrs["HostConfig"]
        assert host["Memory"] == 256 * 1024**2
        assert host["NanoCpus"] == 1_000_000_000
        assert host["PidsLimit"] == 1024
        assert host["Privileged"] is False
        assert ct.labels["guestlab.student"] == lab_up.ref.student
    nets = c.networks.list(filters={"label": f"{LABEL_LAB}={lab_up.ref.key}"})
    assert len(nets) == 1 and nets[0].attrs["Internal"] is True


def test_second_up_changes_nothing(lab_up: lifecycle.Lab, store: Store) -> None:
    c = docker.from_env()
    flt = {"label": f"{LABEL_LAB}={lab_up.ref.key}"}
    before = sorted(x.id for x in c.containers.list(filters=flt))
    again = lifecycle.up(lab_up, store, lifecycle.Silent())
    assert again.already_up
    assert sorted(x.id for x in c.containers.list(filters=flt)) == before


def test_a_stopped_machine_fails_its_checks_with_a_sentence(
    lab_up: lifecycle.Lab, store: Store
) -> None:
    docker.from_env().containers.get(f"gl-{lab_up.ref.key}-clone").stop(timeout=5)
    record = store.lab(lab_up.ref.key)
    assert record is not None
    rep = lifecycle.check(lab_up, record, store, ["find-id"])
    message = rep.tasks[0].checks[0].message
    assert message == "could not run on clone: machine clone is not running (it is exited)"


def test_exec_timeout_is_enforced(lab_up: lifecycle.Lab) -> None:
    started = time.monotonic()
    res = lab_up.backend.exec(lab_up.ref, "template", ["sleep", "600"], timeout=2)
    assert res.timed_out and res.exit_code == 124
    # stopped at its timeout, not at the command's end (a bound for a host under CI's load)
    assert time.monotonic() - started < 120


def test_cli_student_view_end_to_end(docker_backend: Backend) -> None:
    student = student_id()
    up = guestlab("up", SCENARIO, "--student", student)
    assert up.returncode == 0, up.stderr
    assert "Task 1" in up.stdout and "guestlab shell" in up.stdout
    try:
        failing = guestlab("check", SCENARIO, "--student", student, "--format", "json")
        assert failing.returncode == 1, failing.stderr
        report = json.loads(failing.stdout)
        assert report["score"] == 0 and report["student"] == student
        assert {"id", "passed", "points", "checks"} <= set(report["tasks"][0])
        hint = guestlab("hint", SCENARIO, "unique-id", "--student", student)
        assert "Hint 1/4" in hint.stdout
        assert guestlab("solve", SCENARIO, "--student", student).returncode == 0
        passing = guestlab("check", SCENARIO, "--student", student)
        assert passing.returncode == 0, passing.stdout
        assert "Score: 5/5" in passing.stdout
        junit = guestlab("check", SCENARIO, "--student", student, "--format", "junit")
        assert junit.returncode == 0 and 'failures="0"' in junit.stdout
        out = guestlab("exec", SCENARIO, "clone", "--student", student, "--", "sh", "-c", "exit 7")
        assert out.returncode == 7
    finally:
        down = guestlab("down", SCENARIO, "--student", student)
    assert down.returncode == 0, down.stderr
    assert "removed from docker" in down.stdout
    assert docker_leftovers(LabRef(SCENARIO, student).key) == []
    again = guestlab("down", SCENARIO, "--student", student)
    assert again.returncode == 0 and "it is down" in again.stdout


def test_ctrl_c_during_up_leaves_a_lab_that_down_removes(docker_backend: Backend) -> None:
    student = student_id()
    key = LabRef(SCENARIO, student).key
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator.cli", "up", SCENARIO, "--student", student],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # Ctrl-C as in a student's terminal: a job started in the background (CI) inherits
        # SIGINT ignored, and Python then leaves it ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        # interrupt in the middle of provisioning, as the state store says: polling the
        # engine for the first resource was too slow once `up` took under two seconds
        wait_for_step(key, {"provision", "setup", "clone"}, proc)
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    try:
        assert proc.returncode == 130, err
        assert "interrupted" in err and "Traceback" not in err
        store = Store()
        record = store.lab(key)
        assert record is not None and record.status == "failed"
        # a second `up` finishes the job cleanly, then `down` removes everything
        up = guestlab("up", SCENARIO, "--student", student)
        assert up.returncode == 0, up.stderr
        assert "did not finish" in up.stdout
        assert guestlab("down", SCENARIO, "--student", student).returncode == 0
    finally:
        guestlab("down", SCENARIO, "--student", student)  # a failed assertion leaves no lab
    assert docker_leftovers(key) == []


def test_a_lab_that_is_busy_is_refused(docker_backend: Backend) -> None:
    student = student_id()
    with lab_lock(LabRef(SCENARIO, student).key):
        res = guestlab("up", SCENARIO, "--student", student)
    assert res.returncode == 5
    assert "is busy" in res.stderr and "Traceback" not in res.stderr


def test_gc_removes_labs_the_store_forgot_and_only_its_own(
    docker_backend: Backend, store: Store, tmp_path: Path
) -> None:
    lab = lifecycle.prepare(SCENARIO, student_id(), "docker")
    lifecycle.up(lab, store, lifecycle.Silent())
    store.delete_lab(lab.ref.key)
    # a lab of another state store on the same host (another user, another test run)
    other_home = {"GUESTLAB_HOME": str(tmp_path / "other")}
    other = student_id()
    assert guestlab("up", SCENARIO, "--student", other, env=other_home).returncode == 0
    try:
        res = guestlab("gc")
        assert res.returncode == 0, res.stderr
        assert lab.ref.key in res.stdout
        assert docker_leftovers(lab.ref.key) == []
        assert docker_leftovers(LabRef(SCENARIO, other).key) != []
    finally:
        guestlab("down", SCENARIO, "--student", other, env=other_home)
    assert docker_leftovers(LabRef(SCENARIO, other).key) == []


def test_engine_down_is_exit_3_with_how_to_start_it() -> None:
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    res = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "up", SCENARIO, "--student", student_id()],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert res.returncode == 3, res.stderr
    assert "cannot reach the Docker engine" in res.stderr
    assert "dockerd" in res.stderr and "Traceback" not in res.stderr


def test_shell_is_a_real_interactive_terminal(lab_up: lifecycle.Lab) -> None:
    import pty

    env = {**os.environ, "GUESTLAB_STUDENT": lab_up.ref.student, "TERM": "dumb"}
    pid, fd = pty.fork()
    if pid == 0:  # the child: guestlab replaces itself with the engine's interactive exec
        os.execve(
            sys.executable,
            [sys.executable, "-m", "orchestrator.cli", "shell", SCENARIO, "clone"],
            env,
        )
    os.write(fd, b"tty; echo host=$(hostname); exit\n")
    output = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # the terminal closed: the shell exited
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    text = output.decode(errors="replace")
    assert "host=clone" in text
    assert "/dev/pts/" in text  # the shell inside has a terminal of its own


def test_root_in_a_machine_cannot_reach_the_host_through_a_cgroup_release_agent(
    lab_up: lifecycle.Lab,
) -> None:
    # The classic escape of a container with CAP_SYS_ADMIN: mount a v1 hierarchy, point its
    # release_agent at a host command. A private cgroup namespace makes the kernel refuse it.
    probe = (
        "mkdir -p /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null || exit 0; "
        "if echo /bin/true > /tmp/cg/release_agent 2>/dev/null; then echo ESCAPE; else echo refused; fi; "
        "umount /tmp/cg"
    )
    res = lab_up.backend.exec(lab_up.ref, "template", ["sh", "-c", probe], timeout=30)
    assert "ESCAPE" not in res.stdout, res
