"""Pools without an engine: the slot's key, the claim's transaction, which steps wait."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator import lab as lifecycle
from orchestrator.backends.contract import Availability, ExecResult, LabRef, MachineSpec
from orchestrator.errors import UsageError
from orchestrator.lab import verbs
from orchestrator.pool.records import PoolLab, PoolStore
from orchestrator.pool.split import AFTER_STUDENT, first_student_step, require_poolable, split
from orchestrator.scenario.load import load_file
from orchestrator.state import Store

ROOT = Path(__file__).resolve().parents[2]


def test_a_claimed_lab_keeps_its_slots_key_and_is_found_by_its_student(tmp_path: Path) -> None:
    pooled = LabRef("machine-id-clone", "pool-0123456789ab")
    claimed = LabRef("machine-id-clone", "Alice", slot="pool-0123456789ab")
    assert claimed.key == pooled.key == "machine-id-clone--pool-0123456789ab"
    assert claimed.owner == "machine-id-clone--alice" == LabRef("machine-id-clone", "alice").key
    store = Store(tmp_path / "state.db")
    store.put_lab(
        claimed.key,
        scenario="machine-id-clone",
        student="Alice",
        backends=["docker"],
        scenario_path="x.yaml",
        params={},
        status="up",
        owner=claimed.owner,
    )
    record = store.lab_of(LabRef("machine-id-clone", "alice"))
    assert record is not None and record.ref == claimed
    assert store.lab_of(LabRef("machine-id-clone", "bob")) is None


def test_an_older_store_gets_owners(tmp_path: Path) -> None:
    import sqlite3

    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript(
        "CREATE TABLE labs (key TEXT PRIMARY KEY, scenario TEXT NOT NULL, student TEXT NOT NULL,"
        " backend TEXT NOT NULL, backends TEXT NOT NULL DEFAULT '[]', scenario_path TEXT NOT"
        " NULL, params TEXT NOT NULL, status TEXT NOT NULL, step TEXT NOT NULL DEFAULT '',"
        " created REAL NOT NULL, updated REAL NOT NULL);"
        "INSERT INTO labs VALUES ('s--bob','s','bob','docker','[\"docker\"]','p','{}','up','',1,1);"
        "PRAGMA user_version = 1;"
    )
    db.close()
    record = Store(tmp_path / "state.db").lab_of(LabRef("s", "bob"))
    assert record is not None and record.owner == "s--bob" and record.ref == LabRef("s", "bob")


def _ready(store: Store, n: int) -> list[str]:
    pools = PoolStore(store.db)
    keys = [f"s--pool-{i:012x}" for i in range(n)]
    for i, key in enumerate(keys):
        pools.add(PoolLab(key, "s", "docker", ["docker"], "d1", None, "ready", time.time() + i))
    pools.add(PoolLab("s--pool-ffffffffffff", "s", "docker", ["docker"], "d1", None, "filling", 0))
    pools.add(PoolLab("s--pool-eeeeeeeeeeee", "s", "docker", ["docker"], "d0", None, "ready", 0))
    return keys


def test_concurrent_claims_never_share_a_lab(tmp_path: Path) -> None:
    keys = _ready(Store(tmp_path / "state.db"), 5)

    def take(_n: int) -> str | None:
        own = Store(tmp_path / "state.db")
        pools = PoolStore(own.db)
        with pools.transaction():
            got = pools.take("s", "docker", "d1", None, 0)
        return got.key if got else None

    with ThreadPoolExecutor(8) as ex:
        got = list(ex.map(take, range(8)))
    taken = [k for k in got if k]
    assert sorted(taken) == keys  # each ready lab once; none filling, none of an old file
    assert got.count(None) == 3


def test_a_lab_past_the_age_limit_or_of_other_memory_is_not_claimed(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    _ready(store, 1)
    pools = PoolStore(store.db)
    assert pools.take("s", "docker", "d1", 512 * 1024**2, 0) is None
    assert pools.take("s", "docker", "d1", None, time.time() + 60) is None
    assert pools.take("s", "docker", "d1", None, 0) is not None


def test_the_setup_waits_from_the_first_step_that_names_the_student() -> None:
    raw = load_file(ROOT / "scenarios" / "machine-id-clone.yaml")
    assert first_student_step(raw) == 0  # its one step writes the student's machine ID
    require_poolable(raw)
    free = replace(raw, setup=[replace(raw.setup[0], run="true")])
    assert first_student_step(free) == 1
    tied = replace(raw, setup=[free.setup[0], raw.setup[0], free.setup[0]])  # free, student, free
    assert first_student_step(tied) == 1


def test_a_machine_that_depends_on_the_student_cannot_be_pooled() -> None:
    raw = load_file(ROOT / "scenarios" / "machine-id-clone.yaml")
    m = raw.machines[0]
    files = [replace(f, dest="/etc/{{ student.id }}") for f in m.files]
    bad = replace(raw, machines=[replace(m, files=files)])
    with pytest.raises(UsageError, match="cannot be pooled"):
        require_poolable(bad)


class Engine:
    """A backend that logs what it is asked; `removes`: whether it has remove_machine."""

    name = "docker"
    capabilities: frozenset[str] = frozenset()

    def __init__(self) -> None:
        self.log: list[str] = []

    def availability(self) -> Availability:
        return Availability(True, "fake")

    def exec(self, lab: LabRef, machine: str, argv: Any, *, timeout: float) -> ExecResult:
        writes = [ln.strip() for ln in argv[-1].splitlines() if "> /etc/machine-id" in ln]
        self.log.append(f"exec {machine}: {writes}")
        return ExecResult(0, "", "")

    def restore(self, lab: LabRef, machines: Any, progress: Any) -> None:
        self.log.append("restore " + ",".join(m.name for m in machines))

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Any) -> None:
        self.log.append(f"clone {source.name} {target.name}")


class Removing(Engine):
    def remove_machine(self, lab: LabRef, machine: str) -> None:
        self.log.append(f"remove {machine}")


def cloned_lab(engine: Engine, slot: str = "pool-1") -> lifecycle.Lab:
    path = ROOT / "scenarios" / "machine-id-clone.yaml"
    ref = LabRef("machine-id-clone", "al", slot)
    return lifecycle.Lab(ref, load_file(path), path, engine, {})  # type: ignore[arg-type]


def test_a_pool_saves_before_the_student_step_only_where_clones_can_be_made_again() -> None:
    early = split(cloned_lab(Removing()))
    assert (early.first, early.early, early.whole) == (0, True, False)
    assert early.claim_phases(cloned_lab(Removing())) == ("setup", "clone")  # no snapshot
    late = split(cloned_lab(Engine()))  # no remove_machine: the claim snapshots, as before
    assert (late.early, late.claim_phases(cloned_lab(Engine()))) == (False, AFTER_STUDENT)


def test_reset_of_a_claimed_lab_replays_the_students_steps_and_clones(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    engine = Removing()
    lab = cloned_lab(engine)
    for key, event in ((lab.ref.key, {"saved_before": 0}), ("other", {})):
        store.put_lab(
            key, scenario=lab.ref.scenario, student="al", backends=["docker"],
            scenario_path="/x", params={}, status="up",
        )  # fmt: skip
        store.event(key, "claim", **event)
    record = store.lab(lab.ref.key)
    assert record is not None and verbs.saved_before_step(store, "other") is None
    lifecycle.reset(lab, record, store, lifecycle.Silent())
    step = ["printf '%s\\n' \"{{ params.template_id }}\" > /etc/machine-id"]
    assert engine.log == [
        "remove clone",  # the clone of the old state goes first
        "restore template",  # to the state saved before the student's step
        f"exec template: {step}",  # the student's step, once
        "clone template clone",  # the clone made again from it
    ]
    cold = Removing()  # a lab saved after its whole `up` is restored as it always was
    plain = cloned_lab(cold, slot="")
    store.put_lab(
        plain.ref.key, scenario=lab.ref.scenario, student="al", backends=["docker"],
        scenario_path="/x", params={}, status="up",
    )  # fmt: skip
    record = store.lab(plain.ref.key)
    assert record is not None
    lifecycle.reset(plain, record, store, lifecycle.Silent())
    assert cold.log == ["restore template,clone"]


def test_a_lab_finished_after_its_pool_was_drained_is_removed_not_left_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`pool drain` skips a lab still being made (its lock is held); the filler, once the
    lab is made, finds the pool gone and removes it: nothing is left for `gc`."""
    from orchestrator.pool import fill
    from orchestrator.pool.records import Target

    path = ROOT / "scenarios" / "machine-id-clone.yaml"
    target = Target("machine-id-clone", "docker", 1, None, None, str(path))
    store = Store(tmp_path / "state.db")
    PoolStore(store.db).set_target(target)
    removed: list[str] = []

    def drained_meanwhile(key: str, own: Store, reporter: Any, todo: Any) -> None:
        # another process drains the pool while this lab's machines are being made
        PoolStore(Store(tmp_path / "state.db").db).drop_target("machine-id-clone", "docker")

    monkeypatch.setattr(fill, "steps", lambda *a, **k: [])
    monkeypatch.setattr(fill, "run_recorded", drained_meanwhile)
    monkeypatch.setattr(
        fill, "remove", lambda s, lab: removed.append(lab.key) or PoolStore(s.db).remove(lab.key)
    )
    key = fill.make_one(target, fill.digest(path), store.path, lambda _k: lifecycle.Silent())
    assert key == ""
    assert len(removed) == 1 and removed[0].startswith("machine-id-clone--pool-")
    assert PoolStore(store.db).labs("machine-id-clone", "docker") == []


