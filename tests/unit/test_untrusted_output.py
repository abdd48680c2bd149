"""What a hostile machine prints, read by grading and copy detection: bounded, and shown as data.

The probes run for real in this host's shell (a FIFO fed by `yes`, a 1 GB sparse file), so
the bounds are those of the shell code that runs in machines, not of a fake.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from orchestrator import textsafe, views
from orchestrator.backends.contract import OUTPUT_LIMIT, ExecResult, LabRef
from orchestrator.checks import (
    BATCH_SIZE,
    MAX_FILE_BYTES,
    PROBE_OUTPUT_LIMIT,
    grade,
    judge,
)
from orchestrator.classroom import copies
from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.store import LabStats, Member
from orchestrator.errors import MachineUnavailable
from orchestrator.report import Report
from orchestrator.scenario.model import Check, Task
from orchestrator.scenario.model_base import parse
from orchestrator.web.rendering import log_safe

LAB = LabRef("demo", "mallory")
HOSTILE = "[/nope] \x1b]52;c;cm0gLXJmIH4=\x07\x1b]0;pwned\x07\x1b[2J\x1b[?25l\x9b1m\x7f\x00 done"


class LocalShell:
    """Runs each command in this host's shell; counts execs and the bytes they printed."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self.calls: list[tuple[str, ...]] = []
        self.printed: list[int] = []

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        self.calls.append(tuple(argv))
        proc = subprocess.run(list(argv), capture_output=True, timeout=timeout + 5)
        self.printed.append(len(proc.stdout))
        cut = len(proc.stdout) > self.limit
        out = proc.stdout[: self.limit].decode("utf-8", "replace")
        return ExecResult(proc.returncode, out, proc.stderr.decode("utf-8", "replace"), False, cut)


