"""The pools' tables, in the state store's database: what each pool should hold, and its
labs that no student has yet.

A pool lab is recorded (`filling`) before any of its resources exists, and is `ready`
once every step that needs no student is done. A claim moves it, in one transaction, from
here into the `labs` table as the student's lab: a claimed lab is never in a pool again.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    scenario TEXT NOT NULL,
    backend TEXT NOT NULL,
    size INTEGER NOT NULL,         -- labs kept ready
    max_age REAL,                  -- seconds a lab may wait unclaimed, NULL: forever
    memory INTEGER,                -- bytes per lab (--memory), NULL: the scenario's limits
    scenario_path TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (scenario, backend)
);
CREATE TABLE IF NOT EXISTS pool_labs (
    key TEXT PRIMARY KEY,          -- the lab key its resources carry (LabRef with a slot)
    scenario TEXT NOT NULL,
    backend TEXT NOT NULL,
    backends TEXT NOT NULL,        -- every backend holding its machines, comma-separated
    digest TEXT NOT NULL,          -- the scenario file's content when the lab was made
    memory INTEGER,
    state TEXT NOT NULL,           -- filling | ready
    created REAL NOT NULL
);
"""

#: the prefix of a pool lab's slot; a student id may not start with it
SLOT_PREFIX = "pool-"


@dataclass(frozen=True)
class Target:
    scenario: str
    backend: str
    size: int
    max_age: float | None
    memory: int | None
    scenario_path: str


@dataclass(frozen=True)
class PoolLab:
    key: str
    scenario: str
    backend: str
    backends: list[str]
    digest: str
    memory: int | None
    state: str
    created: float

    @property
    def slot(self) -> str:
        return self.key.partition("--")[2]


class PoolStore:
    """The pool tables on a connection to the state store."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        db.executescript(SCHEMA)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """One write transaction, taken at once so two claims never read the same row."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- targets --------------------------------------------------------------------------
    def set_target(self, t: Target) -> None:
        self.db.execute(
            "INSERT INTO pools VALUES (?,?,?,?,?,?,?) ON CONFLICT(scenario, backend) DO UPDATE"
            " SET size=excluded.size, max_age=excluded.max_age, memory=excluded.memory,"
            " scenario_path=excluded.scenario_path, updated=excluded.updated",
            (t.scenario, t.backend, t.size, t.max_age, t.memory, t.scenario_path, time.time()),
        )

    def target(self, scenario: str, backend: str) -> Target | None:
        row = self.db.execute(
            "SELECT scenario, backend, size, max_age, memory, scenario_path FROM pools"
            " WHERE scenario=? AND backend=?",
            (scenario, backend),
        ).fetchone()
        return Target(*row) if row else None

    def targets(self, scenario: str | None = None) -> list[Target]:
        rows = self.db.execute(
            "SELECT scenario, backend, size, max_age, memory, scenario_path FROM pools"
            " WHERE ? IS NULL OR scenario=? ORDER BY scenario, backend",
            (scenario, scenario),
        ).fetchall()
        return [Target(*r) for r in rows]

    def drop_target(self, scenario: str, backend: str | None) -> None:
        self.db.execute(
            "DELETE FROM pools WHERE scenario=? AND (? IS NULL OR backend=?)",
            (scenario, backend, backend),
        )

    # -- labs -----------------------------------------------------------------------------
    def add(self, lab: PoolLab) -> None:
        self.db.execute(
            "INSERT INTO pool_labs VALUES (?,?,?,?,?,?,?,?)",
            (
                lab.key,
                lab.scenario,
                lab.backend,
                ",".join(lab.backends),
                lab.digest,
                lab.memory,
                lab.state,
                lab.created,
            ),
        )

    def set_ready(self, key: str) -> bool:
        """Mark a lab ready if its pool still has a target; whether it did. One statement:
        a drain comes wholly before it (the lab stays `filling`) or after (and sees it)."""
        cur = self.db.execute(
            "UPDATE pool_labs SET state='ready' WHERE key=? AND EXISTS (SELECT 1 FROM pools p"
            " WHERE p.scenario=pool_labs.scenario AND p.backend=pool_labs.backend)",
            (key,),
        )
        return cur.rowcount == 1

    def remove(self, key: str) -> None:
        self.db.execute("DELETE FROM pool_labs WHERE key=?", (key,))

    def labs(self, scenario: str | None = None, backend: str | None = None) -> list[PoolLab]:
        rows = self.db.execute(
            "SELECT * FROM pool_labs WHERE (? IS NULL OR scenario=?) AND (? IS NULL OR backend=?)"
            " ORDER BY created",
            (scenario, scenario, backend, backend),
        ).fetchall()
        return [_pool_lab(tuple(r)) for r in rows]

    def take(
        self, scenario: str, backend: str, digest: str, memory: int | None, newer_than: float
    ) -> PoolLab | None:
        """Remove and return the oldest ready lab that fits; call inside `transaction`."""
        row = self.db.execute(
            "SELECT * FROM pool_labs WHERE scenario=? AND backend=? AND state='ready'"
            " AND digest=? AND memory IS ? AND created>? ORDER BY created LIMIT 1",
            (scenario, backend, digest, memory, newer_than),
        ).fetchone()
        if row is None:
            return None
        found = _pool_lab(tuple(row))
        self.remove(found.key)
        return found

    def claimed(self, scenario: str, backend: str) -> int:
        """Students' labs that came from this pool and are still recorded."""
        row = self.db.execute(
            "SELECT COUNT(*) FROM labs WHERE scenario=? AND backend=? AND key LIKE ?"
            " AND owner != key",
            (scenario, backend, f"{scenario}--{SLOT_PREFIX}%"),
        ).fetchone()
        return int(row[0])


def _pool_lab(row: tuple[object, ...]) -> PoolLab:
    key, scenario, backend, names, digest, memory, state, created = row
    return PoolLab(
        str(key),
        str(scenario),
        str(backend),
        str(names).split(","),
        str(digest),
        None if memory is None else int(str(memory)),
        str(state),
        float(str(created)),
    )
