"""A class's lifecycle: every student's lab up, checked, reset and down, in parallel.

Whether a class fits its host is `capacity`; the worker pool and each student's `Outcome`
are `workers`; `class check` and its gradebook are `class_check`. Their public names are
importable from here too, where the CLI and the tests have always found them.

Each student's lab goes through the ordinary single-lab lifecycle (`orchestrator.lab`) in
a worker thread with its own `Store` connection (SQLite connections stay in the thread
that made them). One student's failure is recorded as that student's sentence and never
stops the others. Nothing here prints: progress goes to a `ClassProgress`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import backends, teardown
from orchestrator import lab as lifecycle
from orchestrator.backends.contract import Backend, LabRef
from orchestrator.classroom import copies, placement
from orchestrator.classroom.capacity import (
    INOTIFY_PER_MACHINE,
    MIN_MACHINE_MEMORY,
    charges_root_inotify,
    fmt_bytes,
    host_memory,
    inotify_limit,
    lab_memory,
    meminfo_available,
    parse_duration,
    parse_memory,
    require_fit,
    require_inotify,
    with_memory,
)
from orchestrator.classroom.class_check import check, require_class
from orchestrator.classroom.roster import Student, student_id_problem
from orchestrator.classroom.store import ClassStore, Member
from orchestrator.classroom.workers import (
    ClassError,
    ClassProgress,
    Outcome,
    SilentProgress,
    failed,
    in_parallel,
)
from orchestrator.errors import UsageError
from orchestrator.lab.placement import place, require_cluster
from orchestrator.messages import _
from orchestrator.pool import claim as pool
from orchestrator.state import Store

DEFAULT_PARALLEL = 4

#: the names callers import from here (sizing, workers and the class check live apart)
__all__ = [
    "DEFAULT_PARALLEL",
    "INOTIFY_PER_MACHINE",
    "MIN_MACHINE_MEMORY",
    "ClassError",
    "ClassProgress",
    "Outcome",
    "Plan",
    "SilentProgress",
    "check",
    "down",
    "enroll",
    "expire",
    "fmt_bytes",
    "host_memory",
    "inotify_limit",
    "lab_memory",
    "member",
    "meminfo_available",
    "parse_duration",
    "parse_memory",
    "plan",
    "preflight",
    "require_class",
    "require_fit",
    "require_inotify",
    "reset",
    "up",
    "up_one",
    "with_memory",
]


# -- plan ------------------------------------------------------------------------------------
@dataclass
class Plan:
    """A class ready to provision: every student's lab rendered, nothing created yet."""

    class_id: str
    path: Path
    backend: Backend
    memory: int | None  # --memory, per lab
    labs: dict[str, lifecycle.Lab]  # student -> lab
    roster: list[Student]
    use_pool: bool = True  # take ready labs from the scenario's pool first

    @property
    def per_lab(self) -> int:
        return max((lab_memory(lab) for lab in self.labs.values()), default=0)

    def tasks(self) -> list[dict[str, Any]]:
        sc = next(iter(self.labs.values())).scenario
        return [{"id": t.id, "title": t.title, "points": t.points} for t in sc.tasks]


def plan(scenario: str, roster: Sequence[Student], backend: str | None, memory: int | None) -> Plan:
    """Render the scenario for every student (each with their own parameters)."""
    labs: dict[str, lifecycle.Lab] = {}
    for s in roster:
        lab = lifecycle.prepare(scenario, s.id, backend)
        labs[s.id] = with_memory(lab, memory) if memory else lab
    first = labs[roster[0].id]
    return Plan(first.scenario.id, first.path, first.backend, memory, labs, list(roster))


