"""SQLite store of labs, check attempts and hints, plus one lock file per lab.

Every write is its own committed transaction, so a crash or Ctrl-C loses at most the
step under way; what a lab's rows say is always a state `down` or `up` can continue from.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator import paths
from orchestrator.backends.contract import LabRef
from orchestrator.errors import LabBusy, StateError, UsageError
from orchestrator.messages import _

if TYPE_CHECKING:  # a lab opens without the reports: only attempts read or write them
    from orchestrator.report import Attempt, Report

SCHEMA_VERSION = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS labs (
    key TEXT PRIMARY KEY,
    scenario TEXT NOT NULL,
    student TEXT NOT NULL,
    backend TEXT NOT NULL,         -- the lab's backend
    backends TEXT NOT NULL,        -- JSON list: every backend holding its machines
    scenario_path TEXT NOT NULL,
    params TEXT NOT NULL,
    status TEXT NOT NULL,          -- provisioning | up | failed
    step TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    owner TEXT NOT NULL DEFAULT '', -- LabRef.owner: the key of a lab made for its student
    lang TEXT NOT NULL DEFAULT ''   -- the language chosen at `up`: later commands speak it
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,            -- step | solve | reset | down
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    at REAL NOT NULL,
    score INTEGER NOT NULL,
    max_score INTEGER NOT NULL,
    report TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hints (
    id INTEGER PRIMARY KEY,
    lab TEXT NOT NULL,
    task TEXT NOT NULL,
    idx INTEGER NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_lab ON attempts(lab, at);
CREATE INDEX IF NOT EXISTS hints_lab ON hints(lab, task);
"""


@dataclass(frozen=True)
class LabRecord:
    key: str
    scenario: str
    student: str
    backend: str
    backends: list[str]
    scenario_path: str
    params: dict[str, str]
    status: str
    step: str
    created: float
    updated: float
    owner: str = ""
    lang: str = ""

    @property
    def ref(self) -> LabRef:
        """The lab as its backends know it (a lab claimed from a pool keeps its slot)."""
        claimed = bool(self.owner) and self.owner != self.key
        return LabRef(self.scenario, self.student, self.key.partition("--")[2] if claimed else "")


