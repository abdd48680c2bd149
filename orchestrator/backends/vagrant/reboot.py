"""A real reboot of a lab's VMs: `systemctl reboot` inside, then the wait for the new boot.

Asked inside rather than through libvirt: the guest's own reboot stops its units in order
(a student's shell ends when sshd's session goes), and `vagrant reload` would cost a
whole `vagrant up` on top. The new boot is told from the old one by the kernel's boot id,
so an answer from a guest still shutting down is never taken for "booted". The docker
provider's containers restart as the docker backend's do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from orchestrator.backends.common import VM_BOOT_TIMEOUT
from orchestrator.backends.contract import LabRef, MachineSpec, Progress
from orchestrator.backends.vagrant.docker_provider import DockerProvider
from orchestrator.backends.vagrant.execution import exec_in, wait_ready
from orchestrator.backends.vagrant.host import domain_name
from orchestrator.backends.vagrant.labdir import read_meta
from orchestrator.backends.vagrant.ssh import Ssh
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

BOOT_ID = ["cat", "/proc/sys/kernel/random/boot_id"]
#: between two questions to a rebooting guest: each is an ssh login under emulation
RETRY = 2.0


def restart(lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
    """Reboot each machine and return once systemd in each has booted again."""
    if read_meta(lab).get("provider") == "docker":
        DockerProvider().engine.restart(lab, machines, progress)
        return
    before = {spec.name: _boot_id(lab, spec.name) for spec in machines}
    for spec in machines:
        progress(_("rebooting {name}").format(name=spec.name))
        try:
            res = exec_in(lab, spec.name, ["systemctl", "reboot"], timeout=30)
        except MachineUnavailable:
            res = None  # the connection went with the guest's sshd: the reboot is under way
        if res is not None and res.exit_code not in (0, 255) and not res.timed_out:
            raise ProvisioningError(
                _("machine `{name}` refused to reboot: {error}").format(
                    name=spec.name, error=(res.stderr or res.stdout)[-200:]
                )
            )
        Ssh(lab, spec.name).forget()  # the shared connection dies with the old boot
    for spec in machines:
        _wait_new_boot(lab, spec.name, before[spec.name])
        wait_ready(lab, spec.name, spec.init, progress)


def _boot_id(lab: LabRef, machine: str) -> str:
    res = exec_in(lab, machine, BOOT_ID, timeout=30)
    if not res.ok or not res.stdout.strip():
        raise ProvisioningError(
            _("cannot read the boot id of `{machine}`: {stderr}").format(
                machine=machine, stderr=res.stderr[-200:]
            )
        )
    return res.stdout.strip()


def _wait_new_boot(lab: LabRef, machine: str, old: str) -> None:
    """Until the machine answers with a boot id other than `old`."""
    deadline = time.monotonic() + VM_BOOT_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            res = exec_in(lab, machine, BOOT_ID, timeout=20)
            now = res.stdout.strip()
            if res.ok and now and now != old:
                return
            last = "still the old boot" if now == old else (res.stderr[-200:] or "no answer")
        except MachineUnavailable as exc:
            last = str(exc)
            Ssh(lab, machine).forget()
        time.sleep(RETRY)
    raise ProvisioningError(
        _(
            "machine `{machine}` of lab `{key}` did not come back from its reboot"
            " in {vm_boot_timeout} s (last: {last})"
        ).format(
            machine=machine, key=lab.key, vm_boot_timeout=format(VM_BOOT_TIMEOUT, "g"), last=last
        ),
        hint=_("look at its console: virsh console {lab}").format(lab=domain_name(lab, machine)),
    )