@pytest.fixture
def hostile_files(tmp_path: Path) -> Iterator[Path]:
    """A FIFO fed by `yes`, a 1 GB sparse file and a file with escapes, as a student makes."""
    fifo = tmp_path / "machine-id"
    os.mkfifo(fifo)
    writer = subprocess.Popen(
        ["sh", "-c", f"exec yes > '{fifo}'"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with open(tmp_path / "ssh_host_ed25519_key.pub", "wb") as f:
        f.truncate(1024**3)
    (tmp_path / "motd").write_text(HOSTILE)
    try:
        yield tmp_path
    finally:
        writer.kill()
        writer.wait()


def chk(**data: object) -> Check:
    where = {} if "distinct" in data else {"machine": "m"}
    return parse(Check, {**where, "timeout": 5, **data})


def tasks(*checks: Check) -> list[Task]:
    return [Task(id="t", title="t", checks=list(checks))]


def test_hostile_files_and_commands_cost_grading_bounded_time_and_memory(
    hostile_files: Path,
) -> None:
    d = hostile_files
    checks = [
        chk(file={"path": str(d / "machine-id"), "matches": "^[0-9a-f]{32}$"}),
        chk(file={"path": str(d / "machine-id")}),  # it exists: not reading it is enough
        chk(file={"path": str(d / "ssh_host_ed25519_key.pub"), "contains": "ssh-ed25519"}),
        chk(run=f"cat {d / 'machine-id'}"),
        chk(run="yes >&2; exit 1"),
        chk(distinct={"machines": ["m", "n"], "run": "yes"}),
    ]
    shell = LocalShell()
    started = time.monotonic()
    results = grade(shell, LAB, tasks(*checks))[0].checks
    assert time.monotonic() - started < 10
    assert [r.passed for r in results] == [False, True, False, False, False, False]
    assert (
        results[0].message == f"{d / 'machine-id'} is not a regular file (fifo), so it was not read"
    )
    assert results[2].message == (
        f"{d / 'ssh_host_ed25519_key.pub'} is 1073741824 bytes, more than the"
        f" {MAX_FILE_BYTES} a check reads"
    )
    stopped = f"printed more than {PROBE_OUTPUT_LIMIT // 1024} KiB on m, so it was stopped"
    assert results[3].message.startswith(stopped)
    assert results[4].message.startswith("exit code 1, expected 0: ")
    assert len(results[4].message) <= 1100
    assert results[5].message.startswith(stopped)
    assert len(shell.calls) == 2  # one batch per machine, nothing asked again
    assert max(shell.printed) < OUTPUT_LIMIT


def test_a_machine_with_many_probes_is_asked_in_batches_that_fit_the_output_limit() -> None:
    shell = LocalShell()
    results = grade(shell, LAB, tasks(*[chk(run="yes") for _ in range(BATCH_SIZE * 2 + 1)]))
    assert len(shell.calls) == 3
    assert max(shell.printed) <= OUTPUT_LIMIT  # so the backend never cuts a batch short
    assert all("stopped and not judged" in r.message for r in results[0].checks)


def test_a_batch_cut_short_by_the_backend_is_not_asked_again_probe_by_probe() -> None:
    shell = LocalShell(limit=1000)  # an engine that keeps only 1000 bytes
    results = grade(shell, LAB, tasks(chk(run="yes | head -c 5000"), chk(run="true")))
    assert len(shell.calls) == 1
    assert all(not r.passed for r in results[0].checks)


class Answers:
    """An executor that refuses batches and answers each probe with one result."""

    def __init__(self, result: ExecResult | Exception) -> None:
        self.result = result

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        if "guestlab-probe" in argv[2]:
            return ExecResult(125)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def test_a_probe_run_alone_is_cut_on_the_host_too() -> None:
    huge = ExecResult(0, "x" * (3 * PROBE_OUTPUT_LIMIT), "e" * 10**6)
    (result,) = grade(Answers(huge), LAB, tasks(chk(run="x", stdout={"contains": "x"})))[0].checks
    assert not result.passed and "stopped and not judged" in result.message


def test_what_a_machine_prints_reaches_messages_clean() -> None:
    failed = judge(chk(run="x"), [ExecResult(2, "", HOSTILE)])
    assert not failed.passed and "[/nope]" in failed.message and failed.message.endswith("done")
    assert "\x1b" not in failed.message and "\x9b" not in failed.message
    assert "\x00" not in failed.message and "pwned" not in failed.message
    gone = judge(chk(run="x"), [ExecResult(0)])
    assert gone.passed
    unreachable = grade(Answers(MachineUnavailable(HOSTILE)), LAB, tasks(chk(run="x")))
    assert "\x1b" not in unreachable[0].checks[0].message


def test_a_file_probe_whose_stat_lies_is_a_sentence_not_a_crash() -> None:
    lie = ExecResult(0, f"{HOSTILE}\ncontent")
    r = judge(chk(file={"path": "/f", "mode": "0644"}), [lie])
    assert not r.passed and r.message.startswith("cannot read the mode of /f: ")
    assert "\x1b" not in r.message


def hostile_report() -> Report:
    results = grade(Answers(ExecResult(1, "", HOSTILE)), LAB, tasks(chk(run="x")))
    return Report.now("demo", "mallory", "fake", results)


def test_the_check_table_shows_markup_and_escapes_as_text() -> None:
    console = Console(file=io.StringIO(), width=300, force_terminal=True)
    console.print(views.report_table(hostile_report()))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/nope]" in shown and "done" in shown
    assert "\x1b]" not in shown and "52;" not in shown and "\x1b[2J" not in shown
    assert "\x1b[?25l" not in shown  # the cursor stays


def test_check_junit_and_json_stay_valid() -> None:
    stored = hostile_report().to_dict()
    stored["tasks"][0]["checks"][0]["message"] = HOSTILE  # as an older store may hold it
    rep = Report.from_json(json.dumps(stored))
    root = ET.fromstring(rep.to_junit().split("?>", 1)[1])
    failure = root.find("testcase/failure")
    assert failure is not None and "[/nope]" in (failure.text or "")
    dumped = json.dumps(textsafe.data(rep.to_dict()), ensure_ascii=False)
    assert "\x1b" not in dumped and json.loads(dumped)["tasks"][0]["passed"] is False


# -- copy detection ---------------------------------------------------------------------------
def probe(pattern: str, column: int | None = None) -> copies.StudentProbe:
    return copies.StudentProbe("ssh-host-key", "clone", pattern, column)


def run_probe(p: copies.StudentProbe) -> tuple[list[str], list[str], int]:
    """The values, the English sentences of the notes, and how much the probe printed."""
    proc = subprocess.run(list(p.argv), capture_output=True, timeout=10)
    values, notes = copies.parse(p, proc.stdout.decode())
    return values, [n["problem"] for n in notes], len(proc.stdout)


def test_copy_probes_never_read_a_fifo_or_a_huge_file(hostile_files: Path) -> None:
    d = hostile_files
    (d / "ssh_host_rsa_key.pub").write_text("ssh-rsa AAAAB3Nz root@clone\n")
    started = time.monotonic()
    values, problems, printed = run_probe(probe(str(d / "ssh_host_*_key.pub"), 1))
    assert time.monotonic() - started < 5 and printed < 20_000
    assert values == ["aaaab3nz"]
    assert problems == [
        f"ssh-host-key of clone: {d / 'ssh_host_ed25519_key.pub'} is larger than 4 KiB"
    ]
    values, problems, _ = run_probe(probe(str(d / "machine-id")))
    assert values == [] and problems == [
        f"ssh-host-key of clone: {d / 'machine-id'} is not a regular file"
    ]


def test_copy_probes_read_a_bounded_number_of_files(tmp_path: Path) -> None:
    for n in range(copies.MAX_FILES + 5):
        (tmp_path / f"k{n:02d}.pub").write_text(f"ssh-ed25519 KEY{n} x\n")
    values, problems, _ = run_probe(probe(str(tmp_path / "k*.pub"), 1))
    assert len(values) == copies.MAX_FILES
    assert problems == [f"ssh-host-key of clone: more than {copies.MAX_FILES} files"]


def test_unreadable_probe_output_is_a_sentence() -> None:
    values, notes = copies.parse(probe("/x"), "file !!! ???-\nrubbish\n")
    problems = [n["problem"] for n in notes]
    assert (
        values == []
        and problems == ["ssh-host-key of clone: the probe printed something unreadable"] * 2
    )


class FakeLab:
    """Just what copies.gather needs of a lab."""

    def __init__(self, answer: ExecResult | Exception) -> None:
        self.answer = answer
        self.ref = LAB
        self.specs = [type("Spec", (), {"name": "clone"})()]

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        assert timeout <= copies.PROBE_TIMEOUT
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (ExecResult(124, timed_out=True), "no answer within 15 s"),
        (ExecResult(0, "x" * 100, truncated=True), "it printed too much"),
        (ExecResult(2), "exit 2"),
        (MachineUnavailable("machine clone is not running"), "machine clone is not running"),
    ],
)
def test_a_probe_that_cannot_be_read_is_a_sentence(
    answer: ExecResult | Exception, why: str
) -> None:
    found = copies.gather(FakeLab(answer))  # type: ignore[arg-type]
    assert found.values == {}
    assert len(found.problems) == 2 and all(why in p["problem"] for p in found.problems)


