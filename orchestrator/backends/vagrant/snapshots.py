"""A lab's starting state: libvirt snapshots of the running VMs (memory too, so a restore
needs no boot), or commits of the docker provider's containers, from which Vagrant makes
new ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from orchestrator.backends.contract import LabRef, MachineSpec, Progress
from orchestrator.backends.vagrant import command, libvirt
from orchestrator.backends.vagrant.docker_provider import DockerProvider, image_repo
from orchestrator.backends.vagrant.execution import wait_ready, wait_ssh
from orchestrator.backends.vagrant.host import domain_name
from orchestrator.backends.vagrant.labdir import LabFiles, read_meta
from orchestrator.backends.vagrant.preflight import Preflight
from orchestrator.backends.vagrant.ssh import Ssh
from orchestrator.errors import ProvisioningError
from orchestrator.messages import _


def snapshot(lab: LabRef, machines: Sequence[MachineSpec]) -> None:
    """Save the machines' state as the lab's start (the backend's `snapshot`)."""
    provider = read_meta(lab).get("provider")
    for spec in machines:
        if provider == "docker":
            DockerProvider().commit(spec, f"{spec.name}-start", spec.labels)
        elif provider == "libvirt":
            libvirt.take_snapshot(domain_name(lab, spec.name))
        else:
            raise ProvisioningError(_("snapshots need the libvirt or docker provider"))


def restore(
    lab: LabRef,
    machines: Sequence[MachineSpec],
    progress: Progress,
    preflight: Preflight,
    files: LabFiles,
) -> None:
    """The machines back to the lab's start, then ready (the backend's `restore`)."""
    docker = read_meta(lab).get("provider") == "docker"
    for spec in machines:
        if docker:
            _restore_container(lab, spec, progress, preflight, files)
            continue
        dom = domain_name(lab, spec.name)
        if libvirt.SNAPSHOT not in libvirt.snapshots(dom):
            raise _no_start(lab, spec)
        progress(_("restoring {name}").format(name=spec.name))
        Ssh(lab, spec.name).forget()  # the guest's end of the connection goes back
        libvirt.revert_snapshot(dom)
    for spec in machines:
        if docker:
            DockerProvider().engine.wait_ready(lab, spec.name, spec.init, progress)
            continue
        wait_ssh(lab, spec.name)
        wait_ready(lab, spec.name, spec.init, progress)


def _restore_container(
    lab: LabRef, spec: MachineSpec, progress: Progress, preflight: Preflight, files: LabFiles
) -> None:
    """A new container from the starting commit, made by Vagrant like the first one."""
    docker = DockerProvider()
    start = f"{image_repo(lab)}:{spec.name}-start"
    if not docker.has_image(start):
        raise _no_start(lab, spec)
    progress(_("restoring {name}").format(name=spec.name))
    docker.remove(lab, spec.name)
    with files.editing(lab) as m:
        m["machines"][spec.name]["docker_image"] = start
    command.up(lab, spec.name, preflight.engine().provider, progress)
    docker.release_boot(lab, spec.name, spec.init)


def _no_start(lab: LabRef, spec: MachineSpec) -> ProvisioningError:
    return ProvisioningError(
        _("machine `{name}` of lab `{key}` has no starting snapshot").format(
            name=spec.name, key=lab.key
        ),
        hint=_("bring the lab up again: guestlab down && guestlab up"),
    )
