"""Where a lab's instances are: their names, and on an LXD cluster the member they are on.

On one LXD a machine's instance name is `config.instance_name` and creation goes where
LXD is. On a cluster (lxd/cluster.py) a lab's machines, copies and snapshots stay on one
member, a lab made again while its member is offline gets new names (its newest
incarnation), and a machine on an offline member is MemberUnreachable at once. Nothing
of the cluster path runs for a LXD that is not one: `Connection.clustered` decides.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrator.backends.contract import LabRef
from orchestrator.backends.lxd.cluster import (
    ClusterView,
    MemberSilent,
    MemberState,
    Placement,
    lab_member,
    member_memory,
    members,
    unreachable,
)
from orchestrator.backends.lxd.config import instance_name
from orchestrator.backends.lxd.connect import Connection
from orchestrator.backends.lxd.machines import api_errors, create_started, get_instance
from orchestrator.backends.lxd.machines import running_instance as running_named

if TYPE_CHECKING:
    from pylxd.models import Instance


#: how long a member LXD lists as online may fail to answer before its labs are unreachable
SILENT_GRACE = 30.0


class Sites:
    """The instance names and members of one backend's labs (shared by its threads)."""

    def __init__(self) -> None:
        self.placement = Placement()
        self.view = ClusterView()

    # -- names and instances ---------------------------------------------------------------

    def name(self, conn: Connection, lab: LabRef, machine: str, *, new: bool = False) -> str:
        """The machine's instance name: on a cluster, of the lab's newest incarnation (the
        next one, `new`, when the newest is held by an offline member)."""
        if not conn.clustered:
            return instance_name(lab, machine)
        return self.view.name(conn.client, lab, machine, new=new)

    def instance(self, conn: Connection, lab: LabRef, machine: str) -> Instance:
        """The machine's instance, or MachineUnavailable saying to bring the lab up."""
        if not conn.clustered:
            return get_instance(conn.client, lab, machine)
        name = self.name(conn, lab, machine)
        with api_errors(f"reach {name}", cluster=True):
            return get_instance(conn.client, lab, machine, name)

    def running(self, conn: Connection, lab: LabRef, machine: str) -> Instance:
        """The machine's running instance; on a cluster, MemberUnreachable at once when
        its member is offline (LXD would wait for it ten seconds, then fail)."""
        if not conn.clustered:
            return running_named(conn.client, lab, machine)
        what = f"machine `{machine}` of lab `{lab.key}`"
        name = self.name(conn, lab, machine)
        deadline, pause = time.monotonic() + SILENT_GRACE, 1.0
        while True:
            member = self.view.offline_member_of(conn.client, name)
            if member:
                raise unreachable(member, what)
            try:
                with api_errors(f"reach {name}", cluster=True):
                    return running_named(conn.client, lab, machine, name)
            except MemberSilent as exc:
                # LXD still lists the member online: it is busy, or reconnecting after
                # another member's loss, or lost and not noticed yet (LXD's offline
                # threshold, 20 s by default): ask again until LXD knows which
                if time.monotonic() + pause > deadline:
                    where = self.view.location(conn.client, name) or "?"
                    raise unreachable(where, what, silent=True) from exc
                time.sleep(pause)
                pause = min(2 * pause, 5.0)

    # -- creation ----------------------------------------------------------------------------

    def create(
        self, conn: Connection, lab: LabRef, request: dict[str, Any], action: str
    ) -> Instance:
        """Create and start an instance where its lab is: on a cluster, the member of the
        lab's machines, else the one asked for (`place`) or the one LXD's scheduler picks."""
        ops = self.placement
        if not conn.clustered:
            with api_errors(action):
                return create_started(conn, request)
        with ops.first_machine(lab.key):
            member = ops.known(lab.key) or lab_member(conn.client, lab.key)
            if member is None:
                with api_errors(action, cluster=True), ops.operation():
                    inst = create_started(conn, request, ops.wanted(lab.key))
                ops.record(lab.key, inst.location)
                self.view.add(inst.name, inst.location)
                return inst
        ops.record(lab.key, member)
        with api_errors(action, cluster=True), ops.operation():
            inst = create_started(conn, request, member)
        self.view.add(inst.name, member)
        return inst

    def copy(
        self, conn: Connection, src: Instance, request: dict[str, Any], action: str
    ) -> Instance:
        """Create and start a copy of `src`: on a cluster, on its source's member (LXD
        cannot copy a running container across members)."""
        if not conn.clustered:
            with api_errors(action):
                return create_started(conn, request)
        member = getattr(src, "location", None) or None
        with api_errors(action, cluster=True), self.placement.operation():
            inst = create_started(conn, request, member)
        self.view.add(inst.name, getattr(inst, "location", None) or member or "")
        return inst

    # -- the cluster's members -------------------------------------------------------------

    def place(self, lab: LabRef, member: str | None) -> None:
        """Put the lab's machines on cluster member `member` (None: LXD's scheduler)."""
        self.placement.want(lab.key, member)

    def members(self, conn: Connection) -> dict[str, MemberState]:
        """The cluster's members and their state; empty when LXD is not a cluster."""
        return members(conn.client) if conn.clustered else {}

    def memory_by_member(self, conn: Connection) -> dict[str, int]:
        """Bytes free on each online member of a cluster (empty when not one)."""
        online = [m.name for m in self.members(conn).values() if m.online]
        return {m: member_memory(conn.client, m) for m in online}

    def where(
        self, conn: Connection, labs: Sequence[tuple[LabRef, Sequence[str]]]
    ) -> dict[str, str]:
        """The member each of these labs (and its machines) is on, by lab key; empty when
        LXD is not a cluster. By instance name: LXD gives no config of an instance whose
        member is offline, only its name and member."""
        if not conn.clustered:
            return {}
        at = self.view.names(conn.client, fresh=True)
        out: dict[str, str] = {}
        for ref, machines in labs:
            found = [at[n] for n in (self.name(conn, ref, m) for m in machines) if at.get(n)]
            if found:
                out[ref.key] = found[0]
        return out
