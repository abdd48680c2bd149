"""The typed report: the JSON it writes is the dict guestlab always wrote, and reads back."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from orchestrator.classroom.store import ClassStore, lab_stats, student_history
from orchestrator.report import CheckResult, Report, TaskResult
from orchestrator.state import Store

#: a report as `check --format json` printed it, and the state store kept it, before the type
OLD: dict[str, Any] = {
    "scenario": "machine-id-clone",
    "student": "ann",
    "backend": "docker",
    "checked_at": 1764140000.5,
    "score": 2,
    "max_score": 5,
    "passed": False,
    "tasks": [
        {
            "id": "find-id",
            "title": "Find the machine ID",
            "passed": True,
            "points": 2,
            "max_points": 2,
            "checks": [{"name": "base: cat /etc/machine-id", "passed": True, "message": ""}],
        },
        {
            "id": "unique-id",
            "title": "Give the clone its own ID",
            "passed": False,
            "points": 0,
            "max_points": 3,
            "checks": [
                {"name": "ids differ", "passed": True, "message": ""},
                {"name": "clone: systemctl", "passed": False, "message": "exit 1 (expected 0)"},
            ],
        },
    ],
}


#: the same report as guestlab writes it now: every old key in its place, the reboot's
#: keys after them (`unproven` per task, `rebooted` for the run), then each task's
#: required tasks that failed (`first`)
NOW: dict[str, Any] = {
    **OLD,
    "tasks": [{**t, "unproven": False, "first": []} for t in OLD["tasks"]],
    "rebooted": [],
}


def sample() -> Report:
    return Report(
        "machine-id-clone",
        "ann",
        "docker",
        [
            TaskResult(
                "find-id",
                "Find the machine ID",
                2,
                [CheckResult("base: cat /etc/machine-id", True)],
            ),
            TaskResult(
                "unique-id",
                "Give the clone its own ID",
                3,
                [
                    CheckResult("ids differ", True),
                    CheckResult("clone: systemctl", False, "exit 1 (expected 0)"),
                ],
            ),
        ],
        1764140000.5,
    )


def test_the_json_is_the_old_dict_key_for_key_in_order_new_keys_after() -> None:
    rep = sample()
    assert rep.to_dict() == NOW
    keys = list(json.loads(rep.to_json()))
    assert keys[: len(OLD)] == list(OLD) and keys[len(OLD) :] == ["rebooted"]
    assert list(rep.to_dict()["tasks"][0])[-2:] == ["unproven", "first"]
    assert json.loads(rep.to_json(indent=2, clean=True)) == NOW
    assert (rep.score, rep.max_score, rep.passed) == (2, 5, False)


def test_a_round_trip_through_json_changes_nothing() -> None:
    rep = sample()
    again = Report.from_json(rep.to_json())
    assert again == rep and again.to_dict() == NOW
    assert again.task("unique-id") is not None and again.task("nope") is None
    assert [c.name for c in again.tasks[1].failing] == ["clone: systemctl"]


def test_an_old_stored_attempt_loads(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Store(path).close()
    db = sqlite3.connect(path)  # written as the guestlab before the type wrote it: a dict
    db.execute(
        "INSERT INTO attempts (lab, at, score, max_score, report) VALUES (?,?,?,?,?)",
        ("machine-id-clone--ann", 1764140001.0, 2, 5, json.dumps(OLD)),
    )
    db.commit()
    db.close()
    store = Store(path)
    [attempt] = store.attempts("machine-id-clone--ann")
    assert attempt.at == 1764140001.0 and attempt.report == sample()
    assert attempt.report.to_dict() == NOW
    [again] = student_history(store.db, "machine-id-clone--ann")
    assert again == attempt
    ClassStore(store.db)  # the class tables, which lab_stats also reads
    stats = lab_stats(store.db, ["machine-id-clone--ann"])["machine-id-clone--ann"]
    assert stats.last_report == sample() and stats.attempts == 1
    store.close()


def test_an_attempt_recorded_now_is_stored_as_before(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.add_attempt("k", sample())
    row = store.db.execute("SELECT score, max_score, report FROM attempts").fetchone()
    assert (row[0], row[1], json.loads(row[2])) == (2, 5, NOW)
    store.close()


def test_a_partial_old_report_loads_with_what_it_has() -> None:
    rep = Report.from_dict({"tasks": [{"id": "t", "max_points": 1, "checks": []}]})
    assert (rep.scenario, rep.backend, rep.checked_at) == ("", "", 0.0)
    assert rep.tasks[0].passed and rep.score == 1  # a task without checks passes, as before


def test_junit_has_a_case_per_check() -> None:
    root = ET.fromstring(sample().to_junit().split("?>", 1)[1])
    assert root.tag == "testsuite" and root.get("name") == "guestlab.machine-id-clone"
    assert (root.get("tests"), root.get("failures")) == ("3", "1")
    failure = root.find("testcase[@name='clone: systemctl']/failure")
    assert failure is not None and failure.get("message") == "exit 1 (expected 0)"
    assert root.find("testcase[@classname='unique-id']") is not None
    prop = root.find("properties/property")
    assert prop is not None and prop.get("value") == "ann"


def rebooted_sample(*, unproven: bool) -> Report:
    rep = sample()
    rep.tasks[0].unproven = unproven
    rep.rebooted = [] if unproven else ["clone"]
    return rep


def test_a_rebooted_run_and_an_unproven_task_round_trip() -> None:
    proven, unproven = rebooted_sample(unproven=False), rebooted_sample(unproven=True)
    assert proven.to_dict()["rebooted"] == ["clone"]
    assert Report.from_json(proven.to_json()) == proven
    again = Report.from_json(unproven.to_json())
    assert again == unproven and again.tasks[0].unproven
    # every check of the task passed, yet it is not passed and earns nothing
    assert all(c.passed for c in again.tasks[0].checks)
    assert not again.tasks[0].passed and again.tasks[0].points == 0
    assert (again.score, again.to_dict()["tasks"][0]["passed"]) == (0, False)


def test_an_unproven_task_is_a_failure_in_junit_and_text() -> None:
    from rich.console import Console

    from orchestrator import views

    root = ET.fromstring(rebooted_sample(unproven=True).to_junit().split("?>", 1)[1])
    failure = root.find("testcase[@classname='find-id'][@name='survives a reboot']/failure")
    assert failure is not None and "unproven" in (failure.get("message") or "")
    assert (root.get("tests"), root.get("failures")) == ("4", "2")
    console = Console(width=200, record=True)
    console.print(views.report_table(rebooted_sample(unproven=True)))
    text = console.export_text()
    assert "UNPROVEN" in text and "graded without the reboot" in text
    console.print(views.report_table(rebooted_sample(unproven=False)))
    assert "Rebooted before grading: clone" in console.export_text()
