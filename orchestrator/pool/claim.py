"""Claiming: a student's lab taken from a pool, finished for them, recorded as theirs.

The pool lab leaves the pool and enters the `labs` table as the student's in one
transaction, so two claims never get the same lab and a claimed lab is never offered
again. What depends on the student then runs in it (the rest of the setup, the clones,
the starting-state snapshot), and the student's own seat credential is issued for it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

from orchestrator import lab as lifecycle
from orchestrator import paths
from orchestrator.backends import require_available
from orchestrator.backends.contract import LabRef
from orchestrator.credentials import Seats
from orchestrator.lab.bring_up import run_recorded, steps
from orchestrator.pool.records import PoolStore
from orchestrator.pool.split import digest, split
from orchestrator.state import Store, lab_lock


def claim(
    lab: lifecycle.Lab, store: Store, reporter: lifecycle.Reporter, memory: int | None = None
) -> lifecycle.UpResult | None:
    """The student's lab from the pool, finished; None when the pool has no fitting lab
    or the student already has a lab (then `up` does what it always did)."""
    pstore = PoolStore(store.db)
    scenario, backend = lab.scenario.id, lab.backend.name
    target = pstore.target(scenario, backend)
    if not pstore.labs(scenario, backend):
        return None
    newer = time.time() - target.max_age if target and target.max_age else 0.0
    current = digest(lab.path)
    with lab_lock(lab.ref.key):
        if store.lab_of(lab.ref) is not None:
            return None
        with pstore.transaction():
            found = pstore.take(scenario, backend, current, memory, newer)
            if found is None:
                return None
            ref = LabRef(scenario, lab.ref.student, found.slot)
            store.put_lab(
                ref.key,
                scenario=scenario,
                student=ref.student,
                backends=found.backends,
                scenario_path=str(lab.path),
                params=lab.params,
                status="provisioning",
                owner=ref.owner,
            )
        claimed = replace(lab, ref=ref)
        Seats(store.db).issue(ref.key)  # the student's own, never one of the pool's
        cut = split(lab)
        if cut.early:  # `reset` restores the state saved before the student's steps
            store.event(ref.key, "claim", saved_before=cut.first)
        rest = lab.scenario.setup[cut.first :]
        with lab_lock(ref.key):
            todo = steps(claimed, reporter, False, setup=rest, phases=cut.claim_phases(lab))
            timings = run_recorded(ref.key, store, reporter, todo)
            store.set_status(ref.key, "up")
    return lifecycle.UpResult(claimed, False, timings)


def up(
    lab: lifecycle.Lab,
    store: Store,
    reporter: lifecycle.Reporter,
    *,
    use_pool: bool = True,
    memory: int | None = None,
    build_images: bool = True,
    unsafe_host_root: bool = False,
) -> tuple[lifecycle.UpResult, bool]:
    """A ready lab from the pool when there is one, else a cold `up`; and whether claimed."""
    if use_pool:
        for backend in lab.backends:
            require_available(backend)
        lifecycle.refuse_host_root(lab, reporter, accepted=unsafe_host_root)
        got = claim(lab, store, reporter, memory)
        if got is not None:
            return got, True
    result = lifecycle.up(
        lab, store, reporter, build_images=build_images, unsafe_host_root=unsafe_host_root
    )
    return result, False


def refill_later(store: Store, scenario: str, backend: str) -> bool:
    """Start `guestlab pool fill` in the background when the pool has a target; whether it
    was started. Its output goes to a log under the state directory."""
    target = PoolStore(store.db).target(scenario, backend)
    if target is None:
        return False
    log = paths.ensure(paths.home() / "logs") / f"pool-{scenario}--{backend}.log"
    # the file the pool was made from: an id may not be on this process's search path
    argv = [sys.executable, "-m", "orchestrator.cli", "pool", "fill", target.scenario_path]
    with open(log, "ab") as out:
        subprocess.Popen(
            [*argv, "--backend", backend, "--refill"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives the command that claimed
            env=dict(os.environ),
        )
    return True
