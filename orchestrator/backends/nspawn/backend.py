"""systemd-nspawn backend: each machine is a directory tree booted by a systemd-nspawn process.

Layout under the store root (store.store_root(): the btrfs pool the set-up script
makes, else ``$GUESTLAB_HOME/nspawn``; ``GUESTLAB_NSPAWN_ROOT`` picks another)::

    images/<image>/                     base tree (a read-only subvolume on btrfs)
    machines/<store id>/<lab key>/<machine>/
        meta.json                       labels, spec, unit name, PIDs, cgroups (source of truth)
        rootfs/                         the machine's root filesystem (a snapshot of the base)
        snapshot/                       read-only snapshot of rootfs kept by `snapshot`
        seccomp.bpf                     the seccomp filters of the running init
        nspawn.log                      console and nspawn messages

Two routes, picked by whether the host runs systemd (``/run/systemd/system``): without
it (containers, CI runners) ``--register=no --keep-unit`` and cgroups of guestlab's own per
machine (limits, a freezer, every process to kill on destroy); with it, systemd-machined's
``machine-<name>.scope``, limits through ``--property=``, ``systemctl freeze``.

Machines boot with private users; commands enter through enter.py (boot.py, execution.py).
The lifecycle is here; what it stands on is a module each: trees (store.py), a machine's
directory (machines.py), boot (boot.py), commands (execution.py, enter.py), the host's
processes (host.py), cgroups and the freezer (cgroups.py), the seccomp filter (seccomp.py).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator import paths
from orchestrator.backends import inroot
from orchestrator.backends.common import PUT_SCRIPT, refuse_existing
from orchestrator.backends.contract import (
    Availability,
    ExecResult,
    FileProbe,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.nspawn import preflight
from orchestrator.backends.nspawn.boot import (
    running_init,
    start,
    stop_all,
    userns_available,
    wait_ready,
)
from orchestrator.backends.nspawn.cgroups import frozen
from orchestrator.backends.nspawn.execution import (
    attach_argv,
    login_shell_argv,
    run_in_machine,
)
from orchestrator.backends.nspawn.machines import (
    existing_meta,
    found_in,
    fresh_meta,
    lab_dir_in,
    lab_label,
    machine_dir_in,
    meta_of,
    meta_or_guess,
    save_meta,
)
from orchestrator.backends.nspawn.store import Trees, base_tree, remove_base_tree, store_root
from orchestrator.errors import GuestlabError, ProvisioningError, UsageError
from orchestrator.messages import _

#: what a machine directory may hold besides meta.json and logs, removed one by one
TREES = ("rootfs", "snapshot", "rootfs.restore", "snapshot.new", "snapshot.old")


def systemd_host() -> bool:
    """Whether the host's PID 1 is systemd (the check sd_booted() makes)."""
    return Path("/run/systemd/system").is_dir()