class Store:
    """The state database; open one per command."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or paths.ensure(paths.home()) / "state.db"
        try:
            self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            self.db.row_factory = sqlite3.Row
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            # a store of this version is opened without a write: a command that only reads
            # it (`status`, `check` until it grades) syncs nothing to the disk
            if version != SCHEMA_VERSION:
                self.db.executescript(SCHEMA)
                self._migrate(version)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def _migrate(self, version: int) -> None:
        """Bring a store written by an older guestlab (at `version`) up to SCHEMA_VERSION,
        in place."""
        if version < 1:
            columns = {r["name"] for r in self.db.execute("PRAGMA table_info(labs)")}
            if "backends" not in columns:  # 0.1 stores kept one backend per lab
                self.db.execute("ALTER TABLE labs ADD COLUMN backends TEXT NOT NULL DEFAULT '[]'")
                self.db.execute("UPDATE labs SET backends = json_array(backend)")
        if version < 2:
            columns = {r["name"] for r in self.db.execute("PRAGMA table_info(labs)")}
            if "owner" not in columns:  # before pools, a lab's key was its owner's
                self.db.execute("ALTER TABLE labs ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            self.db.execute("UPDATE labs SET owner = key WHERE owner = ''")
            self.db.execute("CREATE INDEX IF NOT EXISTS labs_owner ON labs(owner)")
        if version < 3:
            columns = {r["name"] for r in self.db.execute("PRAGMA table_info(labs)")}
            if "lang" not in columns:  # before 3, every command chose its language afresh
                self.db.execute("ALTER TABLE labs ADD COLUMN lang TEXT NOT NULL DEFAULT ''")
        self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _error(self, e: sqlite3.Error) -> StateError:
        if "locked" in str(e) or "busy" in str(e):
            return StateError(
                _("the state store {path} is locked by another process ({error})").format(
                    path=self.path, error=e
                ),
                hint=_("wait for the other guestlab command to finish, then try again"),
            )
        return StateError(
            _("the state store {path} cannot be used ({error})").format(path=self.path, error=e),
            hint=_("move it aside and run `guestlab gc`: resources are found by their labels"),
        )

    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        try:
            return self.db.execute(sql, args)
        except sqlite3.Error as e:
            raise self._error(e) from None

    def close(self) -> None:
        self.db.close()

    # -- labs -----------------------------------------------------------------------------
    def put_lab(
        self,
        key: str,
        *,
        scenario: str,
        student: str,
        backends: list[str],
        scenario_path: str,
        params: dict[str, str],
        status: str,
        owner: str | None = None,
    ) -> None:
        """Record a lab; `owner` is LabRef.owner when it differs from `key` (a claimed slot)."""
        now = time.time()
        self._run(
            "INSERT INTO labs (key, scenario, student, backend, backends, scenario_path, params,"
            " status, created, updated, owner) VALUES (?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(key) DO UPDATE SET backend=excluded.backend, owner=excluded.owner,"
            " backends=excluded.backends, "
            "scenario_path=excluded.scenario_path, params=excluded.params, "
            "status=excluded.status, step='', updated=excluded.updated",
            (
                key,
                scenario,
                student,
                backends[0],
                json.dumps(backends),
                scenario_path,
                json.dumps(params),
                status,
                now,
                now,
                owner or key,
            ),
        )

    def remember_language(self, ref: LabRef, lang: str) -> None:
        """The language the student chose at `up`, spoken by the lab's later commands."""
        record = self.lab_of(ref)
        if record is not None:
            self._run("UPDATE labs SET lang=? WHERE key=?", (lang, record.key))

    def set_status(self, key: str, status: str, step: str = "") -> None:
        self._run(
            "UPDATE labs SET status=?, step=?, updated=? WHERE key=?",
            (status, step, time.time(), key),
        )

    def lab(self, key: str) -> LabRecord | None:
        row = self._run("SELECT * FROM labs WHERE key=?", (key,)).fetchone()
        return _record(row) if row else None

    def lab_of(self, ref: LabRef) -> LabRecord | None:
        """The lab of ref's student, made for them or claimed from a pool."""
        row = self._run("SELECT * FROM labs WHERE owner=? ORDER BY created DESC", (ref.owner,))
        found = row.fetchone()
        return _record(found) if found else self.lab(ref.key)

    def require_lab(self, ref: LabRef) -> LabRecord:
        """The lab of ref's student; UsageError, saying how to make it, when there is none."""
        found = self.lab_of(ref)
        if found is None:
            from orchestrator.backends.contract import default_student

            flag = f" --student {ref.student}" if ref.student != default_student() else ""
            raise UsageError(
                _("no lab {lab} for student {student}").format(
                    lab=ref.scenario, student=ref.student
                ),
                hint=_("bring it up first: guestlab up {lab}").format(lab=ref.scenario) + flag,
            )
        return found

    def labs(self, scenario: str | None = None) -> list[LabRecord]:
        if scenario:
            rows = self._run("SELECT * FROM labs WHERE scenario=? ORDER BY key", (scenario,))
        else:
            rows = self._run("SELECT * FROM labs ORDER BY key")
        return [_record(r) for r in rows.fetchall()]

    def delete_lab(self, key: str) -> None:
        """Forget a lab; its attempts and hints stay for the record."""
        self._run("DELETE FROM labs WHERE key=?", (key,))

    # -- history --------------------------------------------------------------------------
    def event(self, key: str, kind: str, **detail: Any) -> None:
        self._run(
            "INSERT INTO events (lab, at, kind, detail) VALUES (?,?,?,?)",
            (key, time.time(), kind, json.dumps(detail)),
        )

    def events(self, key: str) -> list[dict[str, Any]]:
        rows = self._run("SELECT * FROM events WHERE lab=? ORDER BY id", (key,)).fetchall()
        return [{"at": r["at"], "kind": r["kind"], **json.loads(r["detail"])} for r in rows]

    def add_attempt(self, key: str, report: Report) -> None:
        self._run(
            "INSERT INTO attempts (lab, at, score, max_score, report) VALUES (?,?,?,?,?)",
            (key, time.time(), report.score, report.max_score, report.to_json()),
        )

    def attempts(self, key: str) -> list[Attempt]:
        from orchestrator.report import Attempt, Report

        rows = self._run("SELECT * FROM attempts WHERE lab=? ORDER BY id", (key,)).fetchall()
        return [Attempt(r["at"], Report.from_json(r["report"])) for r in rows]

    def hints_taken(self, key: str, task: str) -> int:
        row = self._run("SELECT COUNT(*) FROM hints WHERE lab=? AND task=?", (key, task))
        return int(row.fetchone()[0])

    def add_hint(self, key: str, task: str, idx: int) -> None:
        self._run(
            "INSERT INTO hints (lab, task, idx, at) VALUES (?,?,?,?)",
            (key, task, idx, time.time()),
        )


def _record(row: sqlite3.Row) -> LabRecord:
    # only the columns this guestlab knows: a newer one may have added some to the store
    known = LabRecord.__dataclass_fields__
    data = {k: row[k] for k in row.keys() if k in known}  # noqa: SIM118 - a Row yields values
    data["params"] = json.loads(data["params"])
    data["backends"] = json.loads(data["backends"])
    return LabRecord(**data)


def _holder_name() -> str:
    """Who holds a lock, as another process's refusal shows it: the command and its pid."""
    words = list(itertools.takewhile(lambda a: a and not a.startswith("-"), sys.argv[1:3]))
    command = " ".join(["guestlab", *words])[:60]
    return f"{command} (pid {os.getpid()})"


def _read_holder(f: IO[str]) -> str:
    """The holder's name; read twice when empty, since a holder writes it just after it
    takes the lock and clears it just before it lets go."""
    for wait in (0.0, 0.05):
        time.sleep(wait)
        f.seek(0)
        if holder := f.read(200).strip():
            return holder
    return "another process"


@contextlib.contextmanager
def lab_lock(key: str) -> Iterator[None]:
    """Hold the lab's lock, or fail at once if another process holds it.

    flock is released by the kernel when a process dies, so `kill -9` never leaves a stale lock.
    """
    path = paths.locks_dir() / f"{key}.lock"
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(f)
            raise LabBusy(
                _("lab {lab} is busy: {holder} is working on it").format(lab=key, holder=holder),
                hint=_("wait for that command to finish, then try again"),
            ) from None
        f.seek(0)
        f.truncate()
        f.write(_holder_name())
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)
