"""The gradebook: one row per student, built from check reports; and its output formats.

Everything here is a pure function of plain data (members, reports, lab statistics), so
the table, CSV, JSON and JUnit forms are tested without an engine. The dashboard builds
its grid from the same rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator import junit, textsafe
from orchestrator.classroom.copies import describe, is_copy
from orchestrator.classroom.store import (
    LabStats,
    Member,
    get_class,
    lab_stats,
    last_gradebook,
    list_members,
)
from orchestrator.messages import _
from orchestrator.report import Report

#: a task's state in the grid
PASS, FAIL, UNCHECKED = "pass", "fail", "unchecked"
#: spreadsheets run cells that start with these as formulas (CSV injection)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def iso(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def short_time(ts: float | None) -> str:
    """HH:MM:SS today, else the date too: a gradebook column, not a log."""
    if not ts:
        return "-"
    when = dt.datetime.fromtimestamp(ts)
    return when.strftime("%H:%M:%S" if when.date() == dt.date.today() else "%Y-%m-%d %H:%M")


def row(
    member: Member,
    tasks: Sequence[Mapping[str, Any]],
    report: Report | None,
    stats: LabStats,
    flags: Sequence[Mapping[str, Any]] = (),
    error: str = "",
) -> dict[str, Any]:
    """One student's line of the gradebook.

    `report` is the check report the row shows (the latest one); tasks it lacks (a check of
    only some tasks) are taken from the lab's last full report when it has them.
    """
    cells: dict[str, dict[str, Any]] = {}
    for task in tasks:
        tid = task["id"]
        result = report.task(tid) if report else None
        state = UNCHECKED if result is None else (PASS if result.passed else FAIL)
        failing = result.failing if result else []
        cells[tid] = {
            "state": state,
            "points": result.points if result else 0,
            "max_points": task["points"],
            "hints": stats.hints.get(tid, 0),
            "messages": [textsafe.clean(f"{c.name}: {c.message}") for c in failing],
            # graded without the reboot it asks for (`class check --no-reboot`)
            "unproven": bool(result and result.unproven),
        }
    return {
        "student": member.student,
        "name": member.name,
        "email": member.email,
        "lab": member.lab,
        "status": member.status,
        "error": textsafe.clean(error or member.error),
        "tasks": cells,
        "total": sum(c["points"] for c in cells.values()),
        "max_total": sum(t["points"] for t in tasks),
        "attempts": stats.own_attempts,
        "last_check": (report.checked_at if report else None) or stats.last_check,
        "hints": sum(stats.hints.values()),
        "copies": textsafe.data(list(flags)),
    }


def gradebook(
    class_id: str,
    tasks: Sequence[Mapping[str, Any]],
    rows: Sequence[dict[str, Any]],
    checked_at: float | None,
) -> dict[str, Any]:
    return {
        "class": class_id,
        "scenario": class_id,
        "checked_at": checked_at,
        "tasks": [{"id": t["id"], "title": t["title"], "points": t["points"]} for t in tasks],
        "students": list(rows),
    }


# -- formats ---------------------------------------------------------------------------------
def _safe_cell(text: str) -> str:
    """A clean value a spreadsheet will not run as a formula (OWASP CSV injection)."""
    text = textsafe.clean(text)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(book: Mapping[str, Any]) -> str:
    tasks = [t["id"] for t in book["tasks"]]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        [
            "student",
            "name",
            "email",
            *tasks,
            "total",
            "max_total",
            "attempts",
            "last_check",
            "hints",
            "copy_flags",
            "error",
        ]
    )
    for r in book["students"]:
        w.writerow(
            [
                _safe_cell(r["student"]),
                _safe_cell(r["name"]),
                _safe_cell(r["email"]),
                *(
                    r["tasks"][t]["points"] if r["tasks"][t]["state"] != UNCHECKED else ""
                    for t in tasks
                ),
                r["total"],
                r["max_total"],
                r["attempts"],
                iso(r["last_check"]),
                r["hints"],
                _safe_cell(" | ".join(describe(f) for f in r["copies"])),
                _safe_cell(r["error"]),
            ]
        )
    return buf.getvalue()


def to_junit(book: Mapping[str, Any]) -> str:
    """One test suite per student, one test case per task: for LMS and CI importers."""
    suites = []
    for r in book["students"]:
        cases = [junit.Case(r["student"], "lab", error=r["error"])] if r["error"] else []
        for tid, c in r["tasks"].items():
            passed = None if c["state"] == UNCHECKED else c["state"] == PASS
            cases.append(junit.outcome_case(r["student"], tid, passed, "\n".join(c["messages"])))
        props = [(key, r[key]) for key in ("student", "name", "email")]
        props.append(("score", f"{r['total']}/{r['max_total']}"))
        props += [("copy" if is_copy(f) else "note", describe(f)) for f in r["copies"]]
        suites.append(
            junit.Suite(
                name=f"{book['class']}.{r['student']}",
                cases=cases,
                timestamp=iso(r["last_check"]) or iso(book["checked_at"]),
                properties=props,
            )
        )
    return junit.document(suites, name=f"guestlab.class.{book['class']}")


def to_table(book: Mapping[str, Any]) -> Any:
    """A rich Table (imported here: the dashboard never needs rich)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    when = iso(book["checked_at"]).replace("T", " ") or _("never")
    title = _("Gradebook · {id} · checked {when}").format(
        id=textsafe.markup(book["class"]), when=when
    )
    table = Table(title=title, title_justify="left")
    table.add_column(_("student"))
    table.add_column(_("name"))
    for t in book["tasks"]:
        table.add_column(Text(textsafe.clean(t["id"])), justify="right")
    table.add_column(_("total"), justify="right")
    table.add_column(_("attempts"), justify="right")
    table.add_column(_("last check"))
    table.add_column(_("hints"), justify="right")
    table.add_column(_("notes"))
    style = {PASS: "green", FAIL: "red", UNCHECKED: "dim"}
    flagged = 0
    for r in book["students"]:
        cells = []
        for t in book["tasks"]:
            c = r["tasks"][t["id"]]
            text = "-" if c["state"] == UNCHECKED else f"{c['points']}/{c['max_points']}"
            if c["hints"]:
                text += f" ({c['hints']}h)"
            cells.append(Text(text, style=style[c["state"]]))
        notes = [Text(textsafe.clean(r["error"]), style="red")] if r["error"] else []
        if any(is_copy(f) for f in r["copies"]):
            flagged += 1
        notes += [
            Text(textsafe.clean(_("copy?") + " " + describe(f)), style="bold yellow")
            if is_copy(f)
            else Text(textsafe.clean(describe(f)), style="yellow")
            for f in r["copies"]
        ]
        total_style = "bold green" if r["total"] == r["max_total"] else "bold"
        table.add_row(
            Text(textsafe.clean(r["student"])),
            Text(textsafe.clean(r["name"])),
            *cells,
            Text(f"{r['total']}/{r['max_total']}", style=total_style),
            str(r["attempts"]),
            short_time(r["last_check"]),
            str(r["hints"]),
            Text("\n").join(notes) if notes else Text(""),
        )
    students = book["students"]
    full = sum(1 for r in students if r["total"] == r["max_total"] and not r["error"])
    summary = _("{full}/{n} student(s) with full marks").format(full=full, n=len(students))
    if flagged:
        summary += "; " + _("{n} flagged as sharing a per-student value").format(n=flagged)
    return Group(table, Text(summary))


def live(db: sqlite3.Connection, class_id: str) -> dict[str, Any] | None:
    """The gradebook as the store has it now: each lab's latest check, whoever ran it.

    Students running `guestlab check` themselves move the grid too; copy flags come from
    the last class check (probing machines is not a reader's business).
    """
    klass = get_class(db, class_id)
    if klass is None:
        return None
    members = list_members(db, class_id)
    stats = lab_stats(db, [m.lab for m in members])
    last = last_gradebook(db, class_id) or {}
    flags = {r["student"]: r["copies"] for r in last.get("students", [])}
    rows = [
        row(m, klass.tasks, stats[m.lab].last_report, stats[m.lab], flags.get(m.student, []))
        for m in members
    ]
    book = gradebook(class_id, klass.tasks, rows, last.get("checked_at"))
    book["status"] = klass.status
    book["expires"] = klass.expires
    return book
