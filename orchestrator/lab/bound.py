"""A lab: a scenario rendered for one student, bound to the backends that hold its machines."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import backends
from orchestrator.backends.contract import (
    DEFAULT_CPUS,
    DEFAULT_DISK,
    DEFAULT_MEMORY,
    DEFAULT_PIDS,
    Backend,
    LabRef,
    MachineSpec,
)
from orchestrator.errors import ProvisioningError
from orchestrator.images.catalog import DEFAULT_IMAGE
from orchestrator.scenario.model import Machine, Scenario, Step, size_bytes

#: the backend of `kind: vm` machines in a lab whose own backend makes containers
VM_BACKEND = "vagrant"
UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def parse_size(text: str) -> int:
    """Bytes of a size of the scenario format (`512K`, `256M`, `1.5G`)."""
    return size_bytes(text)


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
            disks=tuple(parse_size(d.size) for d in m.disks),
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
    def grading(self) -> list[Machine]:
        """The grading machines: made by each check, not by `up` (lab.grading_machines)."""
        return self.scenario.grading_machines

    @property
    def clones(self) -> list[Machine]:
        """Clones in an order where every source comes before its copies."""
        done = {m.name for m in self.originals}
        ordered: list[Machine] = []
        pending = [m for m in self.scenario.lab_machines if m.clone_of is not None]
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
        """What templates may read as machines.NAME.{backend,kind,virt,os}."""
        from orchestrator.images.catalog import lookup

        facts = {}
        for m in self.scenario.machines:
            b = self.backend_for(m.name)
            kind = "vm" if "vm" in b.capabilities else "container"
            os_id = lookup(self.scenario.root_of(m.name).image or DEFAULT_IMAGE).os_id
            facts[m.name] = {"backend": b.name, "kind": kind, "virt": b.virtualization, "os": os_id}
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
