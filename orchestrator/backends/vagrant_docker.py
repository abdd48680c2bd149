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

from orchestrator.backends.base import (
    FoundResources,
    LabRef,
    MachineSpec,
)

# the docker backend's names for the machines' containers: its exec and files then serve
from orchestrator.backends.docker import DockerBackend, container_name
from orchestrator.backends.vagrant_host import lab_digest, network_name
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


def run_args(spec: MachineSpec, network: str, cgroup_version: str) -> list[str]:
    """`docker run` options for Vagrant's `create_args`: the docker backend's confinement.

    systemd as PID 1 without --privileged; on cgroup v1 a private cgroup namespace rather
    than the host's tree mounted in (docs/security.md says why).
    """
    args = [
        "--network", network,
        "--memory", str(spec.memory), "--memory-swap", str(spec.memory),
        "--cpus", f"{spec.cpus:g}", "--pids-limit", str(spec.pids),
    ]  # fmt: skip
    for key, value in sorted(_labels(spec.labels).items()):
        args += ["--label", f"{key}={value}"]
    if spec.init != "systemd":
        return [*args, "--init"]
    args += [
        "--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
        "--env", "container=docker", "--stop-signal", "SIGRTMIN+3",
    ]  # fmt: skip
    if cgroup_version == "2":
        return [*args, "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw"]
    return [*args, "--cgroupns", "private"]


def command(init: str) -> list[str]:
    return ["/lib/systemd/systemd"] if init == "systemd" else ["sleep", "infinity"]


class DockerProvider:
    """The docker engine's side of a lab on Vagrant's docker provider."""

    def __init__(self) -> None:
        self.engine = docker_backend()

    def ensure_network(self, lab: LabRef) -> str:
        """The lab's internal network (its machines reach each other, nothing beyond); its
        subnet."""
        name = network_name(lab)
        client = self.engine.client
        if not client.networks.list(names=[name]):
            try:
                client.networks.create(
                    name, driver="bridge", internal=True, labels=_labels(lab.labels())
                )
            except DockerException as e:
                raise ProvisioningError(f"creating the lab's network {name} failed: {e}") from None
        ipam = client.networks.get(name).attrs.get("IPAM") or {}
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
