"""An in-memory backend for tests of a class's lifecycle: machines as dict entries, a
student called `broken*` fails to start."""

from __future__ import annotations

from base64 import b64encode
from collections.abc import Sequence

import click
import pytest

from orchestrator import backends
from orchestrator.backends.contract import (
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.classroom import bulk, copies
from orchestrator.classroom.roster import Student
from orchestrator.cli.classroom import class_group
from orchestrator.cli.serve import serve
from orchestrator.errors import ProvisioningError

SCENARIO = "machine-id-clone"


class FakeBackend:
    """Machines as dict entries; creating one for a student called `broken*` fails."""

    name = "docker"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "docker"

    def __init__(self) -> None:
        self.machines: dict[str, dict[str, str]] = {}  # lab key -> machine -> machine-id
        self.created: list[MachineSpec] = []
        self.risk: str | None = None
        self.restarted: list[str] = []

    def availability(self) -> Availability:
        return Availability(True, "fake")

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        pass

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        if spec.lab.student.startswith("broken"):
            raise ProvisioningError(f"starting machine {spec.name} failed: no space left")
        self.created.append(spec)
        self.machines.setdefault(spec.lab.key, {})[spec.name] = "image0"

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        ids = self.machines.get(lab.key, {})
        if list(argv[:3]) == ["sh", "-c", copies.read_script("/etc/machine-id")]:
            return ExecResult(0, framed("/etc/machine-id", ids.get(machine, "").encode() + b"\n"))
        return ExecResult(0, "")

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        pass

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        self.create(target, progress)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        pass

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        self.created.extend(machines)

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        self.restarted.extend(m.name for m in machines)  # a reboot keeps the disk: the IDs

    def destroy(self, lab: LabRef) -> FoundResources:
        gone = self.machines.pop(lab.key, {})
        return FoundResources(machines=list(gone))

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        return {
            k: FoundResources(machines=list(m))
            for k, m in self.machines.items()
            if lab is None or k == lab.key
        }

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        return ["true"]

    def host_root_risk(self) -> str | None:
        return self.risk


def framed(path: str, content: bytes) -> str:
    """One line as copies.read_script prints it for a regular file."""
    return f"file {b64encode(path.encode()).decode()} {b64encode(content).decode()}-\n"


def use_fake_backend(monkeypatch: pytest.MonkeyPatch) -> FakeBackend:
    """A FakeBackend as the "docker" backend, on a host with room for any class."""
    backend = FakeBackend()
    monkeypatch.setitem(backends._cache, "docker", backend)
    monkeypatch.setattr(bulk, "host_memory", lambda _b: (64 * 1024**3, "this host"))
    monkeypatch.setattr(bulk, "inotify_limit", lambda: (0, 0))  # no limit known: no check
    return backend


def roster(*ids: str) -> list[Student]:
    return [Student(i, f"Name {i}", f"{i}@example.org", n + 2) for n, i in enumerate(ids)]


@click.group()
def wired() -> None:
    """The class commands as `guestlab` will carry them."""


wired.add_command(class_group)
wired.add_command(serve)
