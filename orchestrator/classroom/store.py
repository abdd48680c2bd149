"""The classroom's tables, in the same SQLite database as the labs they group.

A class is named by its scenario id (a lab is already named by scenario and student, so a
student is in at most one class per scenario on a host). The queries that read the core
tables (labs, attempts, hints) live here too, as functions of a plain connection: the
dashboard runs them on a read-only connection, the CLI on the `Store`'s own.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from orchestrator.errors import StateError
from orchestrator.messages import _
from orchestrator.report import Attempt, Report

SCHEMA = """
CREATE TABLE IF NOT EXISTS classes (
    id TEXT PRIMARY KEY,           -- the scenario id
    scenario_path TEXT NOT NULL,
    backend TEXT NOT NULL,
    memory INTEGER,                -- bytes per lab (--memory), NULL: the scenario's limits
    expires REAL,                  -- when `gc` removes the labs, NULL: never
    tasks TEXT NOT NULL,           -- JSON [{id, title, points}]: the grid's columns
    status TEXT NOT NULL,          -- up | down | expired
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS class_members (
    class TEXT NOT NULL,
    student TEXT NOT NULL,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    lab TEXT NOT NULL,             -- the lab key in labs, attempts and hints
    position INTEGER NOT NULL,     -- order in the roster
    status TEXT NOT NULL,          -- pending | up | failed | down | expired
    error TEXT NOT NULL DEFAULT '',
    baseline TEXT NOT NULL DEFAULT '{}',  -- JSON probe label -> values, right after `up`
    updated REAL NOT NULL,
    ssh_key TEXT NOT NULL DEFAULT '',     -- the roster's public key for the SSH door
    PRIMARY KEY (class, student)
);
CREATE TABLE IF NOT EXISTS class_checks (
    id INTEGER PRIMARY KEY,
    class TEXT NOT NULL,
    at REAL NOT NULL,
    gradebook TEXT NOT NULL        -- JSON: the gradebook exactly as it was shown
);
CREATE TABLE IF NOT EXISTS class_results (
    check_id INTEGER NOT NULL,
    class TEXT NOT NULL,
    student TEXT NOT NULL,
    lab TEXT NOT NULL,
    at REAL NOT NULL,
    report TEXT,                   -- JSON check report; NULL when the lab could not be checked
    error TEXT NOT NULL DEFAULT '',
    probes TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS class_checks_class ON class_checks(class, at);
CREATE INDEX IF NOT EXISTS class_results_lab ON class_results(lab);
"""


@dataclass(frozen=True)
class ClassRecord:
    id: str
    scenario_path: str
    backend: str
    memory: int | None
    expires: float | None
    tasks: list[dict[str, Any]]
    status: str
    created: float
    updated: float


@dataclass(frozen=True)
class Member:
    klass: str
    student: str
    name: str
    email: str
    lab: str
    position: int
    status: str
    error: str
    baseline: dict[str, list[str]]
    updated: float
    ssh_key: str = ""


@dataclass
class LabStats:
    """What the core tables say about one lab's checks and hints."""

    attempts: int = 0  # every check, the student's and the class's
    class_attempts: int = 0  # those taken by `class check`
    last_check: float | None = None
    last_report: Report | None = None
    hints: dict[str, int] = field(default_factory=dict)  # task -> hints taken

    @property
    def own_attempts(self) -> int:
        return self.attempts - self.class_attempts


@dataclass
class StudentResult:
    """What one class check found in one student's lab: its report, or why there is none."""

    student: str
    lab: str = ""
    report: Report | None = None
    error: str = ""
    probes: dict[str, list[str]] = field(default_factory=dict)  # copy probe label -> values
    copy_problems: list[dict[str, Any]] = field(default_factory=list)  # copies.note each
    params: dict[str, str] = field(default_factory=dict)  # the lab's parameters


class ClassStore:
    """The class tables on a `Store`'s connection (one per thread, like the Store)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self._run("SELECT 1")  # a broken store fails here, as a StateError
        try:
            db.executescript(SCHEMA)
            migrate(db)
        except sqlite3.Error as e:
            raise _error(e) from None

    def _run(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return run(self.db, sql, args)

    # -- classes ----------------------------------------------------------------------------
    def put_class(
        self,
        class_id: str,
        *,
        scenario_path: str,
        backend: str,
        memory: int | None,
        expires: float | None,
        tasks: list[dict[str, Any]],
    ) -> None:
        """Create or update a class; `expires` None keeps the one it had."""
        now = time.time()
        self._run(
            "INSERT INTO classes VALUES (?,?,?,?,?,?,'up',?,?) ON CONFLICT(id) DO UPDATE SET "
            "scenario_path=excluded.scenario_path, backend=excluded.backend, "
            "memory=excluded.memory, expires=COALESCE(excluded.expires, classes.expires), "
            "tasks=excluded.tasks, status='up', updated=excluded.updated",
            (class_id, scenario_path, backend, memory, expires, json.dumps(tasks), now, now),
        )

    def set_class_status(self, class_id: str, status: str) -> None:
        self._run(
            "UPDATE classes SET status=?, updated=? WHERE id=?", (status, time.time(), class_id)
        )

    def klass(self, class_id: str) -> ClassRecord | None:
        return get_class(self.db, class_id)

    def classes(self) -> list[ClassRecord]:
        return list_classes(self.db)

    # -- members ----------------------------------------------------------------------------
    def put_member(
        self,
        class_id: str,
        student: str,
        name: str,
        email: str,
        lab: str,
        position: int,
        ssh_key: str = "",
    ) -> None:
        """Add a student, or update the name, e-mail and key of one already in the class."""
        self._run(
            "INSERT INTO class_members (class, student, name, email, lab, position, status,"
            " updated, ssh_key) VALUES (?,?,?,?,?,?,'pending',?,?) ON CONFLICT(class, student)"
            " DO UPDATE SET name=excluded.name, email=excluded.email,"
            " position=excluded.position, ssh_key=excluded.ssh_key",
            (class_id, student, name, email, lab, position, time.time(), ssh_key),
        )

    def set_member_lab(self, class_id: str, student: str, lab: str) -> None:
        """The student's lab key, when their lab came from a pool."""
        self._run(
            "UPDATE class_members SET lab=? WHERE class=? AND student=?", (lab, class_id, student)
        )

    def set_member(
        self,
        class_id: str,
        student: str,
        status: str,
        error: str = "",
        baseline: dict[str, list[str]] | None = None,
    ) -> None:
        self._run(
            "UPDATE class_members SET status=?, error=?, updated=?,"
            " baseline=COALESCE(?, baseline) WHERE class=? AND student=?",
            (
                status,
                error,
                time.time(),
                None if baseline is None else json.dumps(baseline),
                class_id,
                student,
            ),
        )

    def remove_members(self, class_id: str, students: Sequence[str] | None = None) -> None:
        if students is None:
            self._run("DELETE FROM class_members WHERE class=?", (class_id,))
        for s in students or ():
            self._run("DELETE FROM class_members WHERE class=? AND student=?", (class_id, s))

    def members(self, class_id: str) -> list[Member]:
        return list_members(self.db, class_id)

    # -- class checks -----------------------------------------------------------------------
    def add_check(self, class_id: str, at: float, results: Sequence[StudentResult]) -> int:
        """Record one class check's per-student results; returns its id."""
        cur = self._run(
            "INSERT INTO class_checks (class, at, gradebook) VALUES (?,?,'{}')", (class_id, at)
        )
        check_id = int(cur.lastrowid or 0)
        for r in results:
            self._run(
                "INSERT INTO class_results VALUES (?,?,?,?,?,?,?,?)",
                (
                    check_id,
                    class_id,
                    r.student,
                    r.lab,
                    at,
                    None if r.report is None else r.report.to_json(),
                    r.error,
                    json.dumps(r.probes),
                ),
            )
        return check_id

    def set_gradebook(self, check_id: int, gradebook: dict[str, Any]) -> None:
        self._run(
            "UPDATE class_checks SET gradebook=? WHERE id=?", (json.dumps(gradebook), check_id)
        )

    def last_gradebook(self, class_id: str) -> dict[str, Any] | None:
        return last_gradebook(self.db, class_id)


def migrate(db: sqlite3.Connection) -> None:
    """Bring class tables written by an older guestlab up to SCHEMA, in place."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(class_members)")}
    if "ssh_key" not in columns:  # stores from before the SSH door
        db.execute("ALTER TABLE class_members ADD COLUMN ssh_key TEXT NOT NULL DEFAULT ''")


# -- reads, on any connection (the dashboard's is read-only) -------------------------------
def run(db: sqlite3.Connection, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
    try:
        return db.execute(sql, tuple(args))
    except sqlite3.Error as e:
        raise _error(e) from None


def _error(e: sqlite3.Error) -> StateError:
    if "locked" in str(e) or "busy" in str(e):
        return StateError(
            _("the state store is locked by another process ({error})").format(error=e),
            hint=_("wait for the other guestlab command to finish, then try again"),
        )
    return StateError(_("the state store cannot be used for classes ({error})").format(error=e))


def _class(row: sqlite3.Row) -> ClassRecord:
    data = dict(row)
    data["tasks"] = json.loads(data["tasks"])
    return ClassRecord(**data)


def get_class(db: sqlite3.Connection, class_id: str) -> ClassRecord | None:
    row = run(db, "SELECT * FROM classes WHERE id=?", (class_id,)).fetchone()
    return _class(row) if row else None


def list_classes(db: sqlite3.Connection) -> list[ClassRecord]:
    return [_class(r) for r in run(db, "SELECT * FROM classes ORDER BY id").fetchall()]


def list_members(db: sqlite3.Connection, class_id: str) -> list[Member]:
    rows = run(
        db, "SELECT * FROM class_members WHERE class=? ORDER BY position, student", (class_id,)
    ).fetchall()
    out = []
    for r in rows:
        data = dict(r)
        data["klass"] = data.pop("class")
        data["baseline"] = json.loads(data["baseline"])
        out.append(Member(**data))
    return out


def last_gradebook(db: sqlite3.Connection, class_id: str) -> dict[str, Any] | None:
    row = run(
        db,
        "SELECT gradebook FROM class_checks WHERE class=? AND gradebook != '{}'"
        " ORDER BY at DESC, id DESC LIMIT 1",
        (class_id,),
    ).fetchone()
    return json.loads(row[0]) if row else None


def lab_stats(db: sqlite3.Connection, labs: Sequence[str]) -> dict[str, LabStats]:
    """Attempts, the latest report and hints of each lab, in a few queries."""
    stats = {lab: LabStats() for lab in labs}
    if not labs:
        return stats
    marks = ",".join("?" * len(labs))
    for lab, count, last in run(
        db, f"SELECT lab, COUNT(*), MAX(at) FROM attempts WHERE lab IN ({marks}) GROUP BY lab", labs
    ):
        stats[lab].attempts, stats[lab].last_check = count, last
    for lab, report in run(
        db,
        f"SELECT lab, report FROM attempts WHERE id IN (SELECT MAX(id) FROM attempts"
        f" WHERE lab IN ({marks}) GROUP BY lab)",
        labs,
    ):
        stats[lab].last_report = Report.from_json(report)
    for lab, count in run(
        db,
        f"SELECT lab, COUNT(*) FROM class_results WHERE report IS NOT NULL AND lab IN ({marks})"
        " GROUP BY lab",
        labs,
    ):
        stats[lab].class_attempts = count
    for lab, task, count in run(
        db,
        f"SELECT lab, task, COUNT(*) FROM hints WHERE lab IN ({marks}) GROUP BY lab, task",
        labs,
    ):
        stats[lab].hints[task] = count
    return stats


def student_history(db: sqlite3.Connection, lab: str) -> list[Attempt]:
    """Every check of one lab, oldest first."""
    rows = run(db, "SELECT at, report FROM attempts WHERE lab=? ORDER BY id", (lab,)).fetchall()
    return [Attempt(r[0], Report.from_json(r[1])) for r in rows]
