"""LXD backend: system containers through pylxd.

Every instance is created with an explicit device set (a root disk and nothing else) and
no profile, so machines sit on no network and guestlab never touches the default profile.
The `user.guestlab.*` config keys are the labels `find` and `destroy` trust. Every
instance's seccomp policy refuses btrfs's subvolume ioctls (config.SECCOMP_DENY): a
subvolume made inside would escape the disk bound.

LXD system containers always boot the image's init: a machine whose spec says
`init: none` still runs systemd inside; guestlab only skips waiting for it to settle.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING

from orchestrator import paths
from orchestrator.backends.base import (
    LABEL_LAB,
    LABEL_MACHINE,
    LABEL_STORE,
    SYSTEMD_READY,
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.lxd import host
from orchestrator.backends.lxd.cleanup import delete_instance, drop_exec_logs
from orchestrator.backends.lxd.config import (
    CONFIG_PREFIX,
    INNER_DOCKER_SCRIPT,
    SNAPSHOT,
    disk_size,
    image_alias,
    instance_config,
    instance_name,
    is_isolated,
    root_disk,
)
from orchestrator.backends.lxd.connect import Connection, open_connection
from orchestrator.backends.lxd.execution import ExecSession
from orchestrator.backends.lxd.image import ensure_image
from orchestrator.errors import (
    BackendUnavailable,
    MachineUnavailable,
    ProvisioningError,
)

if TYPE_CHECKING:
    from pylxd import Client
    from pylxd.models import Instance

READY_TIMEOUT = 60.0
__all__ = ["LxdBackend", "image_alias", "instance_name"]


class LxdBackend:
    """Machines as LXD system containers."""

    name = "lxd"
    capabilities = frozenset({"systemd", "clone", "snapshot", "nested"})
    virtualization = "lxc"

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._lock = threading.Lock()

    @property
    def pool(self) -> str | None:
        """The storage pool machines go to, once availability() has been asked."""
        return self._conn.pool if self._conn else None

    # -- connection ------------------------------------------------------------------

    def client(self) -> Client:
        """The shared pylxd client, or BackendUnavailable with the fix."""
        return self._connection().client

    _client = client  # the name classroom code has used

    def _connection(self) -> Connection:
        with self._lock:
            if self._conn is None:
                state = self.availability()
                if not state.usable:
                    raise BackendUnavailable(f"LXD: {state.detail}", hint=state.fix)
            assert self._conn is not None
            return self._conn

    def availability(self) -> Availability:
        state, conn = open_connection()
        if conn is not None and self._conn is None:
            self._conn = conn  # other threads may be using the current client: keep it
        return state

    def host_root_risk(self) -> str | None:
        """None when every guestlab machine on this LXD is unprivileged with an id map of
        its own (what `create` makes); else the machines that are not."""
        try:
            shared = [i.name for i in self._labelled() if not is_isolated(i.config or {})]
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

    # -- helpers -----------------------------------------------------------------------

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn LXD's API errors into one-sentence ProvisioningErrors."""
        from pylxd.exceptions import LXDAPIException

        try:
            yield
        except LXDAPIException as exc:
            raise ProvisioningError(f"LXD could not {action}: {exc}") from exc

    def _instance(self, lab: LabRef, machine: str) -> Instance:
        from pylxd.exceptions import NotFound

        name = instance_name(lab, machine)
        try:
            return self.client().instances.get(name)
        except NotFound:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` does not exist (LXD instance {name})",
                hint="bring the lab up first: guestlab up",
            ) from None

    def _running(self, lab: LabRef, machine: str) -> Instance:
        inst = self._instance(lab, machine)
        if inst.status != "Running":
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab.key}` is {inst.status.lower()}",
                hint=f"start it: lxc start {inst.name}",
            )
        return inst

    def _labelled(self) -> list[Instance]:
        """Every instance carrying a guestlab lab label (one API call with config)."""
        instances = self.client().instances.all(recursion=1)
        return [i for i in instances if (i.config or {}).get(CONFIG_PREFIX + LABEL_LAB)]

    def _execute(self, inst: Instance, argv: Sequence[str], timeout: float) -> ExecResult:
        """Run argv over LXD's exec websockets, bounded in time and output (execution.py)."""
        from pylxd.exceptions import LXDAPIException

        conn = self._connection()
        session = ExecSession(conn.client, inst.name, argv, timeout, host.kill_exec, conn.tls)
        try:
            return session.run()
        except LXDAPIException as exc:
            if "not running" in str(exc).lower():
                raise MachineUnavailable(f"LXD instance {inst.name} is not running") from exc
            raise ProvisioningError(f"exec in LXD instance {inst.name} failed: {exc}") from exc
        except OSError as exc:  # a websocket that could not connect or broke
            raise ProvisioningError(f"exec in LXD instance {inst.name} failed: {exc}") from exc

    def _wait_ready(self, inst: Instance, init: str, progress: Progress) -> None:
        """Block until the machine runs commands (init none) or systemd settled."""
        from pylxd.exceptions import LXDAPIException

        progress(f"waiting for {inst.name} to boot")
        deadline = time.monotonic() + READY_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            try:
                if init == "none":
                    res = self._execute(inst, ["true"], 10)
                    if res.ok:
                        return
                    last = res.stderr.strip() or f"exit {res.exit_code}"
                else:
                    res = self._execute(inst, list(SYSTEMD_READY), 10)
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

    def _settle(self, inst: Instance, spec: MachineSpec) -> None:
        """Set the hostname, and keep an inner Docker off btrfs subvolumes, in one exec.

        LXD names the UTS namespace after the instance and the image says localhost.
        Done once the machine is up, not by pushing /etc/hostname before the first start:
        a file written into a never-started instance costs LXD about a second at that
        start and half a second at delete (measured), more than the whole exec here.
        The Docker part (config.INNER_DOCKER_SCRIPT) restarts dockerd where there
        is one: about a second, in those machines only.
        """
        hostname = spec.hostname or spec.name
        script = 'printf "%s\\n" "$1" > /etc/hostname && hostname "$1" || exit 1\n'
        script += INNER_DOCKER_SCRIPT
        res = self._execute(inst, ["sh", "-c", script, "sh", hostname], 60)
        if not res.ok:
            raise ProvisioningError(
                f"cannot set the hostname of {inst.name} or configure its Docker engine:"
                f" {res.stderr.strip() or res.exit_code}"
            )

    # -- images ------------------------------------------------------------------------

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        ensure_image(self.client(), image, progress, build=build)

    # -- machines ----------------------------------------------------------------------

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        client = self.client()
        name = instance_name(spec.lab, spec.name)
        if client.instances.exists(name):
            raise ProvisioningError(
                f"machine `{spec.name}` of lab `{spec.lab.key}` already exists ({name})",
                hint="remove the lab first: guestlab down",
            )
        self.ensure_image(spec.image, progress, build=False)
        config = {
            "name": name,
            "description": f"guestlab {spec.lab.key} {spec.name}",
            "source": {"type": "image", "alias": image_alias(spec.image)},
            # no profile: its devices (a nic above all) are not ours to inherit
            "profiles": [],
            "devices": {"root": self._root_disk(spec, name, progress)},
            "config": instance_config(spec),
        }
        progress(f"creating {name} from {image_alias(spec.image)}")
        with self._errors(f"create {name}"):
            with host.create_lock():
                inst = client.instances.create(config, wait=True)
            inst.start(wait=True)
        self._wait_ready(inst, spec.init, progress)
        self._settle(inst, spec)

    def _root_disk(self, spec: MachineSpec, name: str, progress: Progress) -> dict[str, str]:
        """The root disk on the chosen pool, `spec.disk` beyond the image where LXD can
        enforce a size; where it cannot (a `dir` pool), a progress line says so."""
        conn = self._connection()
        if conn.local and conn.driver == "btrfs":
            host.heal_quota(conn.pool)  # a bound the kernel stopped enforcing is none
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
        return root_disk(conn.pool, disk_size(spec, image_bytes, conn.driver))

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        return self._execute(self._running(lab, machine), argv, timeout)

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        from pylxd.exceptions import LXDAPIException

        inst = self._running(lab, machine)
        try:
            inst.files.put(dest, data, mode=mode, uid=0, gid=0)
            return
        except LXDAPIException:
            pass  # most likely a missing parent directory: create it and try once more
        parent = os.path.dirname(dest) or "/"
        made = self._execute(inst, ["mkdir", "-p", parent], 10)
        if not made.ok:
            raise ProvisioningError(f"cannot create {parent} in {machine}: {made.stderr.strip()}")
        with self._errors(f"write {dest} in {inst.name}"):
            inst.files.put(dest, data, mode=mode, uid=0, gid=0)

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        client = self.client()
        src = self._running(source.lab, source.name)
        name = instance_name(target.lab, target.name)
        if client.instances.exists(name):
            raise ProvisioningError(
                f"machine `{target.name}` of lab `{target.lab.key}` already exists ({name})",
                hint="remove the lab first: guestlab down",
            )
        config = {
            "name": name,
            "description": f"guestlab {target.lab.key} {target.name} (copy of {source.name})",
            # LXD 5.0 copies a running container without stopping it (a stateless copy),
            # file for file, /etc/machine-id included: what `lxc copy` users get
            "source": {"type": "copy", "source": src.name, "instance_only": True},
            "profiles": [],
            "devices": {"root": self._root_disk(target, name, progress)},
            # given keys override the copied config: the target's own labels and limits;
            # volatile.idmap.* are not copied, so the copy gets an id range of its own
            "config": instance_config(target),
        }
        progress(f"copying {src.name} to {name}")
        with self._errors(f"copy {src.name} to {name}"):
            with host.create_lock():
                inst = client.instances.create(config, wait=True)
            inst.start(wait=True)
            src.sync()
            if src.status != "Running":  # should not happen, but the source must stay up
                src.start(wait=True)
        self._wait_ready(inst, target.init, progress)
        self._settle(inst, target)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            inst = self._instance(lab, spec.name)
            with self._errors(f"snapshot {inst.name}"):
                # snapshots.all() gives name-only objects: .get() would warn about every
                # field newer LXD returns that pylxd does not know
                with host.pool_lock(self._connection().pool):
                    for snap in (s for s in inst.snapshots.all() if s.name == SNAPSHOT):
                        snap.delete(wait=True)
                inst.snapshots.create(SNAPSHOT, stateful=False, wait=True)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        insts = [(self._instance(lab, spec.name), spec) for spec in machines]
        for inst, spec in insts:  # all of them checked before any is touched
            if SNAPSHOT not in {snap.name for snap in inst.snapshots.all()}:
                raise ProvisioningError(
                    f"machine `{spec.name}` of lab `{lab.key}` has no starting snapshot",
                    hint="bring the lab up again: guestlab down && guestlab up",
                )

        def one(inst: Instance, spec: MachineSpec) -> None:
            progress(f"restoring {inst.name}")
            with self._errors(f"restore {inst.name}"):
                # LXD would stop it itself; a forced stop is quicker than a clean shutdown
                # and the state is about to be thrown away anyway
                if inst.status == "Running":
                    inst.stop(force=True, wait=True)
                inst.restore_snapshot(SNAPSHOT, wait=True)
                inst.start(wait=True)
            self._wait_ready(inst, spec.init, progress)

        # side by side: each machine's stop, restore and boot is LXD waiting, not working
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(insts)))) as pool:
            list(pool.map(lambda pair: one(*pair), insts))

    def destroy(self, lab: LabRef) -> FoundResources:
        from pylxd.exceptions import LXDAPIException, NotFound

        found = FoundResources()
        conn = self._connection()
        for inst in self._labelled():
            if inst.config.get(CONFIG_PREFIX + LABEL_LAB) != lab.key:
                continue
            try:
                snaps = [f"{inst.name}/{s.name}" for s in inst.snapshots.all()]
                drop_exec_logs(self.client(), inst.name)
                with host.pool_lock(conn.pool):
                    delete_instance(inst)
            except NotFound:
                continue  # removed by someone else meanwhile: it is gone all the same
            except LXDAPIException as exc:
                raise ProvisioningError(f"LXD could not delete {inst.name}: {exc}") from exc
            if conn.local:
                # LXD 5.0 leaves /var/log/lxd/NAME behind; nothing of the lab stays
                host.remove_logs(inst.name)
            found.machines.append(inst.config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name))
            found.other.extend(snaps)
        if found.machines and conn.local and conn.driver == "btrfs":
            host.heal_quota(conn.pool)  # deleting marks the pool's qgroups inconsistent
        return found

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        out: dict[str, FoundResources] = {}
        mine = paths.store_id()
        for inst in self._labelled():
            key = inst.config[CONFIG_PREFIX + LABEL_LAB]
            if lab is not None and key != lab.key:
                continue
            if lab is None and inst.config.get(CONFIG_PREFIX + LABEL_STORE) != mine:
                continue  # another state store's lab: never ours to collect
            machine = inst.config.get(CONFIG_PREFIX + LABEL_MACHINE, inst.name)
            out.setdefault(key, FoundResources()).machines.append(machine)
        return out

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        return ["lxc", "exec", instance_name(lab, machine), "--", "bash", "-l"]
