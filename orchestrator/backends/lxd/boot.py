"""A started LXD instance made ready: wait until it runs commands (or systemd settled),
then give it its hostname and keep an inner Docker off btrfs subvolumes.

LXD system containers always boot the image's init: a machine whose spec says
`init: none` still runs systemd inside; guestlab only skips waiting for it to settle.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrator.backends.base import SYSTEMD_READY, MachineSpec, Progress
from orchestrator.backends.lxd.config import INNER_DOCKER_SCRIPT
from orchestrator.backends.lxd.connect import Connection
from orchestrator.backends.lxd.machines import execute
from orchestrator.errors import MachineUnavailable, ProvisioningError

if TYPE_CHECKING:
    from pylxd.models import Instance

READY_TIMEOUT = 60.0


def wait_ready(conn: Connection, inst: Instance, init: str, progress: Progress) -> None:
    """Block until the machine runs commands (init none) or systemd settled."""
    from pylxd.exceptions import LXDAPIException

    progress(f"waiting for {inst.name} to boot")
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            if init == "none":
                res = execute(conn, inst, ["true"], 10)
                if res.ok:
                    return
                last = res.stderr.strip() or f"exit {res.exit_code}"
            else:
                res = execute(conn, inst, list(SYSTEMD_READY), 10)
                last = res.stdout.strip() or res.stderr.strip() or last
                if last in ("running", "degraded"):
                    return
                # "offline" also means "PID 1 has not opened its socket yet": keep waiting
                if last in ("maintenance", "stopping"):
                    break
        except MachineUnavailable:
            last = "the instance stopped"
            break
        except (LXDAPIException, ProvisioningError) as exc:
            last = str(exc)  # early in boot LXD may refuse exec: try again
        time.sleep(0.1)  # the bus is not up yet: --wait cannot wait for it
    raise ProvisioningError(
        f"LXD instance {inst.name} did not become ready (waited at most "
        f"{READY_TIMEOUT:g} s; last state: {last})",
        hint=f"look inside: lxc exec {inst.name} -- systemctl --failed",
    )


def settle(conn: Connection, inst: Instance, spec: MachineSpec) -> None:
    """Set the hostname, and keep an inner Docker off btrfs subvolumes, in one exec.

    LXD names the UTS namespace after the instance and the image says localhost.
    Done once the machine is up, not by pushing /etc/hostname before the first start:
    a file written into a never-started instance costs LXD about a second at that
    start and half a second at delete (measured), more than the whole exec here.
    The Docker part (config.INNER_DOCKER_SCRIPT) restarts dockerd where there is one:
    about a second, in those machines only.
    """
    hostname = spec.hostname or spec.name
    script = 'printf "%s\\n" "$1" > /etc/hostname && hostname "$1" || exit 1\n'
    script += INNER_DOCKER_SCRIPT
    res = execute(conn, inst, ["sh", "-c", script, "sh", hostname], 60)
    if not res.ok:
        raise ProvisioningError(
            f"cannot set the hostname of {inst.name} or configure its Docker engine:"
            f" {res.stderr.strip() or res.exit_code}"
        )
