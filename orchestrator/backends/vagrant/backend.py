"""Vagrant backend: machines are real virtual machines, driven through python-vagrant.

One lab is one directory, `<labs>/<lab key>/vagrant/` (labdir.py), holding a Vagrantfile
rendered from `templates/Vagrantfile.j2` (vagrantfile.py, for students who want to see how
it was made), `meta.json` (the labels and every machine's settings: the source of truth
for `find`), the lab's SSH key pair and the cached `vagrant ssh-config` of each machine.

Providers, in order of preference (preflight.py): libvirt (KVM when it really works here,
QEMU software emulation when not; the preflight decides once and caches the answer;
libvirt.py), VirtualBox, and docker (docker_provider.py), which is flagged as not a real
VM. With libvirt every lab gets an isolated network of its own (no forwarding), and every
domain carries the labels in its description, so a lab whose directory was lost is still
found and removed (resources.py). Commands run over plain ssh (ssh.py, execution.py).

This class is the contract's face only: each method hands its work to the module of its
concern (boxes, machines, snapshots, execution, resources).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from orchestrator.backends.contract import (
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.vagrant import (
    boxes,
    execution,
    libvirt,
    machines,
    reboot,
    resources,
    snapshots,
)
from orchestrator.backends.vagrant.docker_provider import docker_backend
from orchestrator.backends.vagrant.labdir import LabFiles
from orchestrator.backends.vagrant.preflight import Preflight
from orchestrator.images.manifest import Manifest


class VagrantBackend:
    """Machines as Vagrant machines: real VMs with libvirt or VirtualBox, or containers
    (flagged as such) with Vagrant's docker provider."""

    name = "vagrant"

    def __init__(self) -> None:
        self._preflight = Preflight()
        self._files = LabFiles()  # meta.json and the Vagrantfile, between threads

    # -- what this host offers -----------------------------------------------------------
    @property
    def capabilities(self) -> frozenset[str]:
        if self._preflight.provider() == "docker":
            # containers: clones and the starting state as commits, but no VM
            return frozenset({"systemd", "clone", "snapshot"})
        return frozenset({"systemd", "clone", "snapshot", "vm"})

    @property
    def virtualization(self) -> str:
        """What systemd-detect-virt prints inside: kvm, qemu, oracle or docker."""
        provider = self._preflight.provider()
        if provider == "docker":
            return "docker"
        if provider == "virtualbox":
            return "oracle"
        return "kvm" if libvirt.kvm_status()[0] else "qemu"

    def availability(self) -> Availability:
        return self._preflight.availability()

    def host_root_risk(self) -> str | None:
        """A VM shares no kernel with the host; the docker provider is the docker backend."""
        if self._preflight.provider() == "docker":
            return docker_backend().host_root_risk()
        return None

    # -- images --------------------------------------------------------------------------
    def has_image(self, image: str) -> bool:
        return boxes.has_image(image, self._preflight.provider())

    def ensure_image(
        self, image: str, progress: Progress, *, build: bool = True, mirror: str | None = None
    ) -> None:
        boxes.ensure_image(image, progress, self._preflight, build=build, mirror=mirror)

    def remove_image(self, image: str) -> bool:
        return boxes.remove_image(image)

    def image_manifest(self, image: str) -> Manifest | None:
        """The manifest of what this host's machines of `image` start from (checks.trusted)."""
        return boxes.image_manifest(image, self._preflight.provider())

    def import_image(self, image: str, tarball: Path, progress: Progress) -> None:
        """`image build --rebuild`: build the box again from the fresh rootfs and add it."""
        boxes.import_image(image, progress)

    # -- machines ------------------------------------------------------------------------
    def create(self, spec: MachineSpec, progress: Progress) -> None:
        machines.create(spec, progress, self._preflight, self._files)

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        machines.clone(source, target, progress, self._preflight, self._files)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        snapshots.snapshot(lab, machines)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        snapshots.restore(lab, machines, progress, self._preflight, self._files)

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        reboot.restart(lab, machines, progress)

    # -- commands and files --------------------------------------------------------------
    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        return execution.exec_in(lab, machine, argv, timeout=timeout)

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        execution.put_file(lab, machine, dest, data, mode)

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        return execution.shell_argv(lab, machine)

    def attach_argv(
        self, lab: LabRef, machine: str, argv: Sequence[str], *, tty: bool
    ) -> list[str]:
        return execution.attach_argv(lab, machine, argv, tty=tty)

    # -- cleanup -------------------------------------------------------------------------
    def destroy(self, lab: LabRef) -> FoundResources:
        return resources.destroy(lab, self._preflight)

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        return resources.find(lab, self._preflight)
