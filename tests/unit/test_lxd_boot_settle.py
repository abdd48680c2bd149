"""An LXD machine's boot wait and its settling (hostname, inner Docker) in one exec for a
systemd machine: asked until systemd is ready, settled only then and only once, a failed
settling or boot said, and `init: none` machines waited for and settled as before."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.backends.contract import ExecResult, LabRef, MachineSpec
from orchestrator.backends.lxd import boot
from orchestrator.errors import ProvisioningError

LAB = LabRef("demo", "ann")


def spec(init: str = "systemd") -> MachineSpec:
    return MachineSpec(lab=LAB, name="clone", image="debian-12-systemd", init=init, hostname="c1")


def run(
    monkeypatch: pytest.MonkeyPatch, answers: list[Any], init: str = "systemd"
) -> list[tuple[list[str], float]]:
    """boot_and_settle against execs answering `answers` in turn (an exception is raised)."""
    calls: list[tuple[list[str], float]] = []

    def execute(conn: object, inst: object, argv: list[str], timeout: float) -> ExecResult:
        calls.append((list(argv), timeout))
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(boot, "execute", execute)
    inst = SimpleNamespace(name="gl-x-clone")
    boot.boot_and_settle(SimpleNamespace(), inst, spec(init), lambda line: None)  # type: ignore[arg-type]
    return calls


def test_a_systemd_machine_is_settled_in_the_exec_that_saw_its_boot_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    early = ProvisioningError("exec refused: instance starting")
    calls = run(monkeypatch, [early, ExecResult(0, "offline\n"), ExecResult(0, "degraded\n")])
    assert len(calls) == 3  # no exec of its own for the settling
    argv, timeout = calls[-1]
    assert argv[:2] == ["sh", "-c"] and argv[-1] == "c1"  # the hostname, as $1
    assert boot.BOOTED_THEN_SETTLE in argv[2] and boot.settle_script() in argv[2]
    assert timeout >= boot.SETTLE_TIMEOUT  # the settling keeps the time it had alone


def test_a_failed_settling_is_said_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    failed = ExecResult(1, "running\n", "hostname: you must be root")
    with pytest.raises(ProvisioningError, match="cannot set the hostname of gl-x-clone"):
        run(monkeypatch, [failed])


def test_a_machine_in_maintenance_did_not_boot(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ProvisioningError, match="did not boot"):
        run(monkeypatch, [ExecResult(0, "maintenance\n")])


def test_an_idle_machine_is_waited_for_then_settled(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = run(monkeypatch, [ExecResult(0), ExecResult(0)], init="none")
    assert [c[0][0] for c in calls] == ["true", "sh"]
    assert calls[1][0][-1] == "c1"


@pytest.mark.parametrize(
    ("state", "settled"),
    [("running", True), ("degraded", True), ("starting", False), ("offline", False)],
)
def test_the_script_settles_only_a_ready_machine(state: str, settled: bool, tmp_path: Path) -> None:
    fake = tmp_path / "systemctl"
    fake.write_text(f"#!/bin/sh\necho {state}\nexit 1\n")  # degraded/starting exit non-zero
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    res = subprocess.run(
        ["sh", "-c", boot.BOOTED_THEN_SETTLE + "echo settled $1\n", "sh", "c1"],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"},
        check=True,
    )
    assert res.stdout.splitlines()[0] == state
    assert ("settled c1" in res.stdout) is settled
