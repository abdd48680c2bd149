"""LXD backend: system containers through pylxd.

Every instance is created with an explicit device set (a root disk and nothing else) and
no profile, so machines sit on no network and guestlab never touches the default profile.
The `user.guestlab.*` config keys are the labels `find` and `destroy` trust. Every
instance's seccomp policy refuses btrfs's subvolume ioctls (config.SECCOMP_DENY): a
subvolume made inside would escape the disk bound.

The lifecycle is here; what it stands on is a module each: the instance's config
(config.py), reaching LXD (connect.py), finding, creating and exec-ing instances
(machines.py, execution.py), files in machines (files.py), waiting for boot (boot.py),
images (image.py), removal (cleanup.py) and what guestlab does on the LXD host itself
(host.py).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from orchestrator import paths
from orchestrator.backends.common import Connector
from orchestrator.backends.contract import (
    LABEL_LAB,
    LABEL_MACHINE,
    LABEL_STORE,
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.lxd import remote_cli
from orchestrator.backends.lxd.boot import settle, wait_ready
from orchestrator.backends.lxd.cleanup import delete_instance, drop_exec_logs
from orchestrator.backends.lxd.config import (
    CONFIG_PREFIX,
    SNAPSHOT,
    image_alias,
    instance_name,
    is_isolated,
)
from orchestrator.backends.lxd.connect import Connection, available_memory, open_connection
from orchestrator.backends.lxd.files import LxdFiles
from orchestrator.backends.lxd.host import heal_quota, pool_lock, remove_logs
from orchestrator.backends.lxd.image import ensure_image
from orchestrator.backends.lxd.image import remove_image as remove_lxd_image
from orchestrator.backends.lxd.machines import (
    api_errors,
    execute,
    instance_request,
    labelled,
    refuse_existing,
)
from orchestrator.backends.lxd.placing import Sites
from orchestrator.errors import (
    BackendUnavailable,
    MachineUnavailable,
    ProvisioningError,
)
from orchestrator.messages import _, speaking

#: what `lxc exec` runs around a session's command. When the command ends, LXD 5.0's `lxc`
#: may exit before it has passed on the last output (seen: a shell's last lines, and the
#: "not found" of a missing command: LXD fails the operation on exit status 126 or 127,
#: and `lxc` then prints "Error: Command not found" and leaves at once); a pause before
#: the exit, longer for those two, lets it. The exit status is the command's.
DRAINED = (
    "sh",
    "-c",
    '"$@"; c=$?; case $c in 126|127) sleep 1 ;; *) sleep 0.3 ;; esac; exit $c',
    "sh",
)
#: seconds a machine's systemd has to shut down on a restart before LXD stops it by force
RESTART_GRACE = 30

if TYPE_CHECKING:
    from pylxd import Client
    from pylxd.models import Instance


class LxdBackend(LxdFiles):
    """Machines as LXD system containers."""

    name = "lxd"
    capabilities = frozenset({"systemd", "clone", "snapshot", "nested"})
    virtualization = "lxc"

    def __init__(self) -> None:
        self._connector = Connector("LXD", open_connection)
        self._sites = Sites()

    @property
    def pool(self) -> str | None:
        """The storage pool machines go to, once availability() has been asked."""
        conn = self._connector.current
        return conn.pool if conn else None

    # -- connection ------------------------------------------------------------------

    def client(self) -> Client:
        """The shared pylxd client, or BackendUnavailable with the fix."""
        return self._connection().client

    def available_memory(self) -> int:
        """Bytes of memory the LXD server has free for new machines, by its own account
        (connect.available_memory)."""
        return available_memory(self.client())

    def clustered(self) -> bool:
        """Whether this LXD is a cluster (its members place labs)."""
        return self._connection().clustered

    def offline_members(self) -> set[str]:
        """The cluster's members that do not answer; none when LXD is not a cluster."""
        return {m.name for m in self._sites.members(self._connection()).values() if not m.online}

    def memory_by_member(self) -> dict[str, int]:
        """Bytes free on each online member of a cluster (empty when not one)."""
        return self._sites.memory_by_member(self._connection())

    def place(self, lab: LabRef, member: str | None) -> None:
        """Put the lab's machines on cluster member `member` (None: LXD's scheduler)."""
        self._sites.place(lab, member)

    def placement(self, labs: Sequence[tuple[LabRef, Sequence[str]]]) -> dict[str, str]:
        """The member each of these labs is on, by lab key (lxd/placing.py)."""
        return self._sites.where(self._connection(), labs)

    def _connection(self) -> Connection:
        return self._connector.get()

    def availability(self) -> Availability:
        return self._connector.check()

    def host_root_risk(self) -> str | None:
        """None when every guestlab machine on this LXD is unprivileged with an id map of
        its own (what `create` makes); else the machines that are not."""
        try:
            shared = [i.name for i in labelled(self.client()) if not is_isolated(i.config or {})]
        except (BackendUnavailable, OSError):
            return None  # no LXD here: no machine of it either
        if not shared:
            return None
        names = ", ".join(sorted(shared)[:5]) + (" ..." if len(shared) > 5 else "")
        return (
            f"{len(shared)} LXD machine(s) ({names}) run privileged or share one uid map"
            " with other labs (made by an older guestlab): root in one of them is the same"
            " host uid as root in the others; recreate them (guestlab down, then up)"
        )

    # -- images ------------------------------------------------------------------------

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        ensure_image(self.client(), image, progress, build=build)

    def remove_image(self, image: str) -> bool:
        return remove_lxd_image(self.client(), image)

    # -- machines ----------------------------------------------------------------------

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        conn = self._connection()
        name = self._sites.name(conn, spec.lab, spec.name, new=True)
        refuse_existing(conn.client, spec, name)
        self.ensure_image(spec.image, progress, build=False)
        request = instance_request(
            conn,
            spec,
            name,
            source={"type": "image", "alias": image_alias(spec.image)},
            description=f"guestlab {spec.lab.key} {spec.name}",
            progress=progress,
        )
        progress(_("creating {name} from {image}").format(name=name, image=image_alias(spec.image)))
        inst = self._sites.create(conn, spec.lab, request, _("create {name}").format(name=name))
        wait_ready(conn, inst, spec.init, progress)
        settle(conn, inst, spec)

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        conn = self._connection()
        return execute(conn, self._sites.running(conn, lab, machine), argv, timeout)

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        self._copy(source, target, progress, start=False)

    def clone_start(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        """A new machine from `source`'s starting snapshot (what `up` saved)."""
        self._copy(source, target, progress, start=True)

    def _copy(
        self, source: MachineSpec, target: MachineSpec, progress: Progress, *, start: bool
    ) -> None:
        conn = self._connection()
        if start:
            src = self._sites.instance(conn, source.lab, source.name)
            if SNAPSHOT not in {snap.name for snap in src.snapshots.all()}:
                raise ProvisioningError(
                    _("machine `{name}` has no starting snapshot").format(name=source.name)
                )
        else:
            src = self._sites.running(conn, source.lab, source.name)
        origin = f"{src.name}/{SNAPSHOT}" if start else src.name
        name = self._sites.name(conn, target.lab, target.name, new=True)
        refuse_existing(conn.client, target, name)
        request = instance_request(
            conn,
            target,
            name,
            # LXD 5.0 copies a running container without stopping it (a stateless copy),
            # file for file, /etc/machine-id included: what `lxc copy` users get
            source={"type": "copy", "source": origin, "instance_only": True},
            description=f"guestlab {target.lab.key} {target.name} (copy of {origin})",
            progress=progress,
        )
        progress(_("copying {origin} to {name}").format(origin=origin, name=name))
        action = _("copy {origin} to {name}").format(origin=origin, name=name)
        inst = self._sites.copy(conn, src, request, action)
        with api_errors(action, cluster=conn.clustered):
            src.sync()
            if not start and src.status != "Running":  # the source must stay up
                src.start(wait=True)
        wait_ready(conn, inst, target.init, progress)
        settle(conn, inst, target)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        conn = self._connection()
        for spec in machines:
            inst = self._sites.instance(conn, lab, spec.name)
            with api_errors(_("snapshot {name}").format(name=inst.name), cluster=conn.clustered):
                # snapshots.all() gives name-only objects: .get() would warn about every
                # field newer LXD returns that pylxd does not know
                with pool_lock(conn.pool, conn.server):
                    for snap in (s for s in inst.snapshots.all() if s.name == SNAPSHOT):
                        snap.delete(wait=True)
                inst.snapshots.create(SNAPSHOT, stateful=False, wait=True)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        conn = self._connection()
        insts = [(self._sites.instance(conn, lab, spec.name), spec) for spec in machines]
        for inst, spec in insts:  # all of them checked before any is touched
            if SNAPSHOT not in {snap.name for snap in inst.snapshots.all()}:
                raise ProvisioningError(
                    _("machine `{name}` of lab `{key}` has no starting snapshot").format(
                        name=spec.name, key=lab.key
                    ),
                    hint=_("bring the lab up again: guestlab down && guestlab up"),
                )

        def one(inst: Instance, spec: MachineSpec) -> None:
            progress(_("restoring {name}").format(name=inst.name))
            with api_errors(_("restore {name}").format(name=inst.name), cluster=conn.clustered):
                # LXD would stop it itself; a forced stop is quicker than a clean shutdown
                # and the state is about to be thrown away anyway
                if inst.status == "Running":
                    inst.stop(force=True, wait=True)
                inst.restore_snapshot(SNAPSHOT, wait=True)
                inst.start(wait=True)
            wait_ready(conn, inst, spec.init, progress)

        # side by side: each machine's stop, restore and boot is LXD waiting, not working
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(insts)))) as pool:
            list(pool.map(speaking(lambda pair: one(*pair)), insts))

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        """`lxc restart`: a clean shutdown of the container's systemd (forced after a
        grace), then a boot of the same disk; every process and tmpfs goes with it."""
        from pylxd.exceptions import LXDAPIException

        conn = self._connection()
        insts = [(self._sites.running(conn, lab, spec.name), spec) for spec in machines]

        def one(inst: Instance, spec: MachineSpec) -> None:
            progress(_("restarting {name}").format(name=inst.name))
            with api_errors(_("restart {name}").format(name=inst.name), cluster=conn.clustered):
                try:  # an idle PID 1 (`init: none`) has no shutdown to wait for
                    inst.restart(timeout=RESTART_GRACE, force=spec.init == "none", wait=True)
                except LXDAPIException:  # a shutdown that did not finish in time
                    inst.sync()
                    if inst.status == "Running":
                        inst.stop(force=True, wait=True)
                    inst.start(wait=True)
            wait_ready(conn, inst, spec.init, progress)

        with ThreadPoolExecutor(max_workers=max(1, min(8, len(insts)))) as pool:
            list(pool.map(speaking(lambda pair: one(*pair)), insts))

    def remove_machine(self, lab: LabRef, machine: str) -> None:
        conn = self._connection()
        try:
            inst = self._sites.instance(conn, lab, machine)
        except MachineUnavailable:
            return
        with api_errors(_("delete {name}").format(name=inst.name), cluster=conn.clustered):
            drop_exec_logs(conn.client, inst.name)
            with pool_lock(conn.pool, conn.server):
                delete_instance(inst)
        if conn.local:
            remove_logs(inst.name)

    def destroy(self, lab: LabRef) -> FoundResources:
        from pylxd.exceptions import LXDAPIException, NotFound

        found = FoundResources()
        conn = self._connection()
        for inst in labelled(conn.client):
            if inst.config.get(CONFIG_PREFIX + LABEL_LAB) != lab.key:
                continue
            try:
                snaps = [f"{inst.name}/{s.name}" for s in inst.snapshots.all()]
                drop_exec_logs(conn.client, inst.name)
                with pool_lock(conn.pool, conn.server):
                    delete_instance(inst)
            except NotFound:
                continue  # removed by someone else meanwhile: it is gone all the same
            except LXDAPIException as exc:
                raise ProvisioningError(
                    _("LXD could not delete {name}: {error}").format(name=inst.name, error=exc)
                ) from exc
            if conn.local:
                # LXD 5.0 leaves /var/log/lxd/NAME behind; nothing of the lab stays
                remove_logs(inst.name)
            found.machines.append(inst.config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name))
            found.other.extend(snaps)
        if found.machines and conn.local and conn.driver == "btrfs":
            heal_quota(conn.pool, conn.server)  # deleting marks the pool's qgroups inconsistent
        return found

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        out: dict[str, FoundResources] = {}
        mine = paths.store_id()
        for inst in labelled(self.client()):
            key = inst.config[CONFIG_PREFIX + LABEL_LAB]
            if lab is not None and key != lab.key:
                continue
            if lab is None and inst.config.get(CONFIG_PREFIX + LABEL_STORE) != mine:
                continue  # another state store's lab: never ours to collect
            machine = inst.config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name)
            out.setdefault(key, FoundResources()).machines.append(machine)
        return out

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        return [*self._lxc_exec(lab, machine), "--", *DRAINED, "bash", "-l"]

    def attach_argv(
        self, lab: LabRef, machine: str, argv: Sequence[str], *, tty: bool
    ) -> list[str]:
        mode = "--force-interactive" if tty else "--force-noninteractive"
        return [*self._lxc_exec(lab, machine, mode), "--", *DRAINED, *argv]

    def _lxc_exec(self, lab: LabRef, machine: str, *options: str) -> list[str]:
        """`lxc exec` of the machine's instance on the LXD guestlab uses (remote_cli.py)."""
        if os.environ.get("GUESTLAB_LXD_ENDPOINT"):  # a cluster's newest name: ask LXD
            name = self._sites.name(self._connection(), lab, machine)
        else:  # the host's LXD, no cluster: no API call needed
            name = instance_name(lab, machine)
        return remote_cli.lxc("exec", *options, instance=name)
