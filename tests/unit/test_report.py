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


def test_the_json_is_the_old_dict_key_for_key_in_order() -> None:
    rep = sample()
    assert rep.to_dict() == OLD
    assert list(json.loads(rep.to_json())) == list(OLD)  # the same keys, in the same order
    assert json.loads(rep.to_json(indent=2, clean=True)) == OLD
    assert (rep.score, rep.max_score, rep.passed) == (2, 5, False)


def test_a_round_trip_through_json_changes_nothing() -> None:
    rep = sample()
    again = Report.from_json(rep.to_json())
    assert again == rep and again.to_dict() == OLD
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
    assert attempt.report.to_dict() == OLD
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
    assert (row[0], row[1], json.loads(row[2])) == (2, 5, OLD)
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
