"""The gradebook and copy detection, on fake reports: no engine."""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET
from typing import Any

from rich.console import Console

from orchestrator import messages
from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.copies import (
    Observation,
    describe,
    fingerprint_params,
    note,
    problem_flags,
    shared,
)
from orchestrator.classroom.store import LabStats, Member
from orchestrator.report import Report
from orchestrator.scenario.model import Parameter

TASKS = [
    {"id": "find-id", "title": "Find it", "points": 1},
    {"id": "unique-id", "title": "Fix it", "points": 3},
]


def member(student: str, name: str = "", email: str = "") -> Member:
    return Member(
        "lab1", student, name or student.title(), email, f"lab1--{student}", 0, "up", "", {}, 0.0
    )


def report(student: str, passed: dict[str, bool], at: float = 1000.0) -> Report:
    tasks = [
        {
            "id": t["id"],
            "title": t["title"],
            "passed": passed[t["id"]],
            "points": t["points"] if passed[t["id"]] else 0,
            "max_points": t["points"],
            "checks": [
                {
                    "name": "c1",
                    "passed": passed[t["id"]],
                    "message": "" if passed[t["id"]] else "still wrong",
                }
            ],
        }
        for t in TASKS
        if t["id"] in passed
    ]
    return Report.from_dict(
        {
            "scenario": "lab1",
            "student": student,
            "checked_at": at,
            "tasks": tasks,
            "score": sum(t["points"] for t in tasks),
            "max_score": 4,
            "passed": all(passed.values()),
        }
    )


def book() -> dict[str, Any]:
    rows = [
        gb.row(
            member("ann", "Ann", "ann@example.org"),
            TASKS,
            report("ann", {"find-id": True, "unique-id": True}),
            LabStats(attempts=5, class_attempts=2, last_check=999.0, hints={"unique-id": 2}),
        ),
        gb.row(
            member("bob", '=HYPERLINK("x")'),
            TASKS,
            report("bob", {"find-id": True, "unique-id": False}),
            LabStats(attempts=1, class_attempts=1),
            [
                {
                    "what": "machine-id of clone",
                    "value": "ab",
                    "with": [{"student": "cid", "what": "parameter template_id"}],
                }
            ],
        ),
        gb.row(
            member("cid"), TASKS, None, LabStats(), error="lab machine-id-clone--cid is not ready"
        ),
    ]
    return gb.gradebook("lab1", TASKS, rows, 1000.0)


def test_rows_carry_points_totals_attempts_hints_and_state() -> None:
    ann, bob, cid = book()["students"]
    assert ann["tasks"]["unique-id"] == {
        "state": "pass",
        "points": 3,
        "max_points": 3,
        "hints": 2,
        "messages": [],
        "unproven": False,
    }
    assert (ann["total"], ann["max_total"], ann["attempts"], ann["hints"]) == (4, 4, 3, 2)
    assert ann["last_check"] == 1000.0  # the time of the report shown
    assert bob["tasks"]["unique-id"]["state"] == "fail"
    assert bob["tasks"]["unique-id"]["messages"] == ["c1: still wrong"]
    assert bob["total"] == 1
    assert cid["tasks"]["find-id"]["state"] == "unchecked"
    assert cid["error"].startswith("lab machine-id-clone--cid")


def test_a_report_of_some_tasks_leaves_the_others_unchecked() -> None:
    r = gb.row(member("ann"), TASKS, report("ann", {"find-id": True}), LabStats())
    assert r["tasks"]["unique-id"]["state"] == "unchecked"


def test_csv_has_one_line_per_student_and_neutralises_formulas() -> None:
    rows = list(csv.reader(io.StringIO(gb.to_csv(book()))))
    assert rows[0] == [
        "student",
        "name",
        "email",
        "find-id",
        "unique-id",
        "total",
        "max_total",
        "attempts",
        "last_check",
        "hints",
        "copy_flags",
        "error",
    ]
    assert rows[1][:8] == ["ann", "Ann", "ann@example.org", "1", "3", "4", "4", "3"]
    assert rows[2][1] == '\'=HYPERLINK("x")'  # a spreadsheet shows it, does not run it
    assert rows[2][10] == "machine-id of clone = cid's parameter template_id"
    assert rows[3][3:5] == ["", ""]  # not checked is not zero