def test_a_planted_classmates_value_flags_only_the_planter() -> None:
    ann = copies.Observation(
        "ann", {"template_id": "a" * 32}, {"machine-id of clone": ["f" * 32]}, {}
    )
    # bob plants ann's value (say he saw it on her screen) in his own machine
    bob = copies.Observation(
        "bob", {"template_id": "b" * 32}, {"machine-id of clone": ["A" * 32]}, {}
    )
    flags = copies.shared([ann, bob])
    assert list(flags) == ["bob"]
    assert (
        copies.describe(flags["bob"][0]) == "machine-id of clone holds ann's parameter template_id"
    )


def test_copy_problems_are_notes_not_flags() -> None:
    m = Member("lab1", "eve", "Eve", "", "lab1--eve", 0, "up", "", {}, 0.0)
    notes = copies.problem_flags([f"ssh-host-key of clone: {HOSTILE}"])
    r = gb.row(m, [{"id": "t", "title": "t", "points": 1}], None, LabStats(), notes)
    book = gb.gradebook("lab1", [{"id": "t", "title": "t", "points": 1}], [r], 1000.0)
    console = Console(file=io.StringIO(), width=300, force_terminal=True)
    console.print(gb.to_table(book))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "flagged" not in shown and "not compared: ssh-host-key of clone: [/nope]" in shown
    assert "\x1b]" not in shown


