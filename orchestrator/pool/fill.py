"""Filling, draining and collecting a pool of labs that no student has yet.

A pool lab is an ordinary lab of a student named by a random slot (`pool-` and 12 hex
digits): its resources carry that lab key and the store's labels, so `down` and `gc` find
them like any other. One filler at a time works on a pool (a file lock): a filler that
takes the lock knows that every lab still `filling` was left by one that died.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from orchestrator import backends
from orchestrator import lab as lifecycle
from orchestrator.backends.contract import LabRef
from orchestrator.errors import LabBusy
from orchestrator.lab.bring_up import PHASES, originals, run_recorded, steps
from orchestrator.messages import speaking
from orchestrator.pool.records import SLOT_PREFIX, PoolLab, PoolStore, Target
from orchestrator.pool.split import BEFORE_STUDENT, digest, require_poolable, split
from orchestrator.scenario.load import load_file
from orchestrator.state import Store, lab_lock

DEFAULT_PARALLEL = 2

ReporterFor = Callable[[str], lifecycle.Reporter]


@dataclass
class Filled:
    made: list[str]
    removed: list[str]
    busy: bool = False  # another filler holds the pool: it fills it


def new_slot() -> str:
    return SLOT_PREFIX + secrets.token_hex(6)


def target_for(
    scenario: str, backend: str | None, size: int, max_age: float | None, memory: int | None
) -> Target:
    """The pool of a scenario (an id or a file) on its backend; refused if not poolable."""
    lab = lifecycle.prepare(scenario, new_slot(), backend)
    require_poolable(load_file(lab.path))
    return Target(lab.scenario.id, lab.backend.name, size, max_age, memory, str(lab.path))


def pool_lock_name(scenario: str, backend: str) -> str:
    return f"pool-{scenario}--{backend}"


def fill(
    target: Target,
    store: Store,
    reporter_for: ReporterFor,
    parallel: int = DEFAULT_PARALLEL,
    *,
    record: bool = True,
) -> Filled:
    """Record the target (unless `record` is false: a refill keeps the pool's own, and
    stops if it is drained) and make labs until the pool holds `size`; old and stale labs
    are replaced."""
    pstore = PoolStore(store.db)
    if record:
        pstore.set_target(target)
    done = Filled([], [])
    try:
        with lab_lock(pool_lock_name(target.scenario, target.backend)):
            _fill_locked(target.scenario, target.backend, store, reporter_for, parallel, done)
    except LabBusy:
        done.busy = True
    return done


def _fill_locked(
    scenario: str,
    backend: str,
    store: Store,
    reporter_for: ReporterFor,
    parallel: int,
    done: Filled,
) -> None:
    pstore = PoolStore(store.db)
    first = True
    while (target := pstore.target(scenario, backend)) is not None:
        current = digest(Path(target.scenario_path))
        for lab in pstore.labs(scenario, backend):
            # under the pool's lock, a lab still filling was left by a filler that died
            stale = lab.state == "filling" or lab.digest != current or lab.memory != target.memory
            if stale or _expired(lab, target):
                remove(store, lab)
                done.removed.append(lab.key)
        missing = target.size - len(pstore.labs(scenario, backend))
        if missing <= 0:
            return
        if first:  # images once, before the workers race to build them
            lab = _prepare(target)
            for b, specs in lab.by_backend(lab.specs):
                for image in dict.fromkeys(s.image for s in specs):
                    b.ensure_image(image, lambda _line: None)
            first = False
        workers = max(1, min(parallel, missing))
        with ThreadPoolExecutor(max_workers=workers) as ex:
            futures = [
                ex.submit(speaking(make_one), target, current, store.path, reporter_for)
                for _ in range(missing)
            ]
            done.made += [key for f in futures if (key := f.result())]


def _expired(lab: PoolLab, target: Target) -> bool:
    return target.max_age is not None and lab.created < time.time() - target.max_age


def _prepare(target: Target, slot: str | None = None) -> lifecycle.Lab:
    from orchestrator.classroom.capacity import with_memory

    lab = lifecycle.prepare(target.scenario_path, slot or new_slot(), target.backend)
    return with_memory(lab, target.memory) if target.memory else lab


def make_one(target: Target, current: str, db_path: Path, reporter_for: ReporterFor) -> str:
    """Make one pool lab on a connection of its own; its key, or "" when the pool was
    drained or filled meanwhile. A failure removes the lab."""
    own = Store(db_path)
    try:
        now = PoolStore(own.db).target(target.scenario, target.backend)
        if now is None or len(PoolStore(own.db).labs(target.scenario, target.backend)) >= now.size:
            return ""
        lab = _prepare(target)
        key = lab.ref.key
        pstore = PoolStore(own.db)
        cut = split(lab)
        phases = PHASES if cut.whole else BEFORE_STUDENT if cut.early else PHASES[:3]
        saved = originals(lab) if cut.early else None
        record = PoolLab(
            key,
            target.scenario,
            target.backend,
            [b.name for b in lab.backends],
            current,
            target.memory,
            "filling",
            time.time(),
        )
        reporter = reporter_for(key)
        setup = lab.scenario.setup[: cut.first]
        todo = steps(lab, reporter, False, setup=setup, phases=phases, saved=saved)
        with lab_lock(key):  # held until ready: `gc` leaves a lab alone while it is made
            pstore.add(record)  # before any resource exists: gc can always find it
            try:
                run_recorded(key, own, reporter, todo)
            except BaseException:
                remove(own, record)
                raise
            if not pstore.set_ready(key):
                remove(own, record)  # drained while it was made: no one would claim it
                return ""
        return key
    finally:
        own.close()


def remove(store: Store, lab: PoolLab) -> None:
    """Destroy a pool lab's resources and forget it."""
    ref = LabRef(lab.scenario, lab.slot)
    for name in lab.backends:
        backends.get(name).destroy(ref)
    PoolStore(store.db).remove(lab.key)


def drain(store: Store, scenario: str, backend: str | None, wait: float = 30.0) -> list[str]:
    """Remove a pool's unclaimed labs and its target; claimed labs are students' and stay.

    A lab still `filling` is left to its filler, which cannot mark it ready once the target
    is gone and removes it. A ready lab whose filler still holds its lock (it was marked
    just before the drop) is waited for, up to `wait` seconds."""
    pstore = PoolStore(store.db)
    pstore.drop_target(scenario, backend)
    removed: list[str] = []
    deadline = time.monotonic() + wait
    while True:
        waiting = False
        for lab in pstore.labs(scenario, backend):
            try:
                with lab_lock(lab.key):
                    remove(store, lab)
            except LabBusy:
                waiting = waiting or lab.state == "ready"
                continue
            removed.append(lab.key)
        if not waiting or time.monotonic() > deadline:
            return removed
        time.sleep(0.2)


def collect(store: Store) -> list[str]:
    """For `gc`: labs that dead fillers left, and labs older than their pool's age limit."""
    pstore = PoolStore(store.db)
    out = []
    for lab in pstore.labs():
        target = pstore.target(lab.scenario, lab.backend)
        due = lab.state == "filling" or target is None or _expired(lab, target)
        if not due:
            continue
        try:
            with lab_lock(lab.key):  # a filler alive still holds it
                if not backends.get(lab.backend).availability().usable:
                    continue
                remove(store, lab)
        except LabBusy:
            continue
        why = "its pool is drained" if target is None else "left half-made or too old"
        out.append(f"pool lab {lab.key} ({lab.state}: {why})")
    return out
