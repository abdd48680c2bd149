"""Finding, creating and running commands in guestlab's LXD instances.

Functions of a Connection (lxd/connect.py): the backend hands them the connection it
opened once, so none of them reaches LXD on its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from orchestrator.backends import common
from orchestrator.backends.contract import LABEL_LAB, ExecResult, LabRef, MachineSpec, Progress
from orchestrator.backends.lxd.cluster import cluster_error
from orchestrator.backends.lxd.config import (
    CONFIG_PREFIX,
    disk_size,
    image_alias,
    instance_config,
    instance_name,
    root_disk,
)
from orchestrator.backends.lxd.connect import Connection
from orchestrator.backends.lxd.execution import ExecSession, kill_inside
from orchestrator.backends.lxd.host import create_lock, heal_quota, kill_exec, pool_quota_mode
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

if TYPE_CHECKING:
    from pylxd import Client
    from pylxd.models import Instance


@contextmanager
def api_errors(action: str, *, cluster: bool = False) -> Iterator[None]:
    """Turn LXD's API errors into one-sentence ProvisioningErrors ("LXD could not <action>");
    on a `cluster`, a member that does not answer or a lost quorum says so, with the fix."""
    from pylxd.exceptions import LXDAPIException

    try:
        yield
    except LXDAPIException as exc:
        said = cluster_error(action, exc) if cluster else None
        raise said or ProvisioningError(
            _("LXD could not {action}: {error}").format(action=action, error=exc)
        ) from exc


def get_instance(client: Client, lab: LabRef, machine: str, name: str | None = None) -> Instance:
    """The instance of a lab's machine (named `name` when given: on a cluster, its newest
    incarnation), or MachineUnavailable saying to bring the lab up."""
    from pylxd.exceptions import NotFound

    name = name or instance_name(lab, machine)
    try:
        return client.instances.get(name)
    except NotFound:
        raise MachineUnavailable(
            _("machine `{machine}` of lab `{key}` does not exist (LXD instance {name})").format(
                machine=machine, key=lab.key, name=name
            ),
            hint=_("bring the lab up first: guestlab up"),
        ) from None


def running_instance(
    client: Client, lab: LabRef, machine: str, name: str | None = None
) -> Instance:
    """The instance of a lab's machine if it runs, else MachineUnavailable with the fix."""
    inst = get_instance(client, lab, machine, name)
    if inst.status != "Running":
        raise MachineUnavailable(
            _("machine `{machine}` of lab `{key}` is {status}").format(
                machine=machine, key=lab.key, status=inst.status.lower()
            ),
            hint=_("start it: lxc start {name}").format(name=inst.name),
        )
    return inst


def labelled(client: Client) -> list[Instance]:
    """Every instance carrying a guestlab lab label (one API call with config)."""
    instances = client.instances.all(recursion=1)
    return [i for i in instances if (i.config or {}).get(CONFIG_PREFIX + LABEL_LAB)]


def refuse_existing(client: Client, spec: MachineSpec, name: str) -> None:
    """ProvisioningError when the instance `name` for `spec` already exists."""
    common.refuse_existing(spec.lab, spec.name, exists=client.instances.exists(name), where=name)


def instance_request(
    conn: Connection,
    spec: MachineSpec,
    name: str,
    *,
    source: dict[str, Any],
    description: str,
    progress: Progress,
) -> dict[str, Any]:
    """What LXD is asked to create for `spec`: its source, root disk, labels and limits."""
    return {
        "name": name,
        "description": description,
        "source": source,
        # no profile: its devices (a nic above all) are not ours to inherit
        "profiles": [],
        "devices": {"root": root_disk_for(conn, spec, name, progress)},
        # given keys override a copied config: the machine's own labels and limits;
        # volatile.idmap.* are not copied, so a copy gets an id range of its own
        "config": instance_config(spec),
    }


def root_disk_for(
    conn: Connection, spec: MachineSpec, name: str, progress: Progress
) -> dict[str, str]:
    """The root disk on the chosen pool, `spec.disk` beyond the image where LXD can
    enforce a size; where it cannot (a `dir` pool), a progress line says so."""
    if conn.local and conn.driver == "btrfs":
        heal_quota(conn.pool, conn.server)  # a bound the kernel stopped enforcing is none
    if not conn.disk_bounded:
        progress(
            f"storage pool `{conn.pool}` ({conn.driver}) cannot bound the disk of {name}:"
            " it may fill the host's file system"
        )
        return root_disk(conn.pool, None)
    try:
        image_bytes = int(conn.client.images.get_by_alias(image_alias(spec.image)).size)
    except Exception:
        image_bytes = 0  # a copy of a machine whose image went: its own bound only
    # simple quotas charge the image's files to the image: the machine's own writes only
    owned_only = conn.local and conn.driver == "btrfs" and pool_quota_mode(conn.pool) == "squota"
    return root_disk(conn.pool, disk_size(spec, image_bytes, conn.driver, owned_only=owned_only))


def create_started(
    conn: Connection, request: dict[str, Any], target: str | None = None
) -> Instance:
    """Create the instance (on cluster member `target`, else where LXD puts it; one
    creation at a time from this host on one server: create_lock) and start it; LXD's
    API errors pass through."""
    with create_lock(conn.server):
        inst = conn.client.instances.create(request, wait=True, target=target)
    inst.start(wait=True)
    return inst


def kill_elsewhere(client: Client, instance: str, marker: str) -> int:
    """A command's process tree killed from this host when LXD runs here under another
    address (its HTTPS endpoint), else from a second exec in the machine."""
    return kill_exec(instance, marker) or kill_inside(client, instance, marker)


def execute(conn: Connection, inst: Instance, argv: Sequence[str], timeout: float) -> ExecResult:
    """Run argv over LXD's exec websockets, bounded in time and output (lxd/execution.py)."""
    from pylxd.exceptions import LXDAPIException
    from ws4py.exc import HandshakeError

    kill = kill_exec if conn.local else partial(kill_elsewhere, conn.client)
    session = ExecSession(conn.client, inst.name, argv, timeout, kill, conn.tls)
    try:
        return session.run()
    except LXDAPIException as exc:
        if "not running" in str(exc).lower():
            raise MachineUnavailable(
                _("LXD instance {name} is not running").format(name=inst.name)
            ) from exc
        raise ProvisioningError(
            _("exec in LXD instance {name} failed: {error}").format(name=inst.name, error=exc)
        ) from exc
    except (OSError, HandshakeError) as exc:  # a websocket that could not connect or broke
        raise ProvisioningError(
            _("exec in LXD instance {name} failed: {error}").format(name=inst.name, error=exc)
        ) from exc
