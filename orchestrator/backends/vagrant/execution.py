"""Commands and files in a machine, and the waits for a booting one.

A VM is reached over plain ssh (ssh.py) with the address `vagrant ssh-config` gave; a
container of Vagrant's docker provider through the docker backend, which named it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from orchestrator.backends.common import VM_BOOT_TIMEOUT, wait_for_systemd
from orchestrator.backends.contract import SYSTEMD_READY, ExecResult, LabRef, Progress
from orchestrator.backends.vagrant import command, libvirt
from orchestrator.backends.vagrant.docker_provider import docker_backend
from orchestrator.backends.vagrant.host import domain_name, lab_dir
from orchestrator.backends.vagrant.labdir import read_meta
from orchestrator.backends.vagrant.ssh import Ssh
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

#: between two tries of ssh while a VM boots: each try costs the emulated guest a login
SSH_RETRY = 2.0


def _missing(lab: LabRef, machine: str) -> MachineUnavailable:
    return MachineUnavailable(
        _("machine `{machine}` of lab `{key}` does not exist").format(machine=machine, key=lab.key),
        hint=_("bring the lab up first: guestlab up"),
    )


def ssh_for(lab: LabRef, machine: str) -> Ssh:
    """The machine over ssh, asking Vagrant for its ssh-config the first time."""
    ssh = Ssh(lab, machine)
    if ssh.config.exists():
        return ssh
    if machine not in read_meta(lab).get("machines", {}):
        raise _missing(lab, machine)
    ssh.save_config(command.ssh_config(lab, machine))
    return ssh


def domain_running(lab: LabRef, machine: str, *, exact: bool = True) -> bool:
    """Whether the machine's libvirt domain runs (always true for other providers). Not
    `exact`: a live QEMU process is taken for running (a paused one is not told apart)."""
    if read_meta(lab).get("provider") != "libvirt":
        return True
    dom = domain_name(lab, machine)
    if not exact and libvirt.qemu_alive(dom):
        return True
    return libvirt.domain_state(dom) == "running"


def exec_in(lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
    """Run argv as root in the machine: the backend's `exec`."""
    meta = read_meta(lab)
    if machine not in meta.get("machines", {}):
        raise _missing(lab, machine)
    if meta["provider"] == "docker":
        return docker_backend().exec(lab, machine, argv, timeout=timeout)
    not_running = MachineUnavailable(
        _("machine `{machine}` of lab `{key}` is not running").format(machine=machine, key=lab.key),
        hint=_("start it: cd {lab} && vagrant up {machine}").format(
            lab=lab_dir(lab), machine=machine
        ),
    )
    if not domain_running(lab, machine, exact=False):
        # asked first: ssh to a VM that vanished would wait for its timeouts
        raise not_running
    try:
        return ssh_for(lab, machine).run(argv, timeout=timeout)
    except MachineUnavailable:
        if not domain_running(lab, machine):
            raise not_running from None
        # the VM runs: its address may have changed; ask Vagrant again, once
        Ssh(lab, machine).forget()
        ssh = ssh_for(lab, machine)
        result = ssh.run(argv, timeout=timeout)
        ssh.settle_login()  # it answers again (a reboot): root's own login, as after `up`
        return result


def put_file(lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
    """Write `data` to `dest` in the machine, owned by root, with `mode`."""
    if read_meta(lab).get("provider") == "docker":
        docker_backend().put_file(lab, machine, dest, data, mode)
        return
    ssh_for(lab, machine).put_file(dest, data, mode)


def shell_argv(lab: LabRef, machine: str) -> list[str]:
    """The host command that opens a root shell in the machine."""
    if read_meta(lab).get("provider") == "docker":
        return docker_backend().shell_argv(lab, machine)
    return Ssh(lab, machine).shell_argv()


def attach_argv(lab: LabRef, machine: str, argv: Sequence[str], *, tty: bool) -> list[str]:
    """The host command that runs argv as root in the machine, on the caller's streams."""
    if read_meta(lab).get("provider") == "docker":
        return docker_backend().attach_argv(lab, machine, argv, tty=tty)
    return ssh_for(lab, machine).attach_argv(argv, tty=tty)


def wait_ssh(lab: LabRef, machine: str) -> None:
    """Until `vagrant ssh-config` knows an address and a command runs over it.

    Not common.wait_for_answer: its pace (a tenth of a second) suits an exec into a
    container, while every try here is an ssh login to a guest under emulation.
    """
    deadline = time.monotonic() + VM_BOOT_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            res = ssh_for(lab, machine).run(["true"], timeout=20)
            if res.ok:
                return
            last = (res.stderr or res.stdout).strip()[-200:] or f"exit {res.exit_code}"
        except MachineUnavailable as exc:
            last = str(exc)
            Ssh(lab, machine).forget()
            if not domain_running(lab, machine):
                break
        time.sleep(SSH_RETRY)
    raise ProvisioningError(
        _("machine `{machine}` of lab `{key}` does not answer over SSH (last: {last})").format(
            machine=machine, key=lab.key, last=last
        ),
        hint=_("look at its console: virsh console {lab}").format(lab=domain_name(lab, machine)),
    )


def wait_ready(lab: LabRef, machine: str, init: str, progress: Progress) -> None:
    """Until systemd in the VM has finished booting: common.wait_for_systemd's reading of
    each state, with a VM's deadline. Then its commands are made to log in as root."""
    if init == "none":
        ssh_for(lab, machine).settle_login()  # wait_ssh has seen a command answer
        return
    progress(_("waiting for systemd in {machine}").format(machine=machine))

    def state(t: float) -> str:
        res = exec_in(lab, machine, list(SYSTEMD_READY), timeout=t)
        return res.stdout.strip() or ("no answer" if res.timed_out else res.stderr[:200])

    wait_for_systemd(
        f"machine `{machine}` of lab `{lab.key}`",
        state,
        timeout=VM_BOOT_TIMEOUT,
        hint=f"look inside: guestlab exec ... {machine} -- systemctl --failed",
    )
    ssh_for(lab, machine).settle_login()
