"""A lab's machines made: an entry in meta.json, `vagrant up`, then SSH with the lab's own
key, the hostname and systemd; clones from a copy of the source's disk (libvirt) or a
commit of its container (docker provider).
"""

from __future__ import annotations

import json
import math
from typing import Any

from orchestrator.backends.common import refuse_existing
from orchestrator.backends.contract import LabRef, MachineSpec, Progress
from orchestrator.backends.vagrant import boxes, command, docker_provider, libvirt
from orchestrator.backends.vagrant.docker_provider import DockerProvider
from orchestrator.backends.vagrant.execution import exec_in, ssh_for, wait_ready, wait_ssh
from orchestrator.backends.vagrant.host import DESCRIPTION_PREFIX, domain_name, lab_dir
from orchestrator.backends.vagrant.labdir import LabFiles, read_meta
from orchestrator.backends.vagrant.preflight import Preflight
from orchestrator.backends.vagrant.ssh import Ssh
from orchestrator.errors import ProvisioningError
from orchestrator.messages import _

#: sets the hostname in /etc/hostname, the kernel and /etc/hosts; the name is "$1"
SET_HOSTNAME = (
    'echo "$1" > /etc/hostname && hostname "$1" && '
    'sed -i "/^127.0.1.1/d" /etc/hosts && printf "127.0.1.1\\t%s\\n" "$1" >> /etc/hosts'
)


def machine_entry(spec: MachineSpec, meta: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A machine's settings in the lab's `meta`, which the Vagrantfile is rendered from."""
    from orchestrator.images.box import box_name

    entry: dict[str, Any] = {
        "domain": domain_name(spec.lab, spec.name),
        "box": box_name(spec.image),
        "image": spec.image,
        "init": spec.init,
        "hostname": spec.hostname or spec.name,
        "memory": max(256, spec.memory // 1024**2),  # MiB; a kernel needs some room
        "cpus": max(1, math.ceil(spec.cpus)),
        "description": DESCRIPTION_PREFIX + json.dumps(spec.labels, sort_keys=True),
        "labels": spec.labels,
        "disk": None,
        "clone_of": None,
        # vagrant-libvirt makes each one as <domain>-vdb.qcow2, ... in the pool: a name
        # that `down` and `gc` find by the lab's prefix, and snapshots cover (qcow2)
        "disks": [f"{math.ceil(size / 1024**2)}M" for size in spec.disks],
    }
    if meta["provider"] == "docker":
        from orchestrator.backends.docker import image_ref

        conf = docker_provider.confinement(spec, meta["network"]["name"])
        entry.update(
            domain=docker_provider.container_name(spec.lab, spec.name),
            docker_image=image_ref(spec.image),
            docker_cmd=conf.command,
            docker_args=conf.cli_args(),
        )
    entry.update(extra)
    return entry


def create(spec: MachineSpec, progress: Progress, preflight: Preflight, files: LabFiles) -> None:
    """A new machine of the lab, up and ready (the backend's `create`)."""
    lab = spec.lab
    provider = preflight.engine().provider
    if spec.disks and provider != "libvirt":
        # the Vagrantfile adds extra disks for libvirt only: never a VM without them
        raise ProvisioningError(
            _(
                "machine `{name}` has extra disks, which guestlab makes with the"
                " libvirt provider only (this host uses {provider})"
            ).format(name=spec.name, provider=provider),
            hint=_("make libvirt usable (`guestlab doctor` says what is missing)"),
        )
    refuse_existing(lab, spec.name, exists=libvirt.domain_exists(domain_name(lab, spec.name)))
    boxes.ensure_image(spec.image, progress, preflight, build=False)
    files.init_lab(lab, preflight.engine())
    with files.editing(lab) as meta:
        meta["machines"][spec.name] = machine_entry(spec, meta)
    if provider == "docker":
        progress(
            _("vagrant up {name} (a container: Vagrant's docker provider)").format(name=spec.name)
        )
    else:
        progress(
            _("vagrant up {name} (a real VM: a minute or so under emulation)").format(
                name=spec.name
            )
        )
    command.up(lab, spec.name, provider, progress)
    after_boot(lab, spec.name, spec.hostname or spec.name, spec.init, progress)


def after_boot(
    lab: LabRef, machine: str, hostname: str | None, init: str, progress: Progress
) -> None:
    """SSH as the lab's key only, the hostname when Vagrant did not set it, and ready."""
    if read_meta(lab)["provider"] == "docker":
        # Vagrant gave the container its hostname; there is no SSH to set up
        # systemd starts only now: the docker backend's wait knows "offline" is early
        docker = DockerProvider()
        docker.release_boot(lab, machine, init)
        docker.engine.wait_ready(lab, machine, init, progress)
        return
    Ssh(lab, machine).forget()
    wait_ssh(lab, machine)
    pub = (lab_dir(lab) / "id_ed25519.pub").read_text()
    res = ssh_for(lab, machine).run(
        ["sh", "-c", 'printf "%s" "$1" > ~vagrant/.ssh/authorized_keys', "sh", pub],
        timeout=60,
    )
    if not res.ok:
        raise ProvisioningError(
            _("cannot install the lab's key in {machine}: {stderr}").format(
                machine=machine, stderr=res.stderr
            )
        )
    if hostname:
        res = ssh_for(lab, machine).run(["sh", "-c", SET_HOSTNAME, "sh", hostname], timeout=60)
        if not res.ok:
            raise ProvisioningError(
                _("cannot set the hostname of {machine}: {stderr}").format(
                    machine=machine, stderr=res.stderr
                )
            )
    wait_ready(lab, machine, init, progress)


def clone(
    source: MachineSpec,
    target: MachineSpec,
    progress: Progress,
    preflight: Preflight,
    files: LabFiles,
) -> None:
    """`target` as a copy of `source` after its setup (the backend's `clone`)."""
    lab = target.lab
    provider = read_meta(source.lab).get("provider")
    if provider == "docker":
        progress(_("copying {source} into {target}").format(source=source.name, target=target.name))
        image = DockerProvider().commit(source, f"{target.name}-clone", target.labels)
        extra: dict[str, Any] = {"docker_image": image, "clone_of": source.name}
    elif provider == "libvirt":
        extra = _copy_disk(source, target, progress)
    else:
        raise ProvisioningError(
            _(
                "clones of Vagrant machines need the libvirt or docker provider (this"
                " lab uses {provider})"
            ).format(provider=provider or "none"),
            hint=_("use the docker or lxd backend for this scenario"),
        )
    with files.editing(lab) as m:
        m["machines"][target.name] = machine_entry(target, m, **extra)
    progress(_("vagrant up {name} from the copy").format(name=target.name))
    command.up(lab, target.name, preflight.engine().provider, progress)
    after_boot(lab, target.name, target.hostname or target.name, target.init, progress)


def _copy_disk(source: MachineSpec, target: MachineSpec, progress: Progress) -> dict[str, Any]:
    """The source VM's disk copied for the target; the target's settings that say so."""
    src = domain_name(source.lab, source.name)
    dst = domain_name(target.lab, target.name)
    refuse_existing(target.lab, target.name, exists=libvirt.domain_exists(dst), where=dst)
    # data still in the guest's page cache must reach its disk before the copy
    exec_in(source.lab, source.name, ["sync"], timeout=60)
    progress(_("copying the disk of {name} (paused for the copy)").format(name=source.name))
    return {"disk": libvirt.copy_disk(src, dst), "clone_of": source.name, "box": None}
