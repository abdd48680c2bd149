"""Self-enrolment: one class link; a student types a name and gets a lab and a seat.

The instructor opens a class to enrolment (`guestlab class enrol ID`): a random secret
names it in the link, and a cap bounds how many students it takes. A name is checked as a
roster id is. A name already in the class is refused, never handed that student's seat:
typing a classmate's name must not open their lab. The lab comes from the scenario's
pool when it has one ready (a cold `up` otherwise), and the student's own seat token is
issued for it.
"""

from __future__ import annotations

import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator import lab as lifecycle
from orchestrator.classroom.roster import student_id_problem
from orchestrator.classroom.store import ClassStore
from orchestrator.credentials import Seats
from orchestrator.errors import UsageError
from orchestrator.messages import _
from orchestrator.pool import claim as pool
from orchestrator.pool.records import SLOT_PREFIX
from orchestrator.state import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS enrolment (
    class TEXT PRIMARY KEY,        -- the class (scenario id)
    secret TEXT NOT NULL UNIQUE,   -- the class link's last part
    cap INTEGER NOT NULL,          -- most students the class takes
    created REAL NOT NULL
);
"""
DEFAULT_CAP = 40


class EnrolRefused(UsageError):
    """A name or a class link that cannot enrol; the message is shown to the student."""


@dataclass(frozen=True)
class Opening:
    class_id: str
    secret: str
    cap: int


def open_class(store: Store, scenario: str, backend: str | None, cap: int) -> Opening:
    """Open a class to self-enrolment (made if new, from the scenario); a new secret each time."""
    lab = lifecycle.prepare(scenario, SLOT_PREFIX + "enrol", backend)
    cstore = ClassStore(store.db)
    klass = cstore.klass(lab.scenario.id)
    if klass is None:
        tasks = [{"id": t.id, "title": t.title, "points": t.points} for t in lab.scenario.tasks]
        cstore.put_class(
            lab.scenario.id,
            scenario_path=str(lab.path),
            backend=lab.backend.name,
            memory=None,
            expires=None,
            tasks=tasks,
        )
    opening = Opening(lab.scenario.id, secrets.token_urlsafe(18), cap)
    store.db.executescript(SCHEMA)
    store.db.execute(
        "INSERT INTO enrolment VALUES (?,?,?,?) ON CONFLICT(class) DO UPDATE"
        " SET secret=excluded.secret, cap=excluded.cap, created=excluded.created",
        (opening.class_id, opening.secret, cap, time.time()),
    )
    return opening


def close_class(store: Store, class_id: str) -> None:
    store.db.executescript(SCHEMA)
    store.db.execute("DELETE FROM enrolment WHERE class=?", (class_id,))


def opening_for(db: sqlite3.Connection, secret: str) -> Opening | None:
    """The class a link opens; the secret compared in constant time."""
    try:
        rows = db.execute("SELECT class, secret, cap FROM enrolment").fetchall()
    except sqlite3.OperationalError:  # no class was ever opened
        return None
    for class_id, known, cap in rows:
        if hmac.compare_digest(known.encode(), secret.encode()):
            return Opening(class_id, known, cap)
    return None


def join(db_path: Path, secret: str, student: str, name: str) -> str:
    """Enrol `student` in the class the secret opens; their seat token."""
    store = Store(db_path)
    try:
        opening = opening_for(store.db, secret)
        if opening is None:
            raise EnrolRefused(_("this class link is not open for enrolment"))
        bad = student_id_problem(student)
        if bad or student.lower().startswith(SLOT_PREFIX):
            raise EnrolRefused(bad or f"a name may not start with {SLOT_PREFIX!r}")
        cstore = ClassStore(store.db)
        klass = cstore.klass(opening.class_id)
        assert klass is not None
        members = cstore.members(opening.class_id)
        taken = {_same(m.student) for m in members}
        if _same(student) in taken:
            raise EnrolRefused(
                _("{student} is already in the class: pick another name").format(student=student)
            )
        if len(members) >= opening.cap:
            raise EnrolRefused(_("the class is full ({cap} students)").format(cap=opening.cap))
        lab = lifecycle.prepare(klass.scenario_path, student, klass.backend)
        cstore.put_member(opening.class_id, student, name, "", lab.ref.key, len(members))
        result, claimed = pool.up(lab, store, lifecycle.Silent(), memory=klass.memory)
        key = result.lab.ref.key
        cstore.set_member_lab(opening.class_id, student, key)
        cstore.set_member(opening.class_id, student, "up")
        if claimed:
            pool.refill_later(store, opening.class_id, klass.backend)
        return Seats(store.db).issue(key)
    finally:
        store.close()


def _same(student: str) -> str:
    """Ids that name the same lab (case, `.`, `_`, `-`) count as one."""
    return "".join(c if c.isalnum() else "-" for c in student.lower())