# -- up --------------------------------------------------------------------------------------
def preflight(p: Plan, store: Store, *, build_images: bool = True) -> None:
    """Everything that can refuse the class before a resource exists: engine, memory, inotify.

    Also makes the scenario's images ready once, rather than each worker racing to build it.
    """
    used = {b.name: b for lab in p.labs.values() for b in lab.backends}.values()
    for backend in used:
        backends.require_available(backend)
    if any(s.lxd_target for s in p.roster):
        require_cluster(list(used))
    pending = [s for s in p.roster if _needs_up(store, p.labs[s.id])]
    if p.use_pool:  # a pool's ready labs already hold their memory: those students add none
        pending = pending[_ready_in_pool(store, p) :]
    available, where = host_memory(p.backend)
    where = placement.fits_by_member(p.backend, where, p.per_lab)
    require_fit(p.per_lab, len(pending), available, where)
    if charges_root_inotify(p.backend.name):
        booting = sum(
            1
            for s in pending
            for spec in p.labs[s.id].specs
            if spec.init == "systemd" and p.labs[s.id].backend_for(spec.name) is p.backend
        )
        require_inotify(booting, *inotify_limit())
    first = p.labs[p.roster[0].id]
    for backend, specs in first.by_backend(first.specs):
        for image in dict.fromkeys(s.image for s in specs):
            backend.ensure_image(image, lambda _line: None, build=build_images)


def _ready_in_pool(store: Store, p: Plan) -> int:
    from orchestrator.pool.records import PoolStore

    labs = PoolStore(store.db).labs(p.class_id, p.backend.name)
    return sum(1 for lab in labs if lab.state == "ready" and lab.memory == p.memory)


def _needs_up(store: Store, lab: lifecycle.Lab) -> bool:
    record = store.lab_of(lab.ref)
    return record is None or record.status != "up"


def enroll(p: Plan, store: Store, expires: float | None) -> dict[str, Member]:
    """Record the class and its roster; students of an earlier roster whose labs are gone
    leave it, live ones stay. Returns the members by student id."""
    cstore = ClassStore(store.db)
    cstore.put_class(
        p.class_id,
        scenario_path=str(p.path),
        backend=p.backend.name,
        memory=p.memory,
        expires=None if expires is None else time.time() + expires,
        tasks=p.tasks(),
    )
    listed = {s.id for s in p.roster}
    cstore.remove_members(
        p.class_id,
        [
            m.student
            for m in cstore.members(p.class_id)
            if m.student not in listed and (m.status != "up" or store.lab(m.lab) is None)
        ],
    )
    for n, s in enumerate(p.roster):
        cstore.put_member(
            p.class_id, s.id, s.name, s.email, p.labs[s.id].ref.key, n, ssh_key=s.ssh_key
        )
    return {m.student: m for m in cstore.members(p.class_id)}


def up_one(
    p: Plan, db_path: Path, s: Student, m: Member, reporter: lifecycle.Reporter, build: bool
) -> Outcome:
    """Bring one student's lab up on a connection of its own; its baseline taken once."""
    started = time.monotonic()
    own = Store(db_path)
    try:
        lab = p.labs[s.id]
        try:
            moved = place(lab.backends, lab.ref, s.lxd_target or None)
            placement.forget_lost(lab, own)
            result, claimed = pool.up(
                lab,
                own,
                reporter,
                use_pool=p.use_pool and not s.lxd_target,  # a pool lab is where it was made
                memory=p.memory,
                build_images=build,
            )
            lab = result.lab
            if claimed:  # the student's lab is the pool lab's key from now on
                ClassStore(own.db).set_member_lab(p.class_id, s.id, lab.ref.key)
            baseline = None
            if not result.already_up or not m.baseline:
                baseline = copies.collect(lab)
        except Exception as e:
            ClassStore(own.db).set_member(p.class_id, s.id, "failed", str(e))
            return failed(s.id, e, started)
        ClassStore(own.db).set_member(p.class_id, s.id, "up", baseline=baseline)
        detail = _("already up") if result.already_up else _("up")
        if moved and not result.already_up:
            detail = f"{detail} ({moved})"
        return Outcome(s.id, True, detail, time.monotonic() - started)
    finally:
        own.close()


