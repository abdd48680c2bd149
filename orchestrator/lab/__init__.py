"""The lifecycle of one lab: up, check, hint, solve, reset, down, and gc across labs.

Nothing here prints: progress goes to a Reporter, results come back as values, problems
as GuestlabError. The state store is written before any resource is created, so a crash
at any point leaves a lab that `down` or a second `up` can finish.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orchestrator import backends
from orchestrator.backends import require_available
from orchestrator.backends.base import (
    DEFAULT_CPUS,
    DEFAULT_DISK,
    DEFAULT_MEMORY,
    DEFAULT_PIDS,
    Backend,
    FoundResources,
    LabRef,
    MachineSpec,
    default_student,
)
from orchestrator.checks import TaskResult, grade, report
from orchestrator.errors import (
    BackendUnavailable,
    ProvisioningError,
    ScenarioError,
    UsageError,
)
from orchestrator.images.catalog import DEFAULT_IMAGE
from orchestrator.scenario.catalog import resolve
from orchestrator.scenario.i18n import localize
from orchestrator.scenario.load import load_file, source_path
from orchestrator.scenario.model import Machine, Scenario, Step
from orchestrator.scenario.render import derive_params, render_scenario
from orchestrator.state import LabRecord, Store, lab_lock

VM_BACKEND = "vagrant"
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


class Reporter(Protocol):
    """Where the lifecycle says what it is doing."""

    def step(self, name: str) -> contextlib.AbstractContextManager[None]: ...

    def line(self, text: str) -> None: ...


class Silent:
    """A Reporter that says nothing (tests, JSON output)."""

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        yield

    def line(self, text: str) -> None:
        pass


def parse_size(text: str) -> int:
    unit = text[-1].upper() if text[-1].isalpha() else ""
    return int(float(text[:-1] if unit else text) * UNITS[unit])


@dataclass
class Lab:
    """A scenario rendered for one student, bound to a backend."""

    ref: LabRef
    scenario: Scenario
    path: Path
    backend: Backend
    params: dict[str, str]

    def spec(self, name: str) -> MachineSpec:
        m = self.scenario.machine(name)
        root = self.scenario.root_of(name)
        mem, cpus, pids, disk = (self._limit(name, f) for f in ("memory", "cpus", "pids", "disk"))
        return MachineSpec(
            lab=self.ref,
            name=m.name,
            image=root.image or DEFAULT_IMAGE,
            init=root.init or "systemd",
            hostname=m.hostname or m.name,
            memory=parse_size(mem) if mem else DEFAULT_MEMORY,
            cpus=cpus or DEFAULT_CPUS,
            pids=pids or DEFAULT_PIDS,
            disk=parse_size(disk) if disk else DEFAULT_DISK,
        )

    def _limit(self, name: str, field: str) -> Any:
        """A limit the machine sets, else the one of the machine it copies, and so on."""
        m: Machine | None = self.scenario.machine(name)
        while m is not None:
            value = getattr(m.resources, field)
            if value is not None:
                return value
            m = self.scenario.machine(m.clone_of) if m.clone_of else None
        return None

    @property
    def originals(self) -> list[Machine]:
        return [m for m in self.scenario.machines if m.clone_of is None]

    @property
    def clones(self) -> list[Machine]:
        """Clones in an order where every source comes before its copies."""
        done = {m.name for m in self.originals}
        ordered: list[Machine] = []
        pending = [m for m in self.scenario.machines if m.clone_of is not None]
        while pending:
            ready = [m for m in pending if m.clone_of in done]
            ordered += ready
            done |= {m.name for m in ready}
            pending = [m for m in pending if m not in ready]
        return ordered

    @property
    def specs(self) -> list[MachineSpec]:
        return [self.spec(m.name) for m in [*self.originals, *self.clones]]

    def backend_for(self, name: str) -> Backend:
        """The lab's backend, or the VM backend for a `kind: vm` machine of a container lab."""
        if self.scenario.root_of(name).kind == "vm" and "vm" not in self.backend.capabilities:
            return backends.get(VM_BACKEND)
        return self.backend

    @property
    def backends(self) -> list[Backend]:
        """Every backend that holds a machine of the lab, the lab's own first."""
        used = {self.backend.name: self.backend}
        for m in self.scenario.machines:
            b = self.backend_for(m.name)
            used.setdefault(b.name, b)
        return list(used.values())

    def by_backend(self, specs: Sequence[MachineSpec]) -> list[tuple[Backend, list[MachineSpec]]]:
        groups = [(b, [s for s in specs if self.backend_for(s.name) is b]) for b in self.backends]
        return [(b, group) for b, group in groups if group]

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> Any:
        """Run a command in a machine on whichever backend holds it (checks use this)."""
        return self.backend_for(machine).exec(lab, machine, argv, timeout=timeout)

    def machine_facts(self) -> dict[str, dict[str, str]]:
        """What templates may read as machines.NAME.{backend,kind,virt}."""
        facts = {}
        for m in self.scenario.machines:
            b = self.backend_for(m.name)
            kind = "vm" if "vm" in b.capabilities else "container"
            facts[m.name] = {"backend": b.name, "kind": kind, "virt": b.virtualization}
        return facts

    def run_steps(self, steps: Sequence[Step], what: str) -> None:
        for n, step in enumerate(steps, 1):
            res = self.exec(self.ref, step.machine, ["sh", "-c", step.run], timeout=step.timeout)
            if not res.ok:
                why = "timed out" if res.timed_out else f"exit {res.exit_code}"
                detail = (res.stderr or res.stdout).strip()[-500:]
                raise ProvisioningError(
                    f"{what} step {n} on {step.machine} failed ({why})"
                    + (f": {detail}" if detail else "")
                )


