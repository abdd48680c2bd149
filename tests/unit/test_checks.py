"""Every check form, judged against a fake executor (no engine)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from orchestrator.backends.contract import ExecResult, LabRef
from orchestrator.checks import (
    BATCH_MARK,
    NOT_BATCHED,
    Unreachable,
    batch_script,
    grade,
    judge,
    parse_batch,
    probes,
    sh,
    trusted,
)
from orchestrator.checks.batch import TIMED_OUT_BUSYBOX
from orchestrator.errors import MachineUnavailable
from orchestrator.report import Report
from orchestrator.scenario.model import Check, Task
from orchestrator.scenario.model_base import parse

LAB = LabRef("demo", "alice")


def chk(**data: object) -> Check:
    return parse(Check, data)


def ok(stdout: str = "", code: int = 0, stderr: str = "") -> ExecResult:
    return ExecResult(code, stdout, stderr)


class FakeBackend:
    """Answers exec from a table keyed by (machine, shell text)."""

    name = "fake"
    capabilities = frozenset({"systemd", "clone", "snapshot"})

    def __init__(self, answers: dict[tuple[str, str], ExecResult | Exception]) -> None:
        self.answers = answers
        self.calls: list[tuple[str, tuple[str, ...], float]] = []

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        if BATCH_MARK in argv[2]:  # a machine that cannot batch: grade asks probe by probe
            return ExecResult(NOT_BATCHED)
        self.calls.append((machine, tuple(argv), timeout))
        answer = self.answers[(machine, argv[2])]
        if isinstance(answer, Exception):
            raise answer
        return answer


# -- run ----------------------------------------------------------------------------------
def test_run_passes_on_exit_zero() -> None:
    c = chk(machine="m", run="true")
    assert judge(c, [ok()]).passed


def test_run_fails_with_exit_code_and_stderr_in_message() -> None:
    c = chk(machine="m", run="false")
    r = judge(c, [ok(code=1, stderr="boom")])
    assert not r.passed
    assert r.message == "exit code 1, expected 0: boom"


def test_run_expected_exit_code() -> None:
    c = chk(machine="m", run="grep x f", exit_code=1)
    assert judge(c, [ok(code=1)]).passed
    assert not judge(c, [ok(code=0)]).passed


@pytest.mark.parametrize(
    ("cond", "stdout", "passed"),
    [
        ({"equals": "atlas"}, "atlas\n", True),
        ({"equals": "atlas"}, "atlas2\n", False),
        ({"contains": "las"}, "atlas", True),
        ({"contains": "xyz"}, "atlas", False),
        ({"matches": "^a.l"}, "atlas", True),
        ({"matches": "^t"}, "atlas", False),
    ],
)
def test_run_stdout_conditions(cond: dict[str, str], stdout: str, passed: bool) -> None:
    c = chk(machine="m", run="hostname", stdout=cond)
    assert judge(c, [ok(stdout)]).passed is passed


def test_fail_message_replaces_the_detail() -> None:
    c = chk(machine="m", run="false", fail_message="do the thing")
    assert judge(c, [ok(code=1)]).message == "do the thing"


def test_timeout_and_unreachable_fail_with_a_sentence() -> None:
    c = chk(machine="m", run="sleep 99", timeout=2)
    timed = judge(c, [ExecResult(124, "", "", timed_out=True)])
    assert not timed.passed and timed.message == "timed out after 2 s on m"
    gone = judge(c, [Unreachable("machine m is not running")])
    assert gone.message == "could not run on m: machine m is not running"


def test_run_probe_is_a_shell_text() -> None:
    assert probes(chk(machine="m", run="echo hi"))[0].argv[:3] == ("sh", "-c", "echo hi")


# -- file ---------------------------------------------------------------------------------
def file_out(mode: str, owner: str, content: str) -> ExecResult:
    return ok(f"{mode} {owner}\n{content}")


def test_file_path_is_passed_as_an_argument_not_shell_text() -> None:
    argv = probes(chk(machine="m", file={"path": "/tmp/a b;rm -rf /"}))[0].argv
    assert argv[-1] == "/tmp/a b;rm -rf /"
    assert "rm -rf" not in argv[2]


@pytest.mark.parametrize(
    ("cond", "result", "message"),
    [
        ({"path": "/f"}, file_out("644", "root", "x"), None),
        ({"path": "/f"}, ok(code=3), "/f does not exist"),
        ({"path": "/f", "exists": False}, ok(code=3), None),
        ({"path": "/f", "exists": False}, file_out("644", "root", ""), "/f exists"),
        ({"path": "/f", "mode": "0600"}, file_out("600", "root", ""), None),
        (
            {"path": "/f", "mode": "0600"},
            file_out("644", "root", ""),
            "/f has mode 0644, expected 0600",
        ),
        (
            {"path": "/f", "owner": "bob"},
            file_out("644", "root", ""),
            "/f is owned by root, expected bob",
        ),
        ({"path": "/f", "contains": "ab"}, file_out("644", "root", "xaby"), None),
        (
            {"path": "/f", "contains": "zz"},
            file_out("644", "root", "xaby"),
            "/f does not contain 'zz'",
        ),
        ({"path": "/f", "matches": r"^[0-9a-f]{4}\s*$"}, file_out("444", "root", "beef\n"), None),
        (
            {"path": "/f", "matches": r"^[0-9a-f]{4}\s*$"},
            file_out("444", "root", "bee\n"),
            "/f does not match /^[0-9a-f]{4}\\s*$/",
        ),
        (
            {"path": "/f"},
            ok(code=1, stderr="Permission denied"),
            "cannot read /f: Permission denied",
        ),
    ],
)
def test_file_conditions(cond: dict[str, object], result: ExecResult, message: str | None) -> None:
    r = judge(chk(machine="m", file=cond), [result])
    assert r.passed is (message is None)
    assert r.message == (message or "")


# -- service ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cond", "stdout", "message"),
    [
        ({"name": "ssh", "active": True}, "active\nenabled\n", None),
        (
            {"name": "ssh", "active": True},
            "inactive\nenabled\n",
            "ssh is inactive, expected active",
        ),
        ({"name": "ssh", "active": False}, "failed\ndisabled\n", None),
        (
            {"name": "ssh", "enabled": True},
            "active\ndisabled\n",
            "ssh is disabled, expected enabled",
        ),
        ({"name": "ssh", "enabled": False}, "inactive\nmasked\n", None),
        ({"name": "ssh", "active": True}, "", "ssh is unknown, expected active"),
    ],
)
def test_service_conditions(cond: dict[str, object], stdout: str, message: str | None) -> None:
    r = judge(chk(machine="m", service=cond), [ok(stdout)])
    assert r.passed is (message is None)
    assert r.message == (message or "")


# -- distinct / equal ---------------------------------------------------------------------
def test_distinct_passes_when_every_pair_differs() -> None:
    c = chk(distinct={"machines": ["a", "b", "c"], "run": "cat /etc/machine-id"})
    assert judge(c, [ok("1\n"), ok("2\n"), ok("3")]).passed
    r = judge(c, [ok("1\n"), ok("2\n"), ok("1")])
    assert not r.passed and r.message == "a and c give the same output: 1"


def test_equal_passes_when_all_agree() -> None:
    c = chk(equal={"machines": ["a", "b"], "run": "cat /etc/os-release"})
    assert judge(c, [ok("x\n"), ok("x")]).passed
    r = judge(c, [ok("x"), ok("y")])
    assert not r.passed and r.message == "the outputs differ (a: x; b: y)"


def test_multi_machine_command_failure_is_reported() -> None:
    c = chk(distinct={"machines": ["a", "b"], "run": "cat /nope"})
    r = judge(c, [ok(code=1, stderr="No such file"), ok("x")])
    assert r.message == "`cat /nope` failed on a (exit 1): No such file"


# -- grading ------------------------------------------------------------------------------
def test_grade_runs_every_probe_and_scores_tasks() -> None:
    tasks = [
        parse(
            Task,
            {
                "id": "one",
                "title": "t1",
                "points": 2,
                "checks": [
                    {"machine": "a", "run": "true"},
                    {"distinct": {"machines": ["a", "b"], "run": "id"}},
                ],
            },
        ),
        parse(
            Task,
            {"id": "two", "title": "t2", "points": 3, "checks": [{"machine": "b", "run": "false"}]},
        ),
    ]
    fake = FakeBackend(
        {
            ("a", "true"): ok(),
            ("a", "id"): ok("1"),
            ("b", "id"): ok("2"),
            ("b", "false"): MachineUnavailable("machine b is not running"),
        }
    )
    results = grade(fake, LAB, tasks)
    assert [r.passed for r in results] == [True, False]
    assert len(fake.calls) == 4  # besides a batch per machine, which this fake refuses
    rep = Report.now("demo", "alice", "fake", results)
    assert (rep.score, rep.max_score, rep.passed) == (2, 5, False)
    failing = rep.to_dict()["tasks"][1]["checks"][0]
    assert failing == {
        "name": "b: false",
        "passed": False,
        "message": "could not run on b: machine b is not running",
    }


def test_grade_passes_the_check_timeout_to_exec() -> None:
    task = parse(
        Task, {"id": "t", "title": "t", "checks": [{"machine": "a", "run": "x", "timeout": 7}]}
    )
    fake = FakeBackend({("a", "x"): ok()})
    grade(fake, LAB, [task])
    assert fake.calls[0][2] == 7


class LocalShell:
    """Runs every command in this host's own shell: the batch script is real shell code."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env
        self.calls: list[tuple[str, ...]] = []

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        self.calls.append(tuple(argv))
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout, env=self.env)
        return ExecResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def _tasks(*runs: str, timeout: float = 10) -> list[Task]:
    checks = [{"machine": "m", "run": r, "timeout": timeout} for r in runs]
    return [parse(Task, {"id": "t", "title": "t", "checks": checks})]


