"""Tasks graded after a reboot, on every backend: a real restart of the machine.

One small lab per backend (its scenario written here): a unit started but not enabled
and an answer kept in /run pass before a reboot and fail after it; enabled, and made by
tmpfiles.d, they pass after it. The reboot ends every process (a `sleep`, a student's
shell, which says why), empties /run and /tmp, and keeps the disk. On Vagrant this is one
VM and two reboots (the VM lanes are the suite's longest).
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.lab import Lab
from orchestrator.report import Report
from orchestrator.state import Store
from orchestrator.web.pty_process import PtyProcess
from tests.integration.conftest import GUESTLAB, ROOT, engine, guestlab, student_id

SCENARIO = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {id: reboot-proof, title: Changes that survive a reboot, level: beginner, duration: 5m}
description: A unit to enable and an answer in /run that must come back after a boot.
backends: [docker, lxd, nspawn, vagrant]
machines:
  - name: box
setup:
  - machine: box
    run: |
      printf '%s\\n' '[Unit]' 'Description=guestlab beacon' '[Service]' 'Type=oneshot' \\
        'RemainAfterExit=yes' 'ExecStart=/bin/true' '[Install]' \\
        'WantedBy=multi-user.target' > /etc/systemd/system/beacon.service
      systemctl daemon-reload
tasks:
  - id: beacon
    title: The beacon runs after every boot
    after_reboot: true
    checks:
      - machine: box
        service: {name: beacon.service, active: true}
    solution:
      - machine: box
        run: systemctl enable --now beacon.service
  - id: ready
    title: /run/lab/ready says yes after every boot
    after_reboot: true
    checks:
      - machine: box
        run: cat /run/lab/ready
        stdout: {equals: "yes"}
    solution:
      - machine: box
        run: |
          printf 'd /run/lab 0755 root root -\\nf /run/lab/ready 0644 root root - yes\\n' \\
            > /etc/tmpfiles.d/lab.conf
"""
#: the runtime-only answers: started, not enabled; written to /run, not made at boot
RUNTIME_ONLY = "systemctl start beacon.service && mkdir -p /run/lab && echo yes > /run/lab/ready"
#: what must not survive a reboot, and what must
BEFORE = "echo t > /tmp/scratch; echo d > /root/kept; (setsid sleep 1000 >/dev/null 2>&1 &)"
AFTER = (
    "test -e /tmp/scratch && echo tmp-kept || echo tmp-emptied;"
    " test -e /run/lab && echo run-kept || echo run-emptied;"
    " cat /root/kept; pgrep -x sleep || echo no-sleep"
)
#: a shell's end after its machine went: a container's at once, a VM's once sshd stops
SHELL_END = {"vagrant": 240.0}

BACKENDS = [
    pytest.param(name, marks=getattr(pytest.mark, name))
    for name in ("docker", "lxd", "nspawn", "vagrant")
]


@pytest.fixture(params=BACKENDS)
def lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Lab, Store]]:
    engine(request.param)
    path = tmp_path / "scenarios" / "reboot-proof.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO)
    store = Store()
    opened = lifecycle.prepare(str(path), student_id(), request.param)
    try:
        lifecycle.up(opened, store, lifecycle.Silent())
        yield opened, store
    finally:
        teardown.down(opened.ref, [b.name for b in opened.backends], store)
        assert opened.backend.find(opened.ref) == {}


def run(lab: Lab, cmd: str) -> str:
    res = lab.exec(lab.ref, "box", ["sh", "-c", cmd], timeout=60)
    assert res.ok, res
    return res.stdout


def check(lab: Lab, store: Store, *, reboot: bool) -> tuple[Report, float]:
    record = store.lab(lab.ref.key)
    assert record is not None
    started = time.monotonic()
    report = lifecycle.check(lab, record, store, reboot=reboot)
    return report, time.monotonic() - started


