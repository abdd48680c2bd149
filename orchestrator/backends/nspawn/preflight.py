"""Whether systemd-nspawn can run machines here, and how it runs them (`guestlab doctor`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable

from orchestrator.backends.contract import Availability
from orchestrator.backends.nspawn.seccomp import volume_ioctl_filter
from orchestrator.backends.nspawn.store import Trees
from orchestrator.messages import _


def availability(route: Callable[[], str]) -> Availability:
    """Usable when systemd-nspawn is installed, runs, and guestlab is root; `route` says how
    machines would run (asked only then: it may look at the store)."""
    try:
        volume_ioctl_filter(os.uname().machine)  # UnsupportedMachine: no filter, no machine
        nspawn = shutil.which("systemd-nspawn")
        if nspawn is None:
            return Availability(
                False, _("systemd-nspawn is not installed"), "apt-get install -y systemd-container"
            )
        if os.geteuid() != 0:
            return Availability(
                False,
                _("systemd-nspawn needs root and guestlab runs as uid {uid}").format(
                    uid=os.geteuid()
                ),
                _("run guestlab as root (sudo)"),
            )
        out = subprocess.run(
            [nspawn, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        if out.returncode != 0:
            return Availability(
                False,
                _("`systemd-nspawn --version` failed: {stderr}").format(
                    stderr=out.stderr.strip()[:200]
                ),
                "apt-get install --reinstall -y systemd-container",
            )
        version = out.stdout.splitlines()[0].strip() if out.stdout else "systemd-nspawn"
        return Availability(True, f"{version} ({route()})")
    except Exception as exc:  # availability reports, it never raises
        return Availability(False, _("cannot run systemd-nspawn: {error}").format(error=exc), "")


def route(machined: bool, private_users: bool, trees: Trees) -> str:
    """How machines run here: machined or not, private users or not, which store."""
    registered = (
        _("registered with systemd-machined")
        if machined
        else _("host PID 1 is not systemd: --register=no --keep-unit")
    )
    users = _("private users") if private_users else _("NO private users")
    where = _("{kind} in {root}").format(kind=trees.kind, root=trees.root)
    return f"{registered}; {users}; {where}"


def no_private_users() -> str:
    """The risk of machines without private users (`up` refuses them unless asked)."""
    return _(
        "nspawn machines run without private users here (user namespaces are off or"
        " GUESTLAB_NSPAWN_PRIVATE_USERS=no): root in a machine is root on the host"
    )
