"""`up`: the lifecycle as data (image, provision, setup, clone, snapshot), each step named,
timed and recorded.

The state store is written before any resource is created, so a crash at any point leaves
a lab that `down` or a second `up` can finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from orchestrator.backends import require_available
from orchestrator.backends.contract import (
    Backend,
    FoundResources,
    LabRef,
    MachineRemoval,
    MachineSpec,
)
from orchestrator.credentials import Seats
from orchestrator.errors import BackendUnavailable, ProvisioningError, UsageError
from orchestrator.lab.bound import Lab
from orchestrator.lab.reporter import Reporter
from orchestrator.messages import _, speaking
from orchestrator.scenario.model import Machine, Step
from orchestrator.state import LabRecord, Store, lab_lock

Steps = list[tuple[str, Callable[[], None]]]
#: the steps of `up`, in order
PHASES = ("image", "provision", "setup", "clone", "snapshot")


def refuse_host_root(lab: Lab, reporter: Reporter, *, accepted: bool) -> None:
    """Refuse systemd machines on a backend where root in them is root on this host."""
    for backend in lab.backends:
        risk = backend.host_root_risk()
        systemd = [s.name for s in lab.specs if s.init == "systemd"]
        if risk is None or not systemd:
            continue
        if not accepted:
            raise BackendUnavailable(
                _("refusing to start {machines} on {name}: {risk}").format(
                    machines=", ".join(systemd), name=backend.name, risk=risk
                ),
                hint=_(
                    "`guestlab doctor` says how to confine it; --unsafe-host-root accepts"
                    " the risk for a lab of your own (never for a class)"
                ),
            )
        reporter.line(_("UNSAFE, as asked: {risk}").format(risk=risk))


@dataclass
class UpResult:
    lab: Lab
    already_up: bool
    timings: dict[str, float]


def up(
    lab: Lab,
    store: Store,
    reporter: Reporter,
    *,
    build_images: bool = True,
    unsafe_host_root: bool = False,
) -> UpResult:
    """Bring the lab up; `unsafe_host_root` accepts a backend whose root is the host's."""
    for backend in lab.backends:
        require_available(backend)
    refuse_host_root(lab, reporter, accepted=unsafe_host_root)
    key = lab.ref.key
    with lab_lock(key):
        record = store.lab_of(lab.ref)
        if record and record.key != key:  # claimed from a pool
            claimed = replace(lab, ref=record.ref)
            if _is_up(claimed, record):
                return UpResult(claimed, True, {})
            forget_unfinished(claimed, store, reporter)
            record = None
        if _is_up(lab, record):
            return UpResult(lab, True, {})
        if record or any(_found(b, lab.ref) for b in lab.backends):
            reporter.line(_("a previous `up` did not finish: removing what it left"))
            for backend in lab.backends:
                backend.destroy(lab.ref)
        store.put_lab(
            key,
            scenario=lab.scenario.id,
            student=lab.ref.student,
            backends=[b.name for b in lab.backends],
            scenario_path=str(lab.path),
            params=lab.params,
            status="provisioning",
        )
        Seats(store.db).issue(key)  # the student's credential, printed by `guestlab link`
        timings = run_recorded(key, store, reporter, steps(lab, reporter, build_images))
        store.set_status(key, "up")
    return UpResult(lab, False, timings)


def _is_up(lab: Lab, record: LabRecord | None) -> bool:
    """Whether the lab is up with all its machines; an error when it is up but not so."""
    key = lab.ref.key
    if record and record.backend != lab.backend.name:
        raise UsageError(
            _("lab {lab} is up on {backend}").format(lab=key, backend=record.backend),
            hint=_("bring it down first: guestlab down {id}").format(id=lab.ref.scenario),
        )
    if not (record and record.status == "up"):
        return False
    present = [m for b in lab.backends for m in _found(b, lab.ref).machines]
    missing = [s.name for s in lab.specs if s.name not in present]
    if not missing:
        return True
    raise ProvisioningError(
        _("lab {lab} is up but its machines {machines} are gone").format(
            lab=key, machines=", ".join(missing)
        ),
        hint=_("guestlab reset {id} restores them").format(id=lab.ref.scenario),
    )


def forget_unfinished(lab: Lab, store: Store, reporter: Reporter) -> None:
    """Remove a lab whose `up` (or claim) stopped half-way, and forget it."""
    with lab_lock(lab.ref.key):
        reporter.line(_("a previous `up` did not finish: removing what it left"))
        for backend in lab.backends:
            backend.destroy(lab.ref)
        store.delete_lab(lab.ref.key)
        Seats(store.db).forget(lab.ref.key)