def test_only_what_survives_a_reboot_passes(lab: tuple[Lab, Store]) -> None:
    opened, store = lab
    run(opened, RUNTIME_ONLY + "; " + BEFORE)
    unproven, plain = check(opened, store, reboot=False)
    # the runtime-only answers do meet the checks now, yet without a reboot prove nothing
    assert [(t.unproven, t.passed, [c.passed for c in t.checks]) for t in unproven.tasks] == [
        (True, False, [True]),
        (True, False, [True]),
    ], unproven
    assert unproven.rebooted == [] and unproven.score == 0

    shell_out, (report, rebooting) = asyncio.run(shell_during(opened))
    assert report.rebooted == ["box"]
    assert [t.id for t in report.tasks if t.passed] == [], report
    assert "The shell ended: guestlab rebooted box" in shell_out, shell_out[-2000:]
    # a real reboot: /tmp and /run emptied, the disk kept, every process gone
    assert run(opened, AFTER).split() == ["tmp-emptied", "run-emptied", "d", "no-sleep"]

    for task in opened.scenario.tasks:
        record = store.lab(opened.ref.key)
        assert record is not None
        lifecycle.solve(opened, record, store, [task.id])
    proven, with_reboot = check(opened, store, reboot=True)
    assert proven.passed and proven.rebooted == ["box"], proven
    _, without = check(opened, store, reboot=False)  # the same lab, the same run
    print(
        f"\nreboot-proof check on {opened.backend.name}: {with_reboot:.1f} s with the reboot"
        f" ({rebooting:.1f} s with a shell open), {without:.1f} s and {plain:.1f} s without"
    )


async def shell_during(lab: Lab) -> tuple[str, tuple[Report, float]]:
    """A student's shell in the machine while `check` reboots it; what the shell printed."""
    argv = [*GUESTLAB, "shell", lab.scenario.id, "box", "--student", lab.ref.student]
    shell = await PtyProcess.spawn(argv, cols=400, env={"PYTHONPATH": str(ROOT)})
    seen = b""
    try:
        await shell.write(b"echo READY-$((40+2))\n")
        seen = await read_until(shell, b"READY-42", 120)
        # in a thread of its own, with a state store of its own (sqlite's rule)
        checking = asyncio.create_task(asyncio.to_thread(check_apart, lab))
        seen += await read_until(shell, None, 90 + SHELL_END.get(lab.backend.name, 60))
        await asyncio.wait_for(shell.proc.wait(), 10)  # it ended by itself
        return seen.decode(errors="replace"), await checking
    finally:
        await shell.close()


def check_apart(lab: Lab) -> tuple[Report, float]:
    store = Store()
    try:
        return check(lab, store, reboot=True)
    finally:
        store.close()


async def read_until(p: PtyProcess, needle: bytes | None, limit: float) -> bytes:
    """Output until `needle`, or until the process's end when `needle` is None."""
    seen = b""
    async with asyncio.timeout(limit):
        while needle is None or needle not in seen:
            chunk = await p.read()
            if not chunk:
                break
            seen += chunk
    return seen


@pytest.mark.docker
def test_prove_from_the_command_line(tmp_path: Path) -> None:
    engine("docker")
    wide = {"COLUMNS": "200"}
    res = guestlab("prove", "machine-id-clone", "--backend", "docker", env=wide)
    assert res.returncode == 0, res.stdout + res.stderr
    for step in (
        "every task fails after up",
        "unique-id passes after its solution and a reboot",
        "every task passes together",
        "every task fails after reset",
        "down leaves nothing",
    ):
        assert step in res.stdout, res.stdout
    assert "rebooting clone to prove the change survives" in res.stderr
    # a solution that only starts the unit: the proof stops at that task, down still runs
    path = tmp_path / "scenarios" / "reboot-proof.yaml"
    path.parent.mkdir()
    path.write_text(SCENARIO.replace("systemctl enable --now", "systemctl start"))
    res = guestlab("prove", str(path), "--backend", "docker", "--format", "junit", env=wide)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "step `beacon passes after its solution and a reboot` failed" in res.stderr
    suite = ET.fromstring(res.stdout).find("testsuite")
    assert suite is not None and suite.get("failures") == "1"
    names = [case.get("name") for case in suite.iter("testcase")]
    assert names == [
        "up",
        "every task fails after up",
        "beacon passes after its solution and a reboot",
        "down leaves nothing",
    ]
    assert not [key for key in engine("docker").find() if key.startswith("reboot-proof--prove-")]
