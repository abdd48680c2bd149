"""Vagrant's docker provider, for hosts with neither libvirt nor VirtualBox.

Its machines are containers, NOT virtual machines: the backend's `virtualization` says
"docker" and its capabilities lack "vm", so the machine facts tell checks that ask.
Vagrant creates and starts each container from the Vagrantfile; the container carries
the name the docker backend gives its own, so commands and files go through that backend.
What Vagrant's provider cannot do is here: the lab's internal network, the starting state
and clones as commits, and finding and removing it all by label.
"""

from __future__ import annotations

import contextlib

from docker.errors import DockerException, ImageNotFound, NotFound

from orchestrator.backends.contract import (
    FoundResources,
    LabRef,
    MachineSpec,
)

# the docker backend's names for the machines' containers: its exec and files then serve
from orchestrator.backends.docker import DockerBackend, container_name
from orchestrator.backends.vagrant.host import lab_digest, network_name
from orchestrator.errors import MachineUnavailable, ProvisioningError

#: marks this provider's containers, networks and images apart from the docker backend's
#: (a lab with a `kind: vm` machine has both, under one lab label)
LABEL_PROVIDER = "guestlab.vagrant-provider"


def docker_backend() -> DockerBackend:
    from orchestrator.backends import get

    backend = get("docker")
    assert isinstance(backend, DockerBackend)
    return backend


def _labels(labels: dict[str, str]) -> dict[str, str]:
    return {**labels, LABEL_PROVIDER: "docker"}


def image_repo(lab: LabRef) -> str:
    """Where the lab's commits go: its starting state and its clones' disks."""
    return f"guestlab/vagrant-{lab_digest(lab)}"


def run_args(spec: MachineSpec, network: str) -> list[str]:
    """`docker run` options for Vagrant's `create_args`: the docker backend's confinement,
    from the one description it uses itself (docs/security.md says what it holds)."""
    return docker_backend().confinement(spec, network, _labels(spec.labels)).cli_args()


def command(spec: MachineSpec, network: str) -> list[str]:
    return docker_backend().confinement(spec, network, _labels(spec.labels)).command


class DockerProvider:
    """The docker engine's side of a lab on Vagrant's docker provider."""

    def __init__(self) -> None:
        self.engine = docker_backend()

    def ensure_network(self, lab: LabRef) -> str:
        """The lab's internal network (its machines reach each other, nothing beyond); its
        subnet."""
        name = self.engine.ensure_network(lab, _labels(lab.labels()), name=network_name(lab))
        ipam = self.engine.client.networks.get(name).attrs.get("IPAM") or {}
        return str((ipam.get("Config") or [{}])[0].get("Subnet", name))

    def commit(self, lab: LabRef, machine: str, tag: str, labels: dict[str, str]) -> str:
        """The machine's file system as an image of the lab; its reference."""
        try:
            container = self.engine.client.containers.get(container_name(lab, machine))
        except NotFound:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist"
            ) from None
        line = " ".join(f'{k}="{v}"' for k, v in _labels(labels).items())
        try:
            container.commit(repository=image_repo(lab), tag=tag, changes=[f"LABEL {line}"])
        except DockerException as e:
            raise ProvisioningError(f"saving {machine} failed: {e}") from None
        return f"{image_repo(lab)}:{tag}"

    def release_boot(self, lab: LabRef, machine: str, init: str) -> None:
        """Once Vagrant has started the container: its cgroups, then systemd."""
        if init == "systemd":
            self.engine.release_boot(lab, machine)

    def has_image(self, ref: str) -> bool:
        try:
            self.engine.client.images.get(ref)
        except ImageNotFound:
            return False
        return True

    def remove(self, lab: LabRef, machine: str) -> None:
        with contextlib.suppress(NotFound):
            self.engine.client.containers.get(container_name(lab, machine)).remove(force=True)

    def destroy(self, lab: LabRef) -> FoundResources:
        return self.engine.destroy(lab, also=[LABEL_PROVIDER])

    def find(self, lab: LabRef | None) -> dict[str, FoundResources]:
        return self.engine.find(lab, also=[LABEL_PROVIDER])