def test_a_batch_returns_each_probe_as_if_run_alone() -> None:
    items = [
        (sh("printf 'out\\n'; echo err >&2; exit 3"), 10.0),
        (sh("printf '\\377 binary and spaces  '"), 10.0),
        (sh("cat"), 10.0),  # stdin is empty, not the batch's: it must not hang
        (sh("sleep 30"), 0.5),
    ]
    proc = subprocess.run(["sh", "-c", batch_script(items)], capture_output=True, timeout=20)
    got = parse_batch(proc.stdout.decode(), len(items))
    assert got[0] == ExecResult(3, "out\n", "err\n")
    assert got[1].stdout == "\ufffd binary and spaces  " and got[1].exit_code == 0
    assert got[2] == ExecResult(0, "", "")
    assert got[3].timed_out and got[3].exit_code == 124


def test_parse_batch_skips_what_is_not_a_result_line() -> None:
    text = f"noise\n{BATCH_MARK} 0 0 aGk=- -\n{BATCH_MARK} 1 x - -\n{BATCH_MARK} 9 0 - -\n"
    assert parse_batch(text, 2) == {0: ExecResult(0, "hi", "")}


def test_grade_runs_one_exec_per_machine() -> None:
    shell = LocalShell()
    results = grade(shell, LAB, _tasks("true", "test $((1 + 1)) = 2", "false"))
    assert [c.passed for c in results[0].checks] == [True, True, False]
    assert len(shell.calls) == 1


