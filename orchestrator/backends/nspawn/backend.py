"""systemd-nspawn backend: each machine is a directory tree booted by a systemd-nspawn process.

Layout under the store root (nspawn_store.store_root(): the btrfs pool the set-up script
makes, else ``$GUESTLAB_HOME/nspawn``; ``GUESTLAB_NSPAWN_ROOT`` picks another)::

    images/<image>/                     base tree (a read-only subvolume on btrfs)
    machines/<store id>/<lab key>/<machine>/
        meta.json                       labels, spec, unit name, PIDs, cgroups (source of truth)
        rootfs/                         the machine's root filesystem (a snapshot of the base)
        snapshot/                       read-only snapshot of rootfs kept by `snapshot`
        seccomp.bpf                     the seccomp filters of the running init
        nspawn.log                      console and nspawn messages

Two routes, picked by whether the host runs systemd (``/run/systemd/system``):

* no systemd (containers, CI runners): ``--register=no --keep-unit``; guestlab puts each
  nspawn process in cgroups of its own, which gives every machine separate
  supervisor/payload cgroups, memory/CPU/PIDs limits, a freezer, and a list of every process
  to kill on destroy.
* systemd host: nspawn registers with systemd-machined, which creates ``machine-<name>.scope``;
  limits go through ``--property=``, freezing through ``systemctl freeze``.

Machines boot with private users; commands enter through enter.py (boot.py, execution.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator import paths
from orchestrator.backends.base import (
    Availability,
    ExecResult,
    FoundResources,
    LabRef,
    MachineSpec,
    Progress,
)
from orchestrator.backends.nspawn.boot import MachineProcesses, meta_of, userns_available
from orchestrator.backends.nspawn.seccomp import volume_ioctl_filter
from orchestrator.backends.nspawn.store import Trees, base_tree, read_json, store_root
from orchestrator.errors import MachineUnavailable, ProvisioningError, UsageError

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")

# Shell run inside the machine by put_file; the destination comes as $1, never spliced in.
_PUT_SCRIPT = r"""
set -eu
dest=$1 mode=$2
[ -d "$dest" ] && { echo "$dest is a directory" >&2; exit 1; }
mkdir -p -- "$(dirname -- "$dest")"
tmp=$(mktemp -- "$dest.guestlab.XXXXXX")
trap 'rm -f -- "$tmp"' EXIT
cat > "$tmp"
chown 0:0 -- "$tmp"
chmod "$mode" -- "$tmp"
mv -f -- "$tmp" "$dest"
trap - EXIT
"""


def systemd_host() -> bool:
    """Whether the host's PID 1 is systemd (the check sd_booted() makes)."""
    return Path("/run/systemd/system").is_dir()