def steps(
    lab: Lab,
    reporter: Reporter,
    build_images: bool = True,
    *,
    setup: Sequence[Step] | None = None,
    phases: Sequence[str] = PHASES,
    saved: Sequence[MachineSpec] | None = None,
) -> Steps:
    """The steps of `up`, in order; a pool runs some `phases`, part of the `setup`, and
    saves the starting state of some machines only (`saved`: the originals, before the
    student's steps)."""
    todo = lab.scenario.setup if setup is None else setup
    every = {
        "image": lambda: _images(lab, reporter, build_images),
        "provision": lambda: _provision(lab, reporter),
        "setup": lambda: lab.run_steps(todo, "setup"),
        "clone": lambda: _clone(lab, reporter),
        "snapshot": lambda: _snapshot(lab, lab.specs if saved is None else saved),
    }
    return [(name, every[name]) for name in phases]


def run_recorded(key: str, store: Store, reporter: Reporter, steps: Steps) -> dict[str, float]:
    """Run each step, recording in the store where the lab is; seconds per step."""
    timings: dict[str, float] = {}
    for name, fn in steps:
        store.set_status(key, "provisioning", name)
        started = time.monotonic()
        try:
            with reporter.step(name):
                fn()
        except BaseException as e:
            store.set_status(key, "failed", name)
            store.event(key, "step", step=name, ok=False, error=str(e) or type(e).__name__)
            raise
        timings[name] = time.monotonic() - started
        store.event(key, "step", step=name, ok=True, seconds=round(timings[name], 3))
    return timings


def _found(backend: Backend, ref: LabRef) -> FoundResources:
    return backend.find(ref).get(ref.key, FoundResources())


def _images(lab: Lab, reporter: Reporter, build: bool) -> None:
    for backend, specs in lab.by_backend(lab.specs):
        for image in dict.fromkeys(s.image for s in specs):
            backend.ensure_image(image, reporter.line, build=build)


def _provision(lab: Lab, reporter: Reporter) -> None:
    # here, not at the top: the loader brings pydantic, which a pool claim never needs
    from orchestrator.scenario.load import source_path

    def one(machine: Machine) -> None:
        backend = lab.backend_for(machine.name)
        backend.create(lab.spec(machine.name), reporter.line)
        for f in machine.files:
            data = source_path(lab.path, lab.scenario, f.src).read_bytes()
            mode = int(f.mode, 8) if f.mode else 0o644
            backend.put_file(lab.ref, machine.name, f.dest, data, mode)

    _parallel(one, lab.originals)


def _clone(lab: Lab, reporter: Reporter) -> None:
    for m in lab.clones:
        assert m.clone_of is not None
        lab.backend_for(m.name).clone(lab.spec(m.clone_of), lab.spec(m.name), reporter.line)


def _snapshot(lab: Lab, saved: Sequence[MachineSpec]) -> None:
    for backend, specs in lab.by_backend(saved):
        backend.snapshot(lab.ref, specs)


def originals(lab: Lab) -> list[MachineSpec]:
    """The machines that are not clones: what a pool saves before the student's steps."""
    return [lab.spec(m.name) for m in lab.originals]


def can_remake_clones(lab: Lab) -> bool:
    """Whether every clone's engine can remove that one machine (for `restore_before`)."""
    return all(isinstance(lab.backend_for(m.name), MachineRemoval) for m in lab.clones)


def restore_before(lab: Lab, first: int, reporter: Reporter) -> None:
    """Reset a lab whose starting state was saved before its setup step `first` (a pool's,
    before the student's steps): the originals go back to it, the clones are removed, and
    the steps from `first` on and the clones are made again, as `up` made them."""
    for m in lab.clones:
        backend = lab.backend_for(m.name)
        if not isinstance(backend, MachineRemoval):
            raise ProvisioningError(
                _("{backend} cannot make clone {machine} again").format(
                    backend=backend.name, machine=m.name
                )
            )
        reporter.line(_("removing {machine}").format(machine=m.name))
        backend.remove_machine(lab.ref, m.name)
    for backend, specs in lab.by_backend(originals(lab)):
        backend.restore(lab.ref, specs, reporter.line)
    lab.run_steps(lab.scenario.setup[first:], "setup")
    _clone(lab, reporter)


def _parallel(fn: Callable[[Any], None], items: Sequence[Any]) -> None:
    """Run fn over items in threads; the first error is raised once all have finished."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = [pool.submit(speaking(fn), item) for item in items]
        for fut in futures:
            fut.result()
