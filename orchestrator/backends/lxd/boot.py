"""A started LXD instance made ready: wait until it runs commands (or systemd settled),
then give it its hostname and keep an inner Docker off btrfs subvolumes (for a systemd
machine in the exec that saw the boot end: `boot_and_settle`).

LXD system containers always boot the image's init: a machine whose spec says
`init: none` still runs systemd inside; guestlab only skips waiting for it to settle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestrator.backends.common import CONTAINER_BOOT_TIMEOUT, wait_for_answer, wait_for_systemd
from orchestrator.backends.contract import SYSTEMD_READY, ExecResult, MachineSpec, Progress
from orchestrator.backends.lxd.config import INNER_DOCKER_SCRIPT
from orchestrator.backends.lxd.connect import Connection
from orchestrator.backends.lxd.machines import execute
from orchestrator.errors import ProvisioningError
from orchestrator.messages import _

if TYPE_CHECKING:
    from pylxd.models import Instance

READY_TIMEOUT = CONTAINER_BOOT_TIMEOUT
#: seconds the hostname and the inner Docker's restart may take
SETTLE_TIMEOUT = 60.0


def wait_ready(conn: Connection, inst: Instance, init: str, progress: Progress) -> None:
    """Block until the machine runs commands (init none) or systemd settled."""
    progress(_("waiting for {name} to boot").format(name=inst.name))

    def answers(timeout: float) -> str | None:
        res = _run(conn, inst, ["true"], timeout)
        if isinstance(res, str):
            return res
        return None if res.ok else (res.stderr.strip() or f"exit {res.exit_code}")

    def state(timeout: float) -> str:
        res = _run(conn, inst, list(SYSTEMD_READY), timeout)
        return res if isinstance(res, str) else res.stdout.strip() or res.stderr.strip()

    if init == "none":
        wait_for_answer(_what(inst), answers, timeout=READY_TIMEOUT, hint=_hint(inst))
    else:
        wait_for_systemd(_what(inst), state, timeout=READY_TIMEOUT, hint=_hint(inst))


def settle_script() -> str:
    """The shell script that names a machine ($1) and configures an inner Docker."""
    script = 'printf "%s\\n" "$1" > /etc/hostname && hostname "$1" || exit 1\n'
    return script + INNER_DOCKER_SCRIPT


#: the boot's end and the settling in one exec: the state systemd settled in, on its own
#: line, and only then (running or degraded: common.read_state's ready states) the
#: settling; a state not ready exits 0 with nothing done, to be asked again
BOOTED_THEN_SETTLE = (
    's=$(systemctl is-system-running --wait); printf "%s\\n" "$s"\n'
    'case "$s" in running|degraded) ;; *) exit 0 ;; esac\n'
)


def boot_and_settle(
    conn: Connection, inst: Instance, spec: MachineSpec, progress: Progress
) -> None:
    """`wait_ready`, then `settle`: for a systemd machine in the same exec as the last
    question about its boot, which saves one exec (tens of ms, more on a busy host) on
    the way of every `up` and pool claim; what the machine gets, and when, is the same."""
    if spec.init == "none":
        wait_ready(conn, inst, spec.init, progress)
        settle(conn, inst, spec)
        return
    progress(_("waiting for {name} to boot").format(name=inst.name))
    argv = ["sh", "-c", BOOTED_THEN_SETTLE + settle_script(), "sh", spec.hostname or spec.name]

    def state(timeout: float) -> str:
        # the boot's share of the time, and the settling's own as `settle` gives it
        res = _run(conn, inst, argv, timeout + SETTLE_TIMEOUT)
        if isinstance(res, str):
            return res
        said = res.stdout.strip().splitlines()
        first = said[0].strip() if said else ""
        if first in ("running", "degraded") and not res.ok:
            raise settle_failed(inst, res.stderr.strip() or str(res.exit_code))
        return first or res.stderr.strip()

    wait_for_systemd(_what(inst), state, timeout=READY_TIMEOUT, hint=_hint(inst))


def _run(conn: Connection, inst: Instance, argv: list[str], timeout: float) -> ExecResult | str:
    """The command's result, or why LXD would not run it (early in boot it may refuse
    exec: the caller asks again)."""
    from pylxd.exceptions import LXDAPIException

    try:
        return execute(conn, inst, argv, timeout)
    except (LXDAPIException, ProvisioningError) as exc:
        return str(exc)


def _what(inst: Instance) -> str:
    return f"LXD instance {inst.name}"


def _hint(inst: Instance) -> str:
    return f"look inside: lxc exec {inst.name} -- systemctl --failed"


def settle_failed(inst: Instance, error: str) -> ProvisioningError:
    return ProvisioningError(
        _("cannot set the hostname of {name} or configure its Docker engine: {error}").format(
            name=inst.name, error=error
        )
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
    res = execute(conn, inst, ["sh", "-c", settle_script(), "sh", hostname], SETTLE_TIMEOUT)
    if not res.ok:
        raise settle_failed(inst, res.stderr.strip() or str(res.exit_code))
