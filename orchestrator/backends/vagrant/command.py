"""The `vagrant` command in a lab's directory, through python-vagrant.

Vagrant writes to the lab's `vagrant.log`; when a command fails, the error carries what
Vagrant said (without its Ruby backtrace) and a copy of the log kept outside the lab's
directory, which `down` removes.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from orchestrator import paths
from orchestrator.backends.contract import LabRef, Progress
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant.host import domain_name, lab_dir
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

#: lines of `vagrant up` that are settings, versions or advice rather than its steps
NOISE = re.compile(r" -- |version|metadata|https?://")


def vagrant_for(lab: LabRef) -> Any:
    """python-vagrant's handle on the lab's directory (python-vagrant loads only here)."""
    import vagrant

    log = lab_dir(lab) / "vagrant.log"
    env = {
        **os.environ,
        "VAGRANT_CHECKPOINT_DISABLE": "1",  # Vagrant would otherwise call home each run
        "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1",
        "LIBVIRT_DEFAULT_URI": libvirt.URI,
    }
    return vagrant.Vagrant(
        root=str(lab_dir(lab)),
        env=env,
        out_cm=vagrant.make_file_cm(str(log)),
        err_cm=vagrant.make_file_cm(str(log)),
    )


def failed(lab: LabRef, what: str, lines: Sequence[str]) -> ProvisioningError:
    """python-vagrant says only that a command failed: add what Vagrant printed."""
    log = lab_dir(lab) / "vagrant.log"
    tail = [ln.rstrip() for ln in lines[-4:]]
    with contextlib.suppress(OSError):
        # Vagrant's message, without the Ruby backtrace that follows it
        said = log.read_text(errors="replace").splitlines()[-60:]
        tail += [ln for ln in said if ln.strip() and not ln.lstrip().startswith("from ")][-8:]
    detail = "\n".join(t for t in tail if t.strip())
    # kept apart: `down` (or a test's clean-up) removes the lab's directory with its log
    kept = paths.ensure(paths.home() / "logs") / f"vagrant-{lab.key}.log"
    with contextlib.suppress(OSError):
        shutil.copyfile(log, kept)
        with open(kept, "a") as f:
            f.write("\n--- vagrant's stdout ---\n" + "".join(lines))
    failed = _("`vagrant {what}` failed in {folder}").format(what=what, folder=lab_dir(lab))
    return ProvisioningError(
        failed + (f":\n{detail}" if detail else ""),
        hint=_("see {kept}").format(kept=kept),
    )


def up(lab: LabRef, machine: str, provider: str, progress: Progress) -> None:
    """`vagrant up MACHINE`, its steps told to `progress`; a second try when the first
    failed for a passing reason (`worth_again`)."""
    for attempt in (1, 2):
        lines: list[str] = []
        try:
            for line in vagrant_for(lab).up(vm_name=machine, provider=provider, stream_output=True):
                lines.append(line)
                text = line.strip()
                # Vagrant's steps, not its settings table or its box-version advice
                if text.startswith("==>") and not NOISE.search(text):
                    progress(text.lstrip("=> ").strip())
            return
        except subprocess.CalledProcessError:
            error = failed(lab, f"up {machine} --provider {provider}", lines)
        if attempt == 2 or not worth_again(lab, machine, provider, str(error)):
            raise error
        progress(
            _("`vagrant up {machine}` failed ({error}); again").format(
                machine=machine, error=str(error).splitlines()[-1]
            )
        )


def worth_again(lab: LabRef, machine: str, provider: str, error: str) -> bool:
    """Whether a failed `vagrant up` failed for a passing reason, so a second try may do."""
    if provider == "libvirt":
        # vagrant-libvirt removes a domain that failed to start; seen once in a dozen
        # boots here, so a second attempt is worth its minute before giving up
        return not libvirt.domain_exists(domain_name(lab, machine))
    if provider == "docker":
        # Before it creates a container, Vagrant's docker provider inspects every
        # container of the host (its port-collision check, driver.rb `read_used_ports`):
        # one that another lab removes in between fails the `up` before ours exists
        return '"docker", "inspect"' in error and "No such object" in error
    return False


def ssh_config(lab: LabRef, machine: str) -> str:
    """`vagrant ssh-config MACHINE`: how plain ssh reaches it."""
    try:
        return str(vagrant_for(lab).ssh_config(vm_name=machine))
    except subprocess.CalledProcessError:
        raise MachineUnavailable(
            _("machine `{machine}` of lab `{key}` has no SSH address (is it running?)").format(
                machine=machine, key=lab.key
            ),
            hint=_("see {log}").format(log=lab_dir(lab) / "vagrant.log"),
        ) from None


def destroy(lab: LabRef) -> None:
    """`vagrant destroy --force`: every machine of the lab's Vagrantfile."""
    try:
        vagrant_for(lab).destroy()
    except subprocess.CalledProcessError:
        raise failed(lab, "destroy --force", []) from None