class NspawnBackend:
    """Machines as directory trees booted with systemd-nspawn."""

    name = "nspawn"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "systemd-nspawn"

    def __init__(
        self, *, use_machined: bool | None = None, private_users: bool | None = None
    ) -> None:
        if private_users is None:
            wanted = os.environ.get("GUESTLAB_NSPAWN_PRIVATE_USERS", "yes").lower()
            private_users = wanted not in ("no", "0", "false") and userns_available()
        self._machined = systemd_host() if use_machined is None else use_machined
        self._private_users = private_users
        self._trees: Trees | None = None

    # ----------------------------------------------------------------- paths

    @property
    def trees(self) -> Trees:
        """The store of root filesystems, found (and its pool mounted) on first use."""
        if self._trees is None:
            self._trees = Trees(store_root())
        return self._trees

    def _machines(self) -> Path:
        """This state store's machines (other stores may share the root)."""
        return self.trees.root / "machines" / paths.store_id()

    def machine_dir(self, lab: LabRef, machine: str) -> Path:
        """The directory of one machine: meta.json, rootfs, snapshot, nspawn.log."""
        return machine_dir_in(self._machines(), lab, machine)

    # ---------------------------------------------------------- availability

    def availability(self) -> Availability:
        return preflight.availability(self._route)

    def _route(self) -> str:
        return preflight.route(self._machined, self._private_users, self.trees)

    def host_root_risk(self) -> str | None:
        return None if self._private_users else preflight.no_private_users()

    # ----------------------------------------------------------------- image

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        base_tree(self.trees, image, progress, build=build)

    def remove_image(self, image: str) -> bool:
        return remove_base_tree(self.trees, image)

    # ------------------------------------------------------------- lifecycle

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        base = base_tree(self.trees, spec.image, progress, build=False)
        mdir = self._new_machine_dir(spec)
        try:
            progress(
                _("{name}: {image} as {kind}").format(
                    name=spec.name, image=spec.image, kind=self.trees.kind
                )
            )
            self.trees.copy(base, mdir / "rootfs")
            self._boot(spec, mdir, progress)
        except BaseException:
            self._discard(mdir)
            raise

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        self._copy(source, target, progress, start=False)

    def clone_start(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        """A new machine from `source`'s starting snapshot (what `up` saved)."""
        self._copy(source, target, progress, start=True)

    def remove_machine(self, lab: LabRef, machine: str) -> None:
        self._discard(self.machine_dir(lab, machine))

    def _copy(
        self, source: MachineSpec, target: MachineSpec, progress: Progress, *, start: bool
    ) -> None:
        sdir = self.machine_dir(source.lab, source.name)
        smeta = existing_meta(sdir, source.lab, source.name)
        if start and not (sdir / "snapshot").is_dir():
            raise UsageError(
                _("machine `{name}` of lab `{key}` has no snapshot").format(
                    name=source.name, key=source.lab.key
                )
            )
        if not start:
            running_init(sdir, smeta)  # cloning a stopped machine is a mistake upstream
        mdir = self._new_machine_dir(target)
        try:
            copying = (
                _("{target}: copying {source} as it started")
                if start
                else _("{target}: copying {source}")
            )
            progress(copying.format(target=target.name, source=source.name))
            # a running source is frozen, so that no file changes mid-copy; a snapshot cannot
            with contextlib.nullcontext() if start else frozen(smeta):
                self.trees.copy(sdir / ("snapshot" if start else "rootfs"), mdir / "rootfs")
            self._boot(target, mdir, progress)
        except BaseException:
            self._discard(mdir)
            raise

    def _boot(self, spec: MachineSpec, mdir: Path, progress: Progress) -> None:
        meta = existing_meta(mdir, spec.lab, spec.name)
        meta["disk_limit"] = self.trees.limit(mdir / "rootfs", spec.disk)
        if not meta["disk_limit"]:
            progress(
                _("{name}: no disk bound on this host ({kind})").format(
                    name=spec.name, kind=self.trees.kind
                )
            )
        self._start(spec, mdir, meta, progress)
        wait_ready(spec, mdir, meta, progress)

    def _start(
        self, spec: MachineSpec, mdir: Path, meta: dict[str, Any], progress: Progress
    ) -> None:
        start(
            spec, mdir, meta, progress, machined=self._machined, private_users=self._private_users
        )

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            mdir = self.machine_dir(lab, spec.name)
            meta = existing_meta(mdir, lab, spec.name)
            work = mdir / "snapshot.new"
            self.trees.remove(work)
            with frozen(meta):
                self.trees.copy(mdir / "rootfs", work, readonly=True)
            old = mdir / "snapshot.old"
            if (mdir / "snapshot").exists():
                os.replace(mdir / "snapshot", old)
            os.replace(work, mdir / "snapshot")
            self.trees.remove(old)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        todo: list[tuple[MachineSpec, Path]] = []
        for spec in machines:
            mdir = self.machine_dir(lab, spec.name)
            existing_meta(mdir, lab, spec.name)
            if not (mdir / "snapshot").is_dir():
                raise UsageError(
                    _("machine `{name}` of lab `{key}` has no snapshot").format(
                        name=spec.name, key=lab.key
                    )
                )
            todo.append((spec, mdir))
        # Stop all first (in parallel: one grace period, not one per machine).
        stop_all([existing_meta(mdir, lab, spec.name) for spec, mdir in todo], progress)
        for spec, mdir in todo:
            progress(_("{name}: restoring the snapshot").format(name=spec.name))
            work = mdir / "rootfs.restore"
            self.trees.remove(work)
            self.trees.copy(mdir / "snapshot", work)
            self.trees.remove(mdir / "rootfs")
            os.replace(work, mdir / "rootfs")
            meta = existing_meta(mdir, lab, spec.name)
            meta["disk_limit"] = self.trees.limit(mdir / "rootfs", spec.disk)
            self._start(spec, mdir, meta, progress)
        for spec, mdir in todo:
            wait_ready(spec, mdir, existing_meta(mdir, lab, spec.name), progress)

    def restart(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        """Stop the machines (a clean poweroff, then SIGKILL for what is left) and boot the
        same trees again: a new nspawn, new namespaces and tmpfs, the disk kept."""
        todo = [(spec, self.machine_dir(lab, spec.name)) for spec in machines]
        metas = [existing_meta(mdir, lab, spec.name) for spec, mdir in todo]
        for (_spec, mdir), meta in zip(todo, metas, strict=True):
            running_init(mdir, meta)  # MachineUnavailable when it is not running
        stop_all(metas, progress)
        for spec, mdir in todo:
            self._start(spec, mdir, existing_meta(mdir, lab, spec.name), progress)
        for spec, mdir in todo:
            wait_ready(spec, mdir, existing_meta(mdir, lab, spec.name), progress)

    def destroy(self, lab: LabRef) -> FoundResources:
        ldir = lab_dir_in(self._machines(), lab)
        found = found_in(ldir)
        if not ldir.is_dir():
            return found
        metas = [meta_or_guess(lab, mdir) for mdir in sorted(ldir.iterdir()) if mdir.is_dir()]
        stop_all(metas, lambda _line: None)
        for meta in metas:
            self._discard(Path(meta["dir"]), stopped=True)
        self.trees.remove(ldir)  # only stray files remain
        with contextlib.suppress(OSError):  # the store's folder, once its last lab is gone
            self._machines().rmdir()
        return found

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        if lab is not None:
            found = found_in(lab_dir_in(self._machines(), lab))
            return {lab.key: found} if found else {}
        out: dict[str, FoundResources] = {}
        if self._machines().is_dir():
            for ldir in sorted(self._machines().iterdir()):
                found = found_in(ldir)
                if found:
                    out[lab_label(ldir)] = found
        return out

    # ------------------------------------------------------------------ exec

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        return self._exec(lab, machine, list(argv), timeout=timeout)

    def put_file(self, lab: LabRef, machine: str, dest: str, data: bytes, mode: int) -> None:
        # Written from inside the machine (its mount namespace and root), not by opening
        # rootfs/<dest> on the host: the kernel then resolves every symlink in `dest` against
        # the machine's root, so a link such as /etc -> /host/etc made by a student can never
        # redirect the write onto the host, and no check-then-open race exists.
        if not dest.startswith("/"):
            raise UsageError(
                _("file destination `{dest}` must be an absolute path").format(dest=dest)
            )
        result = self._exec(
            lab,
            machine,
            ["/bin/sh", "-c", PUT_SCRIPT, "sh", dest, f"{mode & 0o7777:o}"],
            timeout=60,
            stdin=data,
        )
        if not result.ok:
            raise ProvisioningError(
                _("writing {dest} in machine `{machine}` failed: {stderr}").format(
                    dest=dest, machine=machine, stderr=result.stderr.strip()[-300:]
                )
            )

    def _init(self, lab: LabRef, machine: str) -> int:
        mdir = self.machine_dir(lab, machine)
        return running_init(mdir, existing_meta(mdir, lab, machine))

    def read_file(self, lab: LabRef, machine: str, path: str, limit: int) -> FileProbe:
        # the machine's root as its init sees it (its /run and /tmp included), opened on the
        # host; openat2 resolves every link inside it
        return inroot.read_machine(self._init(lab, machine), machine, path, limit)

    def stage_tool(self, lab: LabRef, machine: str, name: str, data: bytes) -> str:
        return inroot.stage_machine(self._init(lab, machine), machine, name, data)

    def unstage_tool(self, lab: LabRef, machine: str, path: str) -> None:
        with contextlib.suppress(GuestlabError):
            inroot.unstage_in(self._init(lab, machine), path)

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        mdir = self.machine_dir(lab, machine)
        meta = existing_meta(mdir, lab, machine)
        return login_shell_argv(mdir, meta, running_init(mdir, meta))

    def attach_argv(
        self, lab: LabRef, machine: str, argv: Sequence[str], *, tty: bool
    ) -> list[str]:
        # the helper only enters the machine: the terminal, or the pipes, are the caller's
        mdir = self.machine_dir(lab, machine)
        meta = existing_meta(mdir, lab, machine)
        return attach_argv(mdir, meta, running_init(mdir, meta), argv)

    def _exec(
        self,
        lab: LabRef,
        machine: str,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
    ) -> ExecResult:
        mdir = self.machine_dir(lab, machine)
        meta = existing_meta(mdir, lab, machine)
        init = running_init(mdir, meta)
        return run_in_machine(mdir, meta, init, argv, timeout, stdin)

    # ------------------------------------------------------------- internals

    def _new_machine_dir(self, spec: MachineSpec) -> Path:
        mdir = self.machine_dir(spec.lab, spec.name)
        refuse_existing(spec.lab, spec.name, exists=mdir.exists())
        for attempt in range(3):  # another lab's `down` may remove an empty store folder
            try:
                paths.ensure(mdir.parent)
                mdir.mkdir()
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        # Written before anything runs, so a crash at any later point leaves a findable lab.
        save_meta(mdir, fresh_meta(spec, mdir, machined=self._machined, store=self.trees.kind))
        return mdir

    def _discard(self, mdir: Path, *, stopped: bool = False) -> None:
        """Stop (unless done) and delete one machine directory and its subvolumes."""
        if not mdir.exists():
            return
        if not stopped:
            meta = meta_of(mdir) or {"unit": "", "cgroups": [], "dir": str(mdir)}
            if meta.get("unit"):
                stop_all([meta], lambda _line: None)
        for name in TREES:
            self.trees.remove(mdir / name)
        self.trees.remove(mdir)