def test_a_drain_while_a_filler_still_holds_a_ready_lab_waits_and_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lab marked ready just before the drain, its lock not yet given back: the drain
    waits for the lock instead of skipping the lab, so no ready lab outlives its pool."""
    import threading

    from orchestrator.pool import fill
    from orchestrator.pool.records import Target

    path = ROOT / "scenarios" / "machine-id-clone.yaml"
    target = Target("machine-id-clone", "docker", 1, None, None, str(path))
    store = Store(tmp_path / "state.db")
    PoolStore(store.db).set_target(target)
    removed: list[str] = []
    drained: list[list[str]] = []
    drainer: list[threading.Thread] = []
    set_ready = PoolStore.set_ready

    def ready_then_drained(self: PoolStore, key: str) -> bool:
        marked = set_ready(self, key)

        def drain() -> None:
            drained.append(fill.drain(Store(tmp_path / "state.db"), "machine-id-clone", "docker"))

        drainer.append(threading.Thread(target=drain))
        drainer[0].start()
        time.sleep(0.5)  # the drain finds the lab ready and locked by its filler
        return marked

    monkeypatch.setattr(fill, "steps", lambda *a, **k: [])
    monkeypatch.setattr(fill, "run_recorded", lambda *a: None)
    monkeypatch.setattr(PoolStore, "set_ready", ready_then_drained)
    monkeypatch.setattr(
        fill, "remove", lambda s, lab: removed.append(lab.key) or PoolStore(s.db).remove(lab.key)
    )
    key = fill.make_one(target, fill.digest(path), store.path, lambda _k: lifecycle.Silent())
    drainer[0].join(timeout=40)
    assert key and drained == [[key]] and removed == [key]
    assert PoolStore(store.db).labs("machine-id-clone", "docker") == []


def test_a_lab_is_not_marked_ready_once_its_pool_is_drained(tmp_path: Path) -> None:
    from orchestrator.pool.records import Target

    pstore = PoolStore(Store(tmp_path / "state.db").db)
    pstore.set_target(Target("s", "docker", 1, None, None, "/x"))
    pstore.add(PoolLab("s--pool-a", "s", "docker", ["docker"], "d", None, "filling", 1.0))
    pstore.add(PoolLab("s--pool-b", "s", "docker", ["docker"], "d", None, "filling", 1.0))
    assert pstore.set_ready("s--pool-a")
    pstore.drop_target("s", "docker")
    assert not pstore.set_ready("s--pool-b")
    assert [lab.state for lab in pstore.labs("s", "docker")] == ["ready", "filling"]