def test_json_and_junit_forms() -> None:
    b = book()
    assert json.loads(json.dumps(b)) == b
    root = ET.fromstring(gb.to_junit(b).split("\n", 1)[1])
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["lab1.ann", "lab1.bob", "lab1.cid"]
    assert suites[1].get("failures") == "1"
    assert suites[2].get("errors") == "1" and suites[2].get("skipped") == "2"
    assert suites[1].find("testcase[@name='unique-id']/failure").text == "c1: still wrong"


def test_table_renders_with_a_summary() -> None:
    console = Console(width=200, record=True)
    console.print(gb.to_table(book()))
    text = console.export_text()
    assert "1/3 student(s) with full marks; 1 flagged" in text
    assert "3/3 (2h)" in text
    assert "copy? machine-id of clone = cid's parameter template_id" in text


# -- copy detection ---------------------------------------------------------------------------
def test_a_value_taken_from_another_students_lab_flags_only_the_taker() -> None:
    ann = Observation(
        "ann",
        {"template_id": "aaa1"},
        {"machine-id of template": ["aaa1"], "machine-id of clone": ["aaa1"]},
        {"machine-id of template": ["aaa1"], "machine-id of clone": ["aaa1"]},
    )
    bob = Observation(
        "bob",
        {"template_id": "bbb2"},
        {"machine-id of template": ["bbb2"], "machine-id of clone": ["AAA1"]},
        {"machine-id of template": ["bbb2"], "machine-id of clone": ["bbb2"]},
    )
    cid = Observation(
        "cid",
        {"template_id": "ccc3"},
        {"machine-id of template": ["ccc3"], "machine-id of clone": ["f00d"]},
        {"machine-id of template": ["ccc3"]},
    )
    flags = shared([ann, bob, cid])
    # ann's value is her own: whether she gave it away or bob planted it, only bob's lab
    # holds what is not its own
    assert set(flags) == {"bob"}
    assert describe(flags["bob"][0]) == (
        "machine-id of clone holds ann's parameter template_id, machine-id of template,"
        " machine-id of clone"
    )
    assert flags["bob"][0]["value"] == "aaa1"
    assert flags["bob"][0]["with"] == [
        {
            "student": "ann",
            "what": "parameter template_id, machine-id of template, machine-id of clone",
            "own": True,
        }
    ]


def test_values_every_holder_had_from_the_start_are_not_copies() -> None:
    # machines made from one image share its machine ID: nobody copied anything
    same = {"machine-id of box": ["1234"]}
    obs = [Observation(s, {}, same, same) for s in ("ann", "bob", "cid")]
    assert shared(obs) == {}


def test_a_value_two_students_reached_on_their_own_is_still_flagged() -> None:
    ann = Observation("ann", {}, {"ssh-host-key of box": ["KEY"]}, {})
    bob = Observation("bob", {}, {"ssh-host-key of box": ["key"]}, {})
    assert set(shared([ann, bob])) == {"ann", "bob"}


def test_only_parameters_with_enough_entropy_are_fingerprints() -> None:
    params = {
        "template_id": Parameter(random="hex", length=32),
        "pin": Parameter(random="digits", length=4),
        "colour": Parameter(choices=["red", "blue"]),
        "word": Parameter(random="word", length=12),
    }
    assert fingerprint_params(params) == ["template_id", "word"]


def test_copy_sentences_are_said_in_the_readers_language() -> None:
    ann = Observation("ann", {"template_id": "aaa1"}, {}, {})
    bob = Observation("bob", {}, {"machine-id of clone": ["aaa1"]}, {})
    cid = Observation("cid", {}, {"machine-id of clone": ["aaa1"]}, {})
    [flag] = shared([ann, bob, cid])["bob"]
    [unreadable, old] = problem_flags(
        [
            note(
                "{label}: {path} is larger than {kib} KiB",
                label="ssh-host-key of web",
                path="/k",
                kib=4,
            ),
            "a sentence from an older gradebook",
        ]
    )
    english = [describe(flag), describe(unreadable)]
    with messages.language("pt-BR"):
        portuguese = [describe(flag), describe(unreadable), describe(old)]
    assert english == [
        "machine-id of clone holds ann's parameter template_id (also in cid's machine-id of clone)",
        "not compared: ssh-host-key of web: /k is larger than 4 KiB",
    ]
    assert portuguese == [
        "machine-id de clone contém o valor de parâmetro template_id de ann (também em"
        " machine-id de clone de cid)",
        "não comparado: ssh-host-key de web: /k tem mais de 4 KiB",
        "não comparado: a sentence from an older gradebook",
    ]
    assert unreadable["problem"] == "ssh-host-key of web: /k is larger than 4 KiB"  # the record