def unit_name(lab: LabRef, machine: str) -> str:
    """The --machine name: readable, unique per state store, lab and machine, a valid hostname.

    Destroy kills every nspawn process carrying this name, so a lab of the same key in
    another state store (a test session's GUESTLAB_HOME) must get another name.
    """
    slug = re.sub(r"[^a-z0-9]+", "-", f"{lab.key}-{machine}".lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(f"{paths.store_id()}/{lab.key}/{machine}".encode()).hexdigest()[:8]
    return f"gl-{slug}-{digest}"


class NspawnBackend(MachineProcesses):
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
        super().__init__(
            machined=systemd_host() if use_machined is None else use_machined,
            private_users=private_users,
        )
        self._trees: Trees | None = None

    # ----------------------------------------------------------------- paths

    @property
    def trees(self) -> Trees:
        """The store of root filesystems, found (and its pool mounted) on first use."""
        if self._trees is None:
            self._trees = Trees(store_root())
        return self._trees

    def _images(self) -> Path:
        return self.trees.root / "images"

    def _machines(self) -> Path:
        """This state store's machines (other stores may share the root)."""
        return self.trees.root / "machines" / paths.store_id()

    def _lab_dir(self, lab: LabRef) -> Path:
        key = lab.key
        if "/" in key or key.startswith(".") or "\0" in key:
            raise UsageError(f"lab key `{key}` cannot name a directory")
        return self._machines() / key

    def machine_dir(self, lab: LabRef, machine: str) -> Path:
        """The directory of one machine: meta.json, rootfs, snapshot, nspawn.log."""
        if not _NAME_RE.fullmatch(machine):
            raise UsageError(
                f"machine name `{machine}` must be letters, digits, `.`, `_` or `-` "
                "(at most 63, starting with a letter or digit)"
            )
        return self._lab_dir(lab) / machine

    # ---------------------------------------------------------- availability

    def availability(self) -> Availability:
        try:
            volume_ioctl_filter(os.uname().machine)  # UnsupportedMachine: no filter, no machine
            nspawn = shutil.which("systemd-nspawn")
            if nspawn is None:
                return Availability(
                    False, "systemd-nspawn is not installed", "apt-get install -y systemd-container"
                )
            if os.geteuid() != 0:
                return Availability(
                    False,
                    f"systemd-nspawn needs root and guestlab runs as uid {os.geteuid()}",
                    "run guestlab as root (sudo)",
                )
            out = subprocess.run(
                [nspawn, "--version"], capture_output=True, text=True, timeout=10, check=False
            )
            if out.returncode != 0:
                return Availability(
                    False,
                    f"`systemd-nspawn --version` failed: {out.stderr.strip()[:200]}",
                    "apt-get install --reinstall -y systemd-container",
                )
            version = out.stdout.splitlines()[0].strip() if out.stdout else "systemd-nspawn"
            route = (
                "registered with systemd-machined"
                if self._machined
                else "host PID 1 is not systemd: --register=no --keep-unit"
            )
            users = "private users" if self._private_users else "NO private users"
            store = f"{self.trees.kind} in {self.trees.root}"
            return Availability(True, f"{version} ({route}; {users}; {store})")
        except Exception as exc:  # availability reports, it never raises
            return Availability(False, f"cannot run systemd-nspawn: {exc}", "")

    def host_root_risk(self) -> str | None:
        if self._private_users:
            return None
        return (
            "nspawn machines run without private users here (user namespaces are off or "
            "GUESTLAB_NSPAWN_PRIVATE_USERS=no): root in a machine is root on the host"
        )

    # ----------------------------------------------------------------- image

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        base_tree(self.trees, image, progress, build=build)

    # ------------------------------------------------------------- lifecycle

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        base = base_tree(self.trees, spec.image, progress, build=False)
        mdir = self._new_machine_dir(spec)
        try:
            progress(f"{spec.name}: {spec.image} as {self.trees.kind}")
            self.trees.copy(base, mdir / "rootfs")
            self._boot(spec, mdir, progress)
        except BaseException:
            self._discard(mdir)
            raise

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        sdir = self.machine_dir(source.lab, source.name)
        smeta = self._meta(sdir, source.lab, source.name)
        self._running_init(sdir, smeta)  # cloning a stopped machine is a mistake upstream
        mdir = self._new_machine_dir(target)
        try:
            progress(f"{target.name}: copying {source.name}")
            # Frozen, the source cannot change files mid-copy; it keeps running afterwards.
            with self._frozen(smeta):
                self.trees.copy(sdir / "rootfs", mdir / "rootfs")
            self._boot(target, mdir, progress)
        except BaseException:
            self._discard(mdir)
            raise

    def _boot(self, spec: MachineSpec, mdir: Path, progress: Progress) -> None:
        meta = self._meta(mdir, spec.lab, spec.name)
        meta["disk_limit"] = self.trees.limit(mdir / "rootfs", spec.disk)
        if not meta["disk_limit"]:
            progress(f"{spec.name}: no disk bound on this host ({self.trees.kind})")
        self._start(spec, mdir, meta, progress)
        self._wait_ready(spec, mdir, meta, progress)

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            mdir = self.machine_dir(lab, spec.name)
            meta = self._meta(mdir, lab, spec.name)
            work = mdir / "snapshot.new"
            self.trees.remove(work)
            with self._frozen(meta):
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
            self._meta(mdir, lab, spec.name)
            if not (mdir / "snapshot").is_dir():
                raise UsageError(f"machine `{spec.name}` of lab `{lab.key}` has no snapshot")
            todo.append((spec, mdir))
        # Stop all first (in parallel: one grace period, not one per machine).
        self._stop_all([self._meta(mdir, lab, spec.name) for spec, mdir in todo], progress)
        for spec, mdir in todo:
            progress(f"{spec.name}: restoring the snapshot")
            work = mdir / "rootfs.restore"
            self.trees.remove(work)
            self.trees.copy(mdir / "snapshot", work)
            self.trees.remove(mdir / "rootfs")
            os.replace(work, mdir / "rootfs")
            meta = self._meta(mdir, lab, spec.name)
            meta["disk_limit"] = self.trees.limit(mdir / "rootfs", spec.disk)
            self._start(spec, mdir, meta, progress)
        for spec, mdir in todo:
            self._wait_ready(spec, mdir, self._meta(mdir, lab, spec.name), progress)

    def destroy(self, lab: LabRef) -> FoundResources:
        ldir = self._lab_dir(lab)
        found = self._found(ldir)
        if not ldir.is_dir():
            return found
        metas = [self._meta_or_guess(lab, mdir) for mdir in sorted(ldir.iterdir()) if mdir.is_dir()]
        self._stop_all(metas, lambda _line: None)
        for meta in metas:
            self._discard(Path(meta["dir"]), stopped=True)
        self.trees.remove(ldir)  # only stray files remain
        return found

    def find(self, lab: LabRef | None = None) -> dict[str, FoundResources]:
        if lab is not None:
            found = self._found(self._lab_dir(lab))
            return {lab.key: found} if found else {}
        out: dict[str, FoundResources] = {}
        if self._machines().is_dir():
            for ldir in sorted(self._machines().iterdir()):
                found = self._found(ldir)
                if found:
                    out[_lab_label(ldir)] = found
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
            raise UsageError(f"file destination `{dest}` must be an absolute path")
        result = self._exec(
            lab,
            machine,
            ["/bin/sh", "-c", _PUT_SCRIPT, "sh", dest, f"{mode & 0o7777:o}"],
            timeout=60,
            stdin=data,
        )
        if not result.ok:
            raise ProvisioningError(
                f"writing {dest} in machine `{machine}` failed: {result.stderr.strip()[-300:]}"
            )

    def shell_argv(self, lab: LabRef, machine: str) -> list[str]:
        mdir = self.machine_dir(lab, machine)
        meta = self._meta(mdir, lab, machine)
        return self._shell(mdir, meta, self._running_init(mdir, meta))

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
        meta = self._meta(mdir, lab, machine)
        init = self._running_init(mdir, meta)
        return self._enter(mdir, meta, init, argv, timeout, stdin)

    # ------------------------------------------------------------- internals

    def _new_machine_dir(self, spec: MachineSpec) -> Path:
        mdir = self.machine_dir(spec.lab, spec.name)
        if mdir.exists():
            raise ProvisioningError(
                f"machine `{spec.name}` of lab `{spec.lab.key}` already exists",
                hint="destroy the lab first",
            )
        paths.ensure(mdir.parent)
        mdir.mkdir()
        # Written before anything runs, so a crash at any later point leaves a findable lab.
        self._save(mdir, self._fresh_meta(spec, mdir))
        return mdir

    def _fresh_meta(self, spec: MachineSpec, mdir: Path) -> dict[str, Any]:
        return {
            "labels": spec.labels,
            "spec": dataclasses.asdict(spec),
            "unit": unit_name(spec.lab, spec.name),
            "dir": str(mdir),
            "route": "machined" if self._machined else "keep-unit",
            "store": self.trees.kind,
            "nspawn_pid": None,
            "init_pid": None,
            "cgroups": [],
            "exec_cgroups": [],
            "limits": {},
        }

    def _meta(self, mdir: Path, lab: LabRef, machine: str) -> dict[str, Any]:
        meta = meta_of(mdir)
        if meta is None:
            raise MachineUnavailable(f"machine `{machine}` of lab `{lab.key}` does not exist")
        return meta

    def _meta_or_guess(self, lab: LabRef, mdir: Path) -> dict[str, Any]:
        """The meta of a machine dir, or what destroy needs when it was never written."""
        guess = {"unit": unit_name(lab, mdir.name), "nspawn_pid": None, "cgroups": []}
        return meta_of(mdir) or {**guess, "dir": str(mdir)}

    def _discard(self, mdir: Path, *, stopped: bool = False) -> None:
        """Stop (unless done) and delete one machine directory and its subvolumes."""
        if not mdir.exists():
            return
        if not stopped:
            meta = meta_of(mdir) or {"unit": "", "cgroups": [], "dir": str(mdir)}
            if meta.get("unit"):
                self._stop_all([meta], lambda _line: None)
        for name in ("rootfs", "snapshot", "rootfs.restore", "snapshot.new", "snapshot.old"):
            self.trees.remove(mdir / name)
        self.trees.remove(mdir)

    def _found(self, ldir: Path) -> FoundResources:
        found = FoundResources()
        if not ldir.is_dir():
            return found
        for mdir in sorted(ldir.iterdir()):
            if not mdir.is_dir():
                continue
            meta = read_json(mdir / "meta.json") or {}
            name = meta.get("labels", {}).get("guestlab.machine", mdir.name)
            found.machines.append(name)
            if (mdir / "snapshot").is_dir():
                found.other.append(f"snapshot:{name}")
        return found


def _lab_label(ldir: Path) -> str:
    """The lab key the machines of a lab directory are labelled with."""
    for meta_file in sorted(ldir.glob("*/meta.json")):
        key = (read_json(meta_file) or {}).get("labels", {}).get("guestlab.lab")
        if key:
            return str(key)
    return ldir.name
