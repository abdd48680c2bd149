"""A class's lifecycle: every student's lab up, checked, reset and down, in parallel.

Each student's lab goes through the ordinary single-lab lifecycle (`orchestrator.lab`) in
a worker thread with its own `Store` connection (SQLite connections stay in the thread
that made them). One student's failure is recorded as that student's sentence and never
stops the others. Nothing here prints: progress goes to a `ClassProgress`.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from orchestrator import backends, teardown
from orchestrator import lab as lifecycle
from orchestrator.backends.base import Backend, LabRef
from orchestrator.classroom import copies
from orchestrator.classroom import gradebook as gb
from orchestrator.classroom.roster import Student, student_id_problem
from orchestrator.classroom.store import ClassRecord, ClassStore, Member, lab_stats
from orchestrator.errors import GuestlabError, ProvisioningError, UsageError
from orchestrator.scenario.load import load_file
from orchestrator.state import Store

DEFAULT_PARALLEL = 4
MIN_MACHINE_MEMORY = 64 * 1024**2
#: inotify instances a booted systemd machine holds (systemd, journald, logind, dbus: 7-8 seen)
INOTIFY_PER_MACHINE = 8
#: engines whose containers count against root's own kernel quotas (no user namespace)
ROOT_ENGINES = ("docker", "nspawn")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
T = TypeVar("T")


class ClassError(GuestlabError):
    """A class-wide command could not do its work for some students (see its outcomes)."""

    exit_code = ProvisioningError.exit_code


class ClassProgress(Protocol):
    """Where a class-wide command says how each student's lab is doing."""

    def reporter(self, student: str) -> lifecycle.Reporter: ...

    def finished(self, student: str, ok: bool, detail: str) -> None: ...


class SilentProgress:
    def reporter(self, student: str) -> lifecycle.Reporter:
        return lifecycle.Silent()

    def finished(self, student: str, ok: bool, detail: str) -> None:
        pass


@dataclass
class Outcome:
    """What happened to one student's lab."""

    student: str
    ok: bool
    detail: str = ""  # "up", "already up", or the error sentence
    seconds: float = 0.0
    hint: str | None = None
    error: BaseException | None = field(default=None, repr=False)


def parse_duration(text: str) -> float:
    """Seconds in `90m`, `3h`, `1.5d`, `45s`."""
    m = DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(
            f"--expires {text!r} is not a duration", hint="a number and a unit: 45m, 3h, 2d"
        )
    return float(m.group(1)) * SECONDS[m.group(2)]


def parse_memory(text: str) -> int:
    try:
        value = lifecycle.parse_size(text.strip())
    except (ValueError, KeyError, IndexError):
        value = 0
    if value <= 0:
        raise UsageError(
            f"--memory {text!r} is not a size", hint="bytes, or a number with K, M or G: 768M"
        )
    return value