def required_capabilities(
    scenario: Scenario, machines: Sequence[Machine] | None = None
) -> set[str]:
    """What a backend must support to hold `machines` (default: all) of the scenario."""
    chosen = scenario.machines if machines is None else machines
    need = {"snapshot"}
    if any(scenario.root_of(m.name).init in (None, "systemd") for m in chosen):
        need.add("systemd")
    if any(m.clone_of for m in chosen):
        need.add("clone")
    if any(scenario.root_of(m.name).kind == "vm" for m in chosen):
        need.add("vm")
    return need


def choose_backend(scenario: Scenario, name: str | None) -> Backend:
    """The backend to run on, refused before anything is created if it cannot do the job."""
    chosen = name or scenario.backends[0]
    if chosen not in scenario.backends:
        raise UsageError(
            f"scenario {scenario.id} does not support the {chosen} backend",
            hint=f"it supports: {', '.join(scenario.backends)}",
        )
    backend = backends.get(chosen)
    # `kind: vm` machines of a container lab go to the VM backend; the rest stay here
    own = [m for m in scenario.machines if scenario.root_of(m.name).kind != "vm"]
    if "vm" in backend.capabilities:
        own = list(scenario.machines)
    elif len(own) < len(scenario.machines):
        vm = backends.get(VM_BACKEND)
        if "vm" not in vm.capabilities:
            # Vagrant's docker provider makes containers: a lab about telling a VM from a
            # container would grade a container as the VM
            raise UsageError(
                f"{scenario.id} needs a real virtual machine, and the {VM_BACKEND} backend "
                f"here makes {vm.virtualization} containers, not VMs",
                hint="make libvirt usable (`guestlab doctor` says what is missing)",
            )
    missing = required_capabilities(scenario, own) - backend.capabilities
    if missing:
        others = [b for b in scenario.backends if not missing - backends.get(b).capabilities]
        raise UsageError(
            f"the {chosen} backend lacks {', '.join(sorted(missing))}, which {scenario.id} needs",
            hint=f"use --backend {others[0]}" if others else None,
        )
    return backend


# -- opening labs -------------------------------------------------------------------------
def prepare(ref: str, student: str, backend: str | None, lang: str = "en") -> Lab:
    """Load a scenario by id or path and render it for one student, in their language."""
    path = resolve(ref)
    scenario = localize(load_file(path), lang)
    params = derive_params(scenario, student)
    return _rendered(
        LabRef(scenario.id, student), scenario, path, choose_backend(scenario, backend), params
    )


def _rendered(
    ref: LabRef, scenario: Scenario, path: Path, backend: Backend, params: dict[str, str]
) -> Lab:
    raw = Lab(ref, scenario, path, backend, params)
    rendered = render_scenario(scenario, params, ref.student, raw.machine_facts())
    return Lab(ref, rendered, path, backend, params)


def open_lab(
    store: Store, scenario_id: str, student: str, lang: str = "en"
) -> tuple[Lab, LabRecord]:
    """A lab that is in the state store, as it was brought up."""
    ref = LabRef(scenario_id, student)
    record = store.lab(ref.key)
    if record is None:
        raise UsageError(
            f"no lab {scenario_id} for student {student}",
            hint=f"bring it up first: guestlab up {scenario_id}"
            + (f" --student {student}" if student != default_student() else ""),
        )
    path = Path(record.scenario_path)
    scenario = localize(load_file(path), lang)  # a vanished file is a UsageError naming it
    lab = _rendered(ref, scenario, path, backends.get(record.backend), record.params)
    return lab, record