def test_grade_falls_back_to_one_exec_per_probe_where_a_batch_cannot_run(
    tmp_path: Path,
) -> None:
    # a machine whose disk is full: df reports no room, so its outputs could be cut short
    (tmp_path / "df").write_text("#!/bin/sh\necho 'fs 1024 1024 0 100% /tmp'\n")
    (tmp_path / "df").chmod(0o755)
    shell = LocalShell({**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    results = grade(shell, LAB, _tasks("true", "echo hi | grep -q hi", "exit 4"))
    assert [c.passed for c in results[0].checks] == [True, True, False]
    assert results[0].checks[2].message == "exit code 4, expected 0"
    assert len(shell.calls) == 4  # the refused batch, then each probe alone


def test_a_batch_that_times_out_reports_its_probes_as_timed_out() -> None:
    results = grade(LocalShell(), LAB, _tasks("sleep 20", "sleep 20", timeout=0.5))
    assert [c.message for c in results[0].checks] == ["timed out after 0.5 s on m"] * 2


def test_a_stuck_probe_of_the_trusted_shell_times_out_alone(tmp_path: Path) -> None:
    # busybox's `timeout` ends only `sh`: the `sleep` it started keeps the probe's pipe open
    items = [(sh("sleep 60 | cat"), 0.5), (sh("echo hashed"), 1.0)]
    got, took = _trusted_batch(tmp_path, items)
    assert got[0].timed_out
    assert got[1] == ExecResult(0, "hashed\n", "")
    assert took < 15, f"the batch waited {took:.1f} s for the stuck probe's pipe"


def test_a_batch_of_the_trusted_shell_leaves_no_process_behind(tmp_path: Path) -> None:
    got, took = _trusted_batch(tmp_path, [(sh("echo quick"), 30.0)])
    assert got[0] == ExecResult(0, "quick\n", "") and took < 10  # its watchdog woke at once


def _trusted_batch(
    tmp_path: Path, items: list[tuple[tuple[str, ...], float]]
) -> tuple[dict[int, ExecResult], float]:
    """Run a batch as the trusted busybox runs it, in a session of its own: what it gave,
    in how many seconds; nothing of it (a watchdog, a probe, a `sleep`) may outlive it."""
    busybox = tmp_path / "tool" / "busybox"
    busybox.parent.mkdir()
    busybox.write_bytes(trusted.busybox())
    busybox.chmod(0o700)
    script = batch_script(items, tool_dir=str(busybox.parent))
    argv = [str(busybox), "env", "-i", "PATH=/usr/bin:/bin", str(busybox), "sh", "-c", script]
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    out, _err = proc.communicate(timeout=30)
    took = time.monotonic() - started
    assert _session(proc.pid) == []
    assert not busybox.parent.exists()
    return parse_batch(out.decode(), len(items), TIMED_OUT_BUSYBOX), took


def _session(sid: int) -> list[str]:
    """The commands of the processes still in session `sid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if int(fields[3]) == sid:  # field 6 of stat: the session
            found.append(text[text.index("(") + 1 : text.rindex(")")])
    return found