def fmt_bytes(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


# -- memory ----------------------------------------------------------------------------------
def with_memory(lab: lifecycle.Lab, per_lab: int) -> lifecycle.Lab:
    """The lab with `per_lab` bytes shared among its machines, in proportion to their limits."""
    specs = lab.specs
    base = sum(s.memory for s in specs)
    sizes = {s.name: per_lab * s.memory // base // 1024**2 * 1024**2 for s in specs}
    small = [n for n, size in sizes.items() if size < MIN_MACHINE_MEMORY]
    if small:
        raise UsageError(
            f"--memory {fmt_bytes(per_lab)} leaves machine {small[0]} of {lab.scenario.id}"
            f" {fmt_bytes(sizes[small[0]])}; each machine needs at least"
            f" {fmt_bytes(MIN_MACHINE_MEMORY)}",
            hint=f"at least --memory {len(specs) * MIN_MACHINE_MEMORY // 1024**2}M",
        )
    machines = [
        m.model_copy(
            update={
                "resources": m.resources.model_copy(
                    update={"memory": f"{sizes[m.name] // 1024**2}M"}
                )
            }
        )
        for m in lab.scenario.machines
    ]
    return dataclasses.replace(lab, scenario=lab.scenario.model_copy(update={"machines": machines}))


def lab_memory(lab: lifecycle.Lab) -> int:
    """The memory limit of a whole lab: the sum of its machines' limits."""
    return sum(s.memory for s in lab.specs)


def host_memory(backend: Backend) -> tuple[int, str]:
    """Bytes of memory available for new labs on the backend's host, and which host that is."""
    endpoint = os.environ.get("GUESTLAB_LXD_ENDPOINT")
    if backend.name == "lxd" and endpoint:
        from orchestrator.backends.lxd import LxdBackend  # lazy: only a class on LXD needs it

        # a remote LXD (or a cluster member): its own account of its memory
        try:
            if isinstance(backend, LxdBackend):
                return backend.available_memory(), f"the LXD server at {endpoint}"
        except (GuestlabError, KeyError, ValueError, TypeError):
            pass  # an older server without /resources: fall back to this host's
    return meminfo_available(), "this host"


def meminfo_available(path: str = "/proc/meminfo") -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise UsageError("cannot tell how much memory this host has (no MemAvailable in /proc)")


def require_fit(per_lab: int, count: int, available: int, where: str) -> None:
    """Refuse a class whose labs' memory limits add up to more than the host has free."""
    need = per_lab * count
    if need > available:
        fits = available // per_lab if per_lab else 0
        raise UsageError(
            f"the class does not fit: {count} lab(s) x {fmt_bytes(per_lab)} ="
            f" {fmt_bytes(need)} of memory, and {where} has {fmt_bytes(available)} available;"
            " nothing was created",
            hint=f"{fits} lab(s) of this size fit: a smaller roster, a smaller --memory,"
            " or a remote LXD (GUESTLAB_LXD_ENDPOINT) with more memory",
        )


def inotify_limit() -> tuple[int, int]:
    """(fs.inotify.max_user_instances, instances root holds now)."""
    try:
        limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return 0, 0  # not Linux as we know it: no check
    used = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != 0:
                continue
            used += sum(
                1 for fd in (proc / "fd").iterdir() if os.readlink(fd) == "anon_inode:inotify"
            )
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return limit, used


def require_inotify(machines: int, limit: int, used: int) -> None:
    """Refuse a class whose systemd machines would run out of inotify instances.

    Every container of an engine without user namespaces (Docker, nspawn) shares root's
    quota, and systemd without one exits at boot with no word in its log: on a host left at
    the kernel's default of 128 that is about 16 machines, long before memory runs out.
    """
    need = machines * INOTIFY_PER_MACHINE
    if limit and need > limit - used:
        fits = max(0, (limit - used) // INOTIFY_PER_MACHINE)
        raise UsageError(
            f"the class does not fit: {machines} new machine(s) running systemd need about"
            f" {need} inotify instances ({INOTIFY_PER_MACHINE} each), and this host allows"
            f" {limit} per user (fs.inotify.max_user_instances) with {used} in use;"
            " nothing was created",
            hint=f"room for {fits} machine(s) now; raise the limit as root: `sysctl -w"
            " fs.inotify.max_user_instances=8192` (and in /etc/sysctl.d/ to keep it)",
        )


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


def _pool(parallel: int, items: Sequence[T], fn: Callable[[T], Outcome]) -> Iterator[Outcome]:
    """fn over items in `parallel` threads, yielding outcomes as they finish."""
    with ThreadPoolExecutor(max_workers=max(1, min(parallel, len(items) or 1))) as pool:
        futures: list[Future[Outcome]] = [pool.submit(fn, item) for item in items]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        except BaseException:
            for fut in futures:  # Ctrl-C: start no more labs; those under way finish
                fut.cancel()
            raise


def _failed(student: str, e: BaseException, started: float) -> Outcome:
    if isinstance(e, GuestlabError):
        detail, hint = str(e), e.hint
    else:  # a bug: still this one student's failure, not the class's
        detail, hint = f"internal error: {type(e).__name__}: {e}", None
    return Outcome(student, False, detail, time.monotonic() - started, hint, e)


# -- up --------------------------------------------------------------------------------------
def preflight(p: Plan, store: Store, *, build_images: bool = True) -> None:
    """Everything that can refuse the class before a resource exists: engine, memory, inotify.

    Also makes the scenario's images ready once, rather than each worker racing to build it.
    """
    for backend in {b.name: b for lab in p.labs.values() for b in lab.backends}.values():
        backends.require_available(backend)
    pending = [s for s in p.roster if _needs_up(store, p.labs[s.id])]
    available, where = host_memory(p.backend)
    require_fit(p.per_lab, len(pending), available, where)
    if p.backend.name in ROOT_ENGINES:
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


def _needs_up(store: Store, lab: lifecycle.Lab) -> bool:
    record = store.lab(lab.ref.key)
    return record is None or record.status != "up"


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
    progress = progress or SilentProgress()
    cstore = ClassStore(store.db)
    if not checked:
        preflight(p, store, build_images=build_images)

    cstore.put_class(
        p.class_id,
        scenario_path=str(p.path),
        backend=p.backend.name,
        memory=p.memory,
        expires=None if expires is None else time.time() + expires,
        tasks=p.tasks(),
    )
    listed = {s.id for s in p.roster}
    # students of an earlier roster whose labs are gone leave the class; live ones stay
    cstore.remove_members(
        p.class_id,
        [
            m.student
            for m in cstore.members(p.class_id)
            if m.student not in listed and (m.status != "up" or store.lab(m.lab) is None)
        ],
    )
    for n, s in enumerate(p.roster):
        cstore.put_member(p.class_id, s.id, s.name, s.email, p.labs[s.id].ref.key, n)
    members = {m.student: m for m in cstore.members(p.class_id)}

    def one(s: Student) -> Outcome:
        started = time.monotonic()
        own = Store(store.path)
        try:
            lab = p.labs[s.id]
            try:
                result = lifecycle.up(lab, own, progress.reporter(s.id), build_images=build_images)
                baseline = None
                if not result.already_up or not members[s.id].baseline:
                    baseline = copies.collect(lab)
            except Exception as e:
                ClassStore(own.db).set_member(p.class_id, s.id, "failed", str(e))
                return _failed(s.id, e, started)
            ClassStore(own.db).set_member(p.class_id, s.id, "up", baseline=baseline)
            detail = "already up" if result.already_up else "up"
            return Outcome(s.id, True, detail, time.monotonic() - started)
        finally:
            own.close()

    outcomes = []
    for out in _pool(parallel, p.roster, one):
        progress.finished(out.student, out.ok, out.detail)
        outcomes.append(out)
    order = {s.id: n for n, s in enumerate(p.roster)}
    return sorted(outcomes, key=lambda o: order[o.student])


# -- check -----------------------------------------------------------------------------------
def require_class(cstore: ClassStore, class_id: str) -> ClassRecord:
    klass = cstore.klass(class_id)
    if klass is None:
        known = ", ".join(c.id for c in cstore.classes()) or "none"
        raise UsageError(
            f"no class {class_id} (classes: {known})",
            hint=f"bring one up: guestlab class up {class_id} --roster class.csv",
        )
    return klass


def check(
    store: Store,
    class_id: str,
    *,
    parallel: int = 8,
    progress: ClassProgress | None = None,
) -> dict[str, Any]:
    """Check every student's lab concurrently; record and return the gradebook."""
    progress = progress or SilentProgress()
    cstore = ClassStore(store.db)
    klass = require_class(cstore, class_id)
    members = cstore.members(class_id)
    results: dict[str, dict[str, Any]] = {}
    params: dict[str, dict[str, str]] = {}
    # the scenario's own file says which parameters are fingerprints
    fingerprints = copies.fingerprint_params(load_file(Path(klass.scenario_path)).parameters)

    def one(m: Member) -> Outcome:
        started = time.monotonic()
        own = Store(store.path)
        try:
            lab, record = lifecycle.open_lab(own, class_id, m.student)
            report = lifecycle.check(lab, record, own)
            try:  # bounded reads: a hostile lab costs its own copy entry, not its grade
                found = copies.gather(lab)
            except Exception as e:
                found = copies.Collected(
                    problems=[f"copy detection failed: {_failed(m.student, e, started).detail}"]
                )
            results[m.student] = {
                "report": report,
                "probes": found.values,
                "copy_problems": found.problems,
            }
            params[m.student] = dict(record.params)
            detail = f"{report['score']}/{report['max_score']}"
            return Outcome(m.student, True, detail, time.monotonic() - started)
        except Exception as e:
            out = _failed(m.student, e, started)
            results[m.student] = {"report": None, "error": out.detail}
            return out
        finally:
            own.close()

    at = time.time()
    outcomes = []
    for out in _pool(parallel, members, one):
        progress.finished(out.student, out.ok, out.detail)
        outcomes.append(out)

    observations = [
        copies.Observation(
            m.student,
            {k: v for k, v in params.get(m.student, {}).items() if k in fingerprints},
            results[m.student].get("probes", {}),
            m.baseline,
        )
        for m in members
        if results[m.student]["report"] is not None
    ]
    flags = copies.shared(observations)
    check_id = cstore.add_check(
        class_id,
        at,
        [{"student": m.student, "lab": m.lab, **results[m.student]} for m in members],
    )
    stats = lab_stats(store.db, [m.lab for m in members])
    rows = [
        gb.row(
            m,
            klass.tasks,
            results[m.student]["report"],
            stats[m.lab],
            [
                *flags.get(m.student, []),
                *copies.problem_flags(results[m.student].get("copy_problems", [])),
            ],
            results[m.student].get("error", ""),
        )
        for m in members
    ]
    book = gb.gradebook(class_id, klass.tasks, rows, at)
    cstore.set_gradebook(check_id, book)
    return book


# -- reset, down, expiry ---------------------------------------------------------------------
def member(cstore: ClassStore, class_id: str, student: str) -> Member:
    found = [m for m in cstore.members(class_id) if m.student == student]
    if not found:
        bad = student_id_problem(student)
        raise UsageError(
            bad or f"no student {student} in class {class_id}",
            hint=f"the roster: guestlab class status {class_id}",
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
            return _failed(m.student, e, started)
        finally:
            own.close()

    outcomes = []
    for out in _pool(parallel, members, one):
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