def up(
    p: Plan,
    store: Store,
    *,
    parallel: int = DEFAULT_PARALLEL,
    expires: float | None = None,
    progress: ClassProgress | None = None,
    build_images: bool = True,
    checked: bool = False,
) -> list[Outcome]:
    """Bring every student's lab up; the class is refused whole if it cannot fit.

    `checked`: the caller already ran `preflight` (to say so before drawing progress bars).
    """
    shown = progress or SilentProgress()
    if not checked:
        preflight(p, store, build_images=build_images)
    members = enroll(p, store, expires)

    def one(s: Student) -> Outcome:
        return up_one(p, store.path, s, members[s.id], shown.reporter(s.id), build_images)

    outcomes = []
    for out in in_parallel(parallel, p.roster, one):
        shown.finished(out.student, out.ok, out.detail)
        outcomes.append(out)
    order = {s.id: n for n, s in enumerate(p.roster)}
    return sorted(outcomes, key=lambda o: order[o.student])


# -- reset, down, expiry ---------------------------------------------------------------------
def member(cstore: ClassStore, class_id: str, student: str) -> Member:
    found = [m for m in cstore.members(class_id) if m.student == student]
    if not found:
        bad = student_id_problem(student)
        raise UsageError(
            bad or f"no student {student} in class {class_id}",
            hint=_("the roster: guestlab class status {class_id}").format(class_id=class_id),
        )
    return found[0]


def reset(store: Store, class_id: str, student: str, reporter: lifecycle.Reporter) -> None:
    """Put one student's lab back into its starting state (with the class's memory limits)."""
    cstore = ClassStore(store.db)
    klass = require_class(cstore, class_id)
    member(cstore, class_id, student)
    lab, record = lifecycle.open_lab(store, class_id, student)
    if klass.memory:
        lab = with_memory(lab, klass.memory)  # a machine recreated from its commit keeps it
    lifecycle.reset(lab, record, store, reporter)


def down(
    store: Store,
    class_id: str,
    *,
    parallel: int = DEFAULT_PARALLEL,
    progress: ClassProgress | None = None,
    status: str = "down",
) -> list[Outcome]:
    """Remove every student's lab; safe to repeat. The roster and grades stay recorded."""
    progress = progress or SilentProgress()
    cstore = ClassStore(store.db)
    klass = cstore.klass(class_id)
    if klass is None:
        return []
    members = cstore.members(class_id)

    def one(m: Member) -> Outcome:
        started = time.monotonic()
        own = Store(store.path)
        try:
            record = own.lab(m.lab)
            names = list(record.backends) if record else [klass.backend]
            removed = teardown.down(LabRef(class_id, m.student), names, own)
            machines = sum(len(f.machines) for f in removed.values())
            ClassStore(own.db).set_member(class_id, m.student, status)
            detail = f"{machines} machine(s) removed" if machines else "nothing was left"
            return Outcome(m.student, True, detail, time.monotonic() - started)
        except Exception as e:
            return failed(m.student, e, started)
        finally:
            own.close()

    outcomes = []
    for out in in_parallel(parallel, members, one):
        progress.finished(out.student, out.ok, out.detail)
        outcomes.append(out)
    if all(o.ok for o in outcomes):
        cstore.set_class_status(class_id, status)
    order = {m.student: n for n, m in enumerate(members)}
    return sorted(outcomes, key=lambda o: order[o.student])


def expire(store: Store) -> list[str]:
    """Remove the labs of every class past its `--expires` time; the lab keys removed.

    Meant for `guestlab gc`: a backend that cannot be reached leaves its labs for the next
    run instead of failing the collection.
    """
    cstore = ClassStore(store.db)
    now = time.time()
    removed: list[str] = []
    for klass in cstore.classes():
        if klass.status != "up" or klass.expires is None or klass.expires > now:
            continue
        keys = {m.student: m.lab for m in cstore.members(klass.id)}
        for out in down(store, klass.id, status="expired"):
            if out.ok:
                removed.append(keys[out.student])
    return removed