# -- the gradebook's exports ------------------------------------------------------------------
def hostile_book() -> dict[str, Any]:
    tasks_ = [{"id": "t", "title": "t", "points": 1}]
    m = Member(
        "lab1", "eve", f"Eve {HOSTILE}", "=cmd|' /C calc'!A0", "lab1--eve", 0, "up", "", {}, 0.0
    )
    rep = Report.from_dict(
        {
            "checked_at": 1000.0,
            "tasks": [
                {
                    "id": "t",
                    "passed": False,
                    "points": 0,
                    "max_points": 1,
                    "checks": [{"name": "c", "passed": False, "message": HOSTILE + "\x0c\ud800"}],
                }
            ],
        }
    )
    flag = {
        "what": "machine-id of clone",
        "value": HOSTILE,
        "with": [{"student": "ann", "what": HOSTILE, "own": True}],
    }
    r = gb.row(m, tasks_, rep, LabStats(), [flag], error=HOSTILE)
    return gb.gradebook("lab1", tasks_, [r], 1000.0)


def test_csv_json_and_junit_of_hostile_text_parse_and_carry_no_escape() -> None:
    book = hostile_book()
    text = gb.to_csv(book)
    assert "\x1b" not in text and "\x7f" not in text
    (row,) = csv.DictReader(io.StringIO(text))
    assert row["email"].startswith("'=")  # still no formula
    assert "[/nope]" in row["error"]
    doc = gb.to_junit(book)
    root = ET.fromstring(doc.split("?>", 1)[1])
    assert root.find("testsuite/testcase[@name='t']/failure") is not None
    assert "\x1b" not in doc
    dumped = json.dumps(textsafe.data(book), ensure_ascii=False)
    assert "\x1b" not in dumped and "\ud800" not in dumped
    json.loads(dumped)


def test_the_gradebook_table_shows_hostile_text_as_text() -> None:
    console = Console(file=io.StringIO(), width=400, force_terminal=True)
    console.print(gb.to_table(hostile_book()))
    shown = console.file.getvalue()  # type: ignore[attr-defined]
    assert "[/nope]" in shown and "\x1b]" not in shown and "\x1b[2J" not in shown


# -- the dashboard's access log ---------------------------------------------------------------
def test_access_log_lines_carry_no_token_and_no_control_character() -> None:
    token = "s3cret-TOKEN_x"
    line = log_safe(f'"GET /class/x?token={token}&a=b HTTP/1.1" 200 -', token)
    assert token not in line and "?…" in line and "/class/x" in line
    line = log_safe(f"GET /{token}/\x1b]52;c;eA==\x07\x1b[2J\x9b HTTP/1.1", token)
    assert token not in line and "[token]" in line
    assert "\x1b" not in line and "\x07" not in line and "\x9b" not in line
    assert "\\x1b]52;c;eA==\\x07" in line  # shown, visibly


def test_the_dashboard_logs_requests_without_tokens_or_escapes(tmp_path: Path) -> None:
    from starlette.testclient import TestClient

    from orchestrator.classroom.store import ClassStore
    from orchestrator.state import Store
    from orchestrator.web.app import build_app
    from orchestrator.web.config import ServeConfig

    store = Store(tmp_path / "state.db")
    ClassStore(store.db)
    token = "tok-" + "x" * 28
    lines: list[str] = []
    app = build_app(ServeConfig(db_path=store.path, token=token, log=lines.append))
    with TestClient(app) as client:
        for target in (f"/?token={token}", f"/{token}/%1b]52;c;eA==%07?x=1", "/%1b[2Jnope"):
            client.get(target)
    store.close()
    assert len(lines) == 3, lines
    for line in lines:
        assert token not in line and "\x1b" not in line and "\x07" not in line
    assert " GET / 200 " in lines[0]
    assert "[token]" in lines[1] and "\\x1b]52;c;eA==\\x07" in lines[1] and " 403 " in lines[1]
    assert " 403 " in lines[2] and "\\x1b[2Jnope" in lines[2]
