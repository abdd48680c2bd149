"""Vagrant's docker provider, for hosts with neither libvirt nor VirtualBox.

Its machines are containers, NOT virtual machines: the backend's `virtualization` says
"docker" and its capabilities lack "vm", so the machine facts tell checks that ask.
Vagrant creates and starts each container from the Vagrantfile; the container carries
the name the docker backend gives its own, so commands and files go through that backend.
What Vagrant's provider cannot do is here: the lab's internal network, the starting state
and clones as commits, and finding and removing it all by label. All of it goes through
the docker package's public functions, and the containers are confined by the one
description the docker backend uses for its own (docker/confine.py).

The docker package (and with it the engine's SDK) loads only when a function here is
called: a host on libvirt never needs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.backends.contract import FoundResources, LabRef, MachineSpec
from orchestrator.backends.vagrant.host import lab_digest, network_name

if TYPE_CHECKING:
    from orchestrator.backends.docker import DockerBackend
    from orchestrator.backends.docker.confine import Confinement

#: marks this provider's containers, networks and images apart from the docker backend's
#: (a lab with a `kind: vm` machine has both, under one lab label)
LABEL_PROVIDER = "guestlab.vagrant-provider"


def docker_backend() -> DockerBackend:
    """The docker backend, whose exec, files, boot and clean-up serve this provider."""
    from orchestrator.backends import get
    from orchestrator.backends.docker import DockerBackend

    backend = get("docker")
    assert isinstance(backend, DockerBackend)
    return backend


def provider_labels(labels: dict[str, str]) -> dict[str, str]:
    """`labels` and the mark of this provider's resources."""
    return {**labels, LABEL_PROVIDER: "docker"}


def image_repo(lab: LabRef) -> str:
    """Where the lab's commits go: its starting state and its clones' disks."""
    return f"guestlab/vagrant-{lab_digest(lab)}"


def container_name(lab: LabRef, machine: str) -> str:
    """The docker backend's name for the machine's container: its exec and files serve."""
    from orchestrator.backends.docker import container_name as docker_name

    return docker_name(lab, machine)


def confinement(spec: MachineSpec, network: str) -> Confinement:
    """The docker backend's confinement of the machine, from the one description it uses
    itself: `command` and `cli_args()` are Vagrant's `cmd` and `create_args`
    (docs/security.md says what it holds)."""
    return docker_backend().confinement(spec, network, provider_labels(spec.labels))


class DockerProvider:
    """The docker engine's side of a lab on Vagrant's docker provider."""

    def __init__(self) -> None:
        self.engine = docker_backend()

    def ensure_network(self, lab: LabRef) -> str:
        """The lab's internal network (its machines reach each other, nothing beyond); its
        subnet."""
        name = self.engine.ensure_network(
            lab, provider_labels(lab.labels()), name=network_name(lab)
        )
        return self.engine.resources.subnet(name)

    def commit(self, spec: MachineSpec, tag: str, labels: dict[str, str]) -> str:
        """The machine's file system as an image of the lab; its reference."""
        return self.engine.commit(spec, tag, provider_labels(labels), repo=image_repo(spec.lab))

    def release_boot(self, lab: LabRef, machine: str, init: str) -> None:
        """Once Vagrant has started the container: its cgroups, then systemd."""
        if init == "systemd":
            self.engine.release_boot(lab, machine)

    def has_image(self, ref: str) -> bool:
        """Whether the engine holds `ref`, one of the lab's commits."""
        return self.engine.resources.has_image(ref)

    def remove(self, lab: LabRef, machine: str) -> None:
        """The machine's container, gone if it was there."""
        self.engine.resources.remove_container(container_name(lab, machine))

    def destroy(self, lab: LabRef) -> FoundResources:
        """Every container, network and commit of the lab that this provider made."""
        return self.engine.destroy(lab, also=[LABEL_PROVIDER])

    def find(self, lab: LabRef | None) -> dict[str, FoundResources]:
        """This provider's resources of `lab` (or of every lab of this store), by label."""
        return self.engine.find(lab, also=[LABEL_PROVIDER])
