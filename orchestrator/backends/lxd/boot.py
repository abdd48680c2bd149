"""A started LXD instance made ready: wait until it runs commands (or systemd settled),
then give it its hostname and keep an inner Docker off btrfs subvolumes.

LXD system containers always boot the image's init: a machine whose spec says
`init: none` still runs systemd inside; guestlab only skips waiting for it to settle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.backends.common import CONTAINER_BOOT_TIMEOUT, wait_for_answer, wait_for_systemd
from orchestrator.backends.contract import SYSTEMD_READY, MachineSpec, Progress
from orchestrator.backends.lxd.config import INNER_DOCKER_SCRIPT
from orchestrator.backends.lxd.connect import Connection
from orchestrator.backends.lxd.machines import execute
from orchestrator.errors import ProvisioningError
from orchestrator.messages import _

if TYPE_CHECKING:
    from pylxd.models import Instance

READY_TIMEOUT = CONTAINER_BOOT_TIMEOUT


def wait_ready(conn: Connection, inst: Instance, init: str, progress: Progress) -> None:
    """Block until the machine runs commands (init none) or systemd settled."""
    from pylxd.exceptions import LXDAPIException

    progress(_("waiting for {name} to boot").format(name=inst.name))
    what = f"LXD instance {inst.name}"
    hint = f"look inside: lxc exec {inst.name} -- systemctl --failed"

    def answers(timeout: float) -> str | None:
        try:
            res = execute(conn, inst, ["true"], timeout)
        except (LXDAPIException, ProvisioningError) as exc:
            return str(exc)  # early in boot LXD may refuse exec: try again
        return None if res.ok else (res.stderr.strip() or f"exit {res.exit_code}")

    def state(timeout: float) -> str:
        try:
            res = execute(conn, inst, list(SYSTEMD_READY), timeout)
        except (LXDAPIException, ProvisioningError) as exc:
            return str(exc)  # early in boot LXD may refuse exec: try again
        return res.stdout.strip() or res.stderr.strip()

    if init == "none":
        wait_for_answer(what, answers, timeout=READY_TIMEOUT, hint=hint)
    else:
        wait_for_systemd(what, state, timeout=READY_TIMEOUT, hint=hint)


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
            _("cannot set the hostname of {name} or configure its Docker engine: {error}").format(
                name=inst.name, error=res.stderr.strip() or res.exit_code
            )
        )