# -- up -----------------------------------------------------------------------------------
def refuse_host_root(lab: Lab, reporter: Reporter, *, accepted: bool) -> None:
    """Refuse systemd machines on a backend where root in them is root on this host."""
    for backend in lab.backends:
        risk = backend.host_root_risk()
        systemd = [s.name for s in lab.specs if s.init == "systemd"]
        if risk is None or not systemd:
            continue
        if not accepted:
            raise BackendUnavailable(
                f"refusing to start {', '.join(systemd)} on {backend.name}: {risk}",
                hint="`guestlab doctor` says how to confine it; --unsafe-host-root accepts "
                "the risk for a lab of your own (never for a class)",
            )
        reporter.line(f"UNSAFE, as asked: {risk}")


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
        record = store.lab(key)
        if record and record.backend != lab.backend.name:
            raise UsageError(
                f"lab {key} is up on {record.backend}",
                hint=f"bring it down first: guestlab down {lab.ref.scenario}",
            )
        if record and record.status == "up":
            present = [m for b in lab.backends for m in _found(b, lab.ref).machines]
            missing = [s.name for s in lab.specs if s.name not in present]
            if not missing:
                return UpResult(lab, True, {})
            raise ProvisioningError(
                f"lab {key} is up but its machines {', '.join(missing)} are gone",
                hint=f"guestlab reset {lab.ref.scenario} restores them",
            )
        if record or any(_found(b, lab.ref) for b in lab.backends):
            reporter.line("a previous `up` did not finish: removing what it left")
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
        timings: dict[str, float] = {}
        steps: list[tuple[str, Callable[[], None]]] = [
            ("image", lambda: _images(lab, reporter, build_images)),
            ("provision", lambda: _provision(lab, reporter)),
            ("setup", lambda: lab.run_steps(lab.scenario.setup, "setup")),
            ("clone", lambda: _clone(lab, reporter)),
            ("snapshot", lambda: _snapshot(lab)),
        ]
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
        store.set_status(key, "up")
    return UpResult(lab, False, timings)


def _found(backend: Backend, ref: LabRef) -> FoundResources:
    return backend.find(ref).get(ref.key, FoundResources())


def _images(lab: Lab, reporter: Reporter, build: bool) -> None:
    for backend, specs in lab.by_backend(lab.specs):
        for image in dict.fromkeys(s.image for s in specs):
            backend.ensure_image(image, reporter.line, build=build)


def _provision(lab: Lab, reporter: Reporter) -> None:
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


def _snapshot(lab: Lab) -> None:
    for backend, specs in lab.by_backend(lab.specs):
        backend.snapshot(lab.ref, specs)


def _parallel(fn: Callable[[Any], None], items: Sequence[Any]) -> None:
    """Run fn over items in threads; the first error is raised once all have finished."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
        for fut in futures:
            fut.result()


# -- the student's verbs ------------------------------------------------------------------
def require_up(lab: Lab, record: LabRecord) -> None:
    if record.status != "up":
        raise ProvisioningError(
            f"lab {record.key} is not ready (its `up` stopped at step {record.step or '?'})",
            hint=f"run `guestlab up {lab.ref.scenario}` again,"
            f" or `guestlab down {lab.ref.scenario}`",
        )


def select_tasks(lab: Lab, task_ids: Sequence[str]) -> list[Any]:
    known = {t.id: t for t in lab.scenario.tasks}
    unknown = [t for t in task_ids if t not in known]
    if unknown:
        raise UsageError(
            f"no task {', '.join(unknown)} in {lab.scenario.id}",
            hint=f"its tasks: {', '.join(known)}",
        )
    return [known[t] for t in task_ids] if task_ids else list(known.values())


def check(
    lab: Lab, record: LabRecord, store: Store, task_ids: Sequence[str] = ()
) -> dict[str, Any]:
    require_up(lab, record)
    for backend in lab.backends:
        require_available(backend)
    results: list[TaskResult] = grade(lab, lab.ref, select_tasks(lab, task_ids))
    out = report(lab.scenario.id, lab.ref.student, lab.backend.name, results)
    store.add_attempt(lab.ref.key, out)
    return out


def hint(lab: Lab, store: Store, task_id: str) -> tuple[int, int, str | None]:
    """(number of this hint, hints in all, its text); records that it was taken."""
    task = select_tasks(lab, [task_id])[0]
    if not task.hints:
        return 0, 0, None
    taken = store.hints_taken(lab.ref.key, task.id)
    idx = min(taken, len(task.hints) - 1)
    store.add_hint(lab.ref.key, task.id, idx)
    return idx + 1, len(task.hints), task.hints[idx]


def solve(lab: Lab, record: LabRecord, store: Store, task_ids: Sequence[str] = ()) -> list[str]:
    require_up(lab, record)
    for backend in lab.backends:
        require_available(backend)
    done = []
    with lab_lock(lab.ref.key):
        for task in select_tasks(lab, task_ids):
            lab.run_steps(task.solution, f"solution of {task.id},")
            store.event(lab.ref.key, "solve", task=task.id)
            done.append(task.id)
    return done


def reset(lab: Lab, record: LabRecord, store: Store, reporter: Reporter) -> None:
    require_up(lab, record)
    for backend in lab.backends:
        require_available(backend)
    with lab_lock(lab.ref.key), reporter.step("restore"):
        for backend, specs in lab.by_backend(lab.specs):
            backend.restore(lab.ref, specs, reporter.line)
        store.event(lab.ref.key, "reset")


def scenario_errors(paths: Sequence[Path]) -> dict[Path, ScenarioError | None]:
    out: dict[Path, ScenarioError | None] = {}
    for p in paths:
        try:
            load_file(p)
            out[p] = None
        except ScenarioError as e:
            out[p] = e
    return out
