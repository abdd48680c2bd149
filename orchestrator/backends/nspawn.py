"""systemd-nspawn backend: each machine is a directory tree booted by a systemd-nspawn process.

Layout under ``paths.home()/nspawn``::

    images/<image>/                     base tree, extracted once from the catalog tarball
    machines/<lab key>/<machine>/
        meta.json                       labels, spec, unit name, PIDs, cgroups (source of truth)
        rootfs/                         the machine's root filesystem
        snapshot/                       copy of rootfs kept by `snapshot`
        nspawn.log                      console and nspawn messages

Two routes, picked by whether the host runs systemd (``/run/systemd/system``):

* no systemd (containers, CI runners): ``--register=no --keep-unit``; guestlab puts each
  nspawn process in cgroups of its own, which gives every machine separate
  supervisor/payload cgroups, memory/CPU/PIDs limits, a freezer, and a list of every process
  to kill on destroy.
* systemd host: nspawn registers with systemd-machined, which creates ``machine-<name>.scope``;
  limits go through ``--property=``, freezing through ``systemctl freeze``.

Commands run through ``nsenter -t <container init> -a``, on both routes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
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
from orchestrator.backends.nspawn_host import (
    IDLE_COMMAND,
    _alive,
    _cgroup_pids,
    _container_init,
    _freeze,
    _in_cgroups,
    _live_nspawn,
    _make_cgroups,
    _nspawn_pids,
    _own_cgroups,
    _payload_started,
    _remove_cgroups,
    _remove_runtime_leftovers,
    _remove_tree,
    _run,
    _signal,
    _thaw_all,
    _wait_group_gone,
)
from orchestrator.errors import MachineUnavailable, ProvisioningError, UsageError
from orchestrator.images import rootfs as rootfs_images
from orchestrator.images.catalog import lookup

CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "LANG": "C.UTF-8",
}
READY_TIMEOUT = 60.0
STOP_GRACE = 15.0  # a clean systemd poweroff takes about 2 s here
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME_RE = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")


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


class NspawnBackend:
    """Machines as directory trees booted with systemd-nspawn."""

    name = "nspawn"
    capabilities = frozenset({"systemd", "clone", "snapshot"})
    virtualization = "systemd-nspawn"

    def __init__(self, *, use_machined: bool | None = None) -> None:
        self._machined = systemd_host() if use_machined is None else use_machined

    # ----------------------------------------------------------------- paths

    @staticmethod
    def _root() -> Path:
        return paths.home() / "nspawn"

    def _images(self) -> Path:
        return self._root() / "images"

    def _machines(self) -> Path:
        return self._root() / "machines"

    def _lab_dir(self, lab: LabRef) -> Path:
        key = lab.key
        if "/" in key or key.startswith(".") or "\0" in key:
            raise UsageError(f"lab key `{key}` cannot name a directory")
        return self._machines() / key

    def _machine_dir(self, lab: LabRef, machine: str) -> Path:
        if not _NAME_RE.fullmatch(machine):
            raise UsageError(
                f"machine name `{machine}` must be letters, digits, `.`, `_` or `-` "
                "(at most 63, starting with a letter or digit)"
            )
        return self._lab_dir(lab) / machine

    # ---------------------------------------------------------- availability

    def availability(self) -> Availability:
        try:
            nspawn = shutil.which("systemd-nspawn")
            if nspawn is None:
                return Availability(
                    False, "systemd-nspawn is not installed", "apt-get install -y systemd-container"
                )
            if shutil.which("nsenter") is None:
                return Availability(
                    False, "nsenter is not installed", "apt-get install -y util-linux"
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
            return Availability(True, f"{version} ({route})")
        except Exception as exc:  # availability reports, it never raises
            return Availability(False, f"cannot run systemd-nspawn: {exc}", "")

    # ----------------------------------------------------------------- image

    def ensure_image(self, image: str, progress: Progress, *, build: bool = True) -> None:
        self._base_tree(image, progress, build=build)

    def _base_tree(self, image: str, progress: Progress, *, build: bool) -> Path:
        """The extracted base tree of `image`, extracting (and building) it when missing."""
        lookup(image)  # unknown names fail here with the catalog listed
        images = paths.ensure(self._images())
        tree = images / image
        stamp = images / f"{image}.source.json"
        tarball = rootfs_images.tarball_path(image)
        with open(images / f"{image}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two guestlab processes extract once
            if tree.is_dir() and (not tarball.exists() or _tar_id(tarball) == _read_json(stamp)):
                return tree
            if not tarball.exists():
                if not build:
                    raise UsageError(
                        f"image `{image}` is not built for the nspawn backend",
                        hint=f"build it with `guestlab image build {image} --backend nspawn`",
                    )
                tarball = rootfs_images.ensure_tarball(image, progress=progress)
            progress(f"extracting {image} for systemd-nspawn")
            work = Path(tempfile.mkdtemp(prefix=f".{image}.", dir=images))
            try:
                _run(
                    [
                        "tar",
                        "--numeric-owner",
                        "--xattrs",
                        "--xattrs-include=*",
                        "-xpf",
                        str(tarball),
                        "-C",
                        str(work),
                    ],
                    what=f"extracting {tarball.name}",
                )
                if tree.exists():  # a newer tarball replaces the old tree
                    old = images / f".{image}.old"
                    os.replace(tree, old)
                    _remove_tree(old)
                os.replace(work, tree)  # atomic: a crash never leaves half a tree
                _write_json(stamp, _tar_id(tarball))
            finally:
                if work.exists():
                    _remove_tree(work)
        return tree

    # ------------------------------------------------------------- lifecycle

    def create(self, spec: MachineSpec, progress: Progress) -> None:
        base = self._base_tree(spec.image, progress, build=False)
        mdir = self._new_machine_dir(spec)
        try:
            progress(f"{spec.name}: copying {spec.image}")
            _copy_tree(base, mdir / "rootfs")
            self._start(spec, mdir, progress)
            self._wait_ready(spec, mdir, progress)
        except BaseException:
            self._discard(mdir)
            raise

    def clone(self, source: MachineSpec, target: MachineSpec, progress: Progress) -> None:
        sdir = self._machine_dir(source.lab, source.name)
        smeta = self._meta(sdir, source.lab, source.name)
        self._running_init(sdir, smeta)  # cloning a stopped machine is a mistake upstream
        mdir = self._new_machine_dir(target)
        try:
            progress(f"{target.name}: copying {source.name}")
            # Frozen, the source cannot change files mid-copy; it keeps running afterwards
            # (about half a second of pause for a 250 MB tree).
            with self._frozen(smeta):
                _copy_tree(sdir / "rootfs", mdir / "rootfs")
            self._start(target, mdir, progress)
            self._wait_ready(target, mdir, progress)
        except BaseException:
            self._discard(mdir)
            raise

    def snapshot(self, lab: LabRef, machines: Sequence[MachineSpec]) -> None:
        for spec in machines:
            mdir = self._machine_dir(lab, spec.name)
            meta = self._meta(mdir, lab, spec.name)
            work = mdir / "snapshot.new"
            if work.exists():
                _remove_tree(work)
            with self._frozen(meta):
                _copy_tree(mdir / "rootfs", work)
            old = mdir / "snapshot.old"
            if (mdir / "snapshot").exists():
                os.replace(mdir / "snapshot", old)
            os.replace(work, mdir / "snapshot")
            if old.exists():
                _remove_tree(old)

    def restore(self, lab: LabRef, machines: Sequence[MachineSpec], progress: Progress) -> None:
        todo: list[tuple[MachineSpec, Path]] = []
        for spec in machines:
            mdir = self._machine_dir(lab, spec.name)
            self._meta(mdir, lab, spec.name)
            if not (mdir / "snapshot").is_dir():
                raise UsageError(f"machine `{spec.name}` of lab `{lab.key}` has no snapshot")
            todo.append((spec, mdir))
        # Stop all first (in parallel: one grace period, not one per machine).
        self._stop_all([self._meta(mdir, lab, spec.name) for spec, mdir in todo], progress)
        for spec, mdir in todo:
            progress(f"{spec.name}: restoring the snapshot")
            work = mdir / "rootfs.restore"
            if work.exists():
                _remove_tree(work)
            _copy_tree(mdir / "snapshot", work)
            _remove_tree(mdir / "rootfs")
            os.replace(work, mdir / "rootfs")
            self._start(spec, mdir, progress)
        for spec, mdir in todo:
            self._wait_ready(spec, mdir, progress)

    def destroy(self, lab: LabRef) -> FoundResources:
        ldir = self._lab_dir(lab)
        found = self._found(ldir)
        if not ldir.is_dir():
            return found
        metas = [self._meta_or_guess(lab, mdir) for mdir in sorted(ldir.iterdir()) if mdir.is_dir()]
        self._stop_all(metas, lambda _line: None)
        for meta in metas:
            self._discard(Path(meta["dir"]), stopped=True)
        _remove_tree(ldir)  # only stray files remain
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
        mdir = self._machine_dir(lab, machine)
        pid = self._running_init(mdir, self._meta(mdir, lab, machine))
        return ["nsenter", "-t", str(pid), "-a", "-r", "-w", "/bin/bash", "-l"]

    def _exec(
        self,
        lab: LabRef,
        machine: str,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
    ) -> ExecResult:
        mdir = self._machine_dir(lab, machine)
        meta = self._meta(mdir, lab, machine)
        pid = self._running_init(mdir, meta)
        return self._nsenter(
            pid, argv, timeout=timeout, stdin=stdin, cgroups=meta.get("exec_cgroups", [])
        )

    @staticmethod
    def _nsenter(
        pid: int,
        argv: list[str],
        *,
        timeout: float,
        stdin: bytes | None = None,
        cgroups: Sequence[str] = (),
    ) -> ExecResult:
        # -r -w take root and cwd from the container's init: entering its mount namespace
        # alone would keep the host's root directory.
        cmd = ["nsenter", "-t", str(pid), "-a", "-r", "-w", *argv]
        # The command joins the machine's limit cgroups, so limits apply to it too and
        # destroy finds it even if it detached from the container's process tree.
        proc = subprocess.Popen(
            _in_cgroups(cgroups, cmd),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=CONTAINER_ENV,
            start_new_session=True,  # its own process group, killed whole on timeout
        )
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            try:
                out, err = proc.communicate(timeout=5)
            except subprocess.TimeoutExpired:  # a detached child still holds the pipes
                proc.kill()
                out, err = b"", b""
            # killed, the command lingers until the container's init reaps it: wait, so that
            # a timed-out command is really gone when exec returns
            _wait_group_gone(proc.pid, limit=5.0)
            return ExecResult(124, _text(out), _text(err), timed_out=True)
        return ExecResult(proc.returncode, _text(out), _text(err))

    # ------------------------------------------------------------- internals

    def _new_machine_dir(self, spec: MachineSpec) -> Path:
        mdir = self._machine_dir(spec.lab, spec.name)
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
            "nspawn_pid": None,
            "init_pid": None,
            "cgroups": [],
            "exec_cgroups": [],
            "limits": {},
        }

    def _meta(self, mdir: Path, lab: LabRef, machine: str) -> dict[str, Any]:
        meta = _read_json(mdir / "meta.json")
        if meta is None:
            raise MachineUnavailable(f"machine `{machine}` of lab `{lab.key}` does not exist")
        meta["dir"] = str(mdir)  # the lab may have been moved with GUESTLAB_HOME
        return meta

    def _meta_or_guess(self, lab: LabRef, mdir: Path) -> dict[str, Any]:
        """The meta of a machine dir, or what destroy needs when it was never written."""
        meta = _read_json(mdir / "meta.json")
        if meta is None:
            meta = {"unit": unit_name(lab, mdir.name), "nspawn_pid": None, "cgroups": []}
        meta["dir"] = str(mdir)
        return meta

    @staticmethod
    def _save(mdir: Path, meta: dict[str, Any]) -> None:
        _write_json(mdir / "meta.json", meta)

    def _start(self, spec: MachineSpec, mdir: Path, progress: Progress) -> None:
        """Start systemd-nspawn for the machine in the background and record its PID."""
        meta = self._meta(mdir, spec.lab, spec.name)
        # A machine called db_1 gets the hostname db-1; an explicit hostname must be valid.
        hostname = spec.hostname or re.sub(r"[^A-Za-z0-9-]+", "-", spec.name).strip("-")[:63]
        if not _HOSTNAME_RE.fullmatch(hostname):
            raise UsageError(f"`{hostname}` is not a valid hostname for machine `{spec.name}`")
        rootfs = mdir / "rootfs"
        # systemd in the machine takes its hostname from /etc/hostname, over --hostname.
        _write_inside(rootfs, "etc/hostname", f"{hostname}\n".encode())
        argv = [
            "systemd-nspawn",
            "--quiet",
            f"--machine={meta['unit']}",
            f"--hostname={hostname}",
            f"--directory={rootfs}",
            "--private-network",
            "--console=read-only",
            "--link-journal=no",  # nothing of the machine ends up in the host's journal
        ]
        cgroups: list[str] = []
        if self._machined:
            argv += [
                f"--property=MemoryMax={spec.memory}",
                f"--property=TasksMax={spec.pids}",
                f"--property=CPUQuota={round(spec.cpus * 100)}%",
            ]
            meta["limits"] = {"memory": True, "cpus": True, "pids": True}
        else:
            argv += ["--register=no", "--keep-unit"]
            cgroups, meta["exec_cgroups"], meta["limits"] = _make_cgroups(meta["unit"], spec)
            if not all(meta["limits"].values()):
                missing = ", ".join(k for k, v in meta["limits"].items() if not v)
                progress(f"{spec.name}: cannot enforce {missing} on this host (no cgroup for it)")
        argv += ["--boot"] if spec.init == "systemd" else ["--as-pid2", *IDLE_COMMAND]
        meta.update(cgroups=cgroups, nspawn_pid=None, init_pid=None)
        self._save(mdir, meta)
        progress(f"{spec.name}: starting systemd-nspawn")
        with open(mdir / "nspawn.log", "ab") as log:
            proc = subprocess.Popen(
                _in_cgroups(cgroups, argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives guestlab, and no terminal signal reaches it
            )
        meta["nspawn_pid"] = proc.pid
        meta["started"] = time.time()
        self._save(mdir, meta)

    def _wait_ready(self, spec: MachineSpec, mdir: Path, progress: Progress) -> None:
        """Wait for the machine's init, then for systemd to finish booting."""
        meta = self._meta(mdir, spec.lab, spec.name)
        deadline = time.monotonic() + READY_TIMEOUT
        state = "no init process yet"
        while time.monotonic() < deadline:
            nspawn = _live_nspawn(meta)
            if nspawn is None and _alive(meta["nspawn_pid"]):
                time.sleep(0.02)  # the cgroup wrapper has not exec'd systemd-nspawn yet
                continue
            if nspawn is None:
                raise ProvisioningError(
                    f"machine `{spec.name}`: systemd-nspawn exited during start-up:\n"
                    f"{_tail(mdir / 'nspawn.log')}"
                )
            init = _container_init(nspawn, mdir / "rootfs")
            if init is not None:
                if meta.get("init_pid") != init:
                    meta["init_pid"] = init
                    self._save(mdir, meta)
                if spec.init != "systemd":
                    if _payload_started(init):
                        progress(f"{spec.name}: ready")
                        return
                    state = "the idle command has not started"
                else:
                    res = self._nsenter(init, ["systemctl", "is-system-running"], timeout=10)
                    state = res.stdout.strip() or res.stderr.strip()[:200] or "no answer"
                    if state in ("running", "degraded"):
                        progress(f"{spec.name}: systemd is {state}")
                        return
                    if state == "maintenance":  # emergency or rescue mode: it will not recover
                        break
            time.sleep(0.2)
        raise ProvisioningError(
            f"machine `{spec.name}` was not ready after {READY_TIMEOUT:.0f} s "
            f"(last state: {state}):\n{_tail(mdir / 'nspawn.log')}"
        )

    def _running_init(self, mdir: Path, meta: dict[str, Any]) -> int:
        """The PID of the machine's init, checked to be that machine's, or MachineUnavailable."""
        machine = mdir.name
        lab = meta.get("labels", {}).get("guestlab.lab", mdir.parent.name)
        nspawn = _live_nspawn(meta)
        if nspawn is None:
            raise MachineUnavailable(
                f"machine `{machine}` of lab `{lab}` is not running (its systemd-nspawn "
                "process is gone)"
            )
        init = _container_init(nspawn, mdir / "rootfs")
        if init is None:
            raise MachineUnavailable(f"machine `{machine}` of lab `{lab}` is still starting")
        return init

    @contextlib.contextmanager
    def _frozen(self, meta: dict[str, Any]) -> Iterator[None]:
        """Pause every process of the machine for a consistent copy of its files."""
        nspawn = _live_nspawn(meta)
        if nspawn is None:  # a stopped machine's files do not change
            yield
            return
        thaw = _freeze(meta, nspawn)
        try:
            yield
        finally:
            thaw()

    def _stop_all(self, metas: Sequence[dict[str, Any]], progress: Progress) -> None:
        """Stop machines: a clean poweroff first, SIGKILL for what is left; verify none remain."""
        for meta in metas:
            _thaw_all(meta)  # frozen processes cannot act on SIGTERM
            for pid in _nspawn_pids(meta):
                # nspawn turns SIGTERM into SIGRTMIN+3 (poweroff) for a booted systemd and
                # into SIGKILL of the payload otherwise.
                progress(f"{Path(meta['dir']).name}: stopping")
                _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while time.monotonic() < deadline and any(_nspawn_pids(m) for m in metas):
            time.sleep(0.1)
        for _ in range(50):
            left = [pid for m in metas for pid in _nspawn_pids(m) + _cgroup_pids(m)]
            if not left:
                break
            for pid in left:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.1)
        else:
            raise ProvisioningError(f"processes {left} survived SIGKILL; see `ps -p`")
        for meta in metas:
            if meta.get("route") == "machined":
                # machined may keep a scope of a killed nspawn; ignore "no such machine"
                subprocess.run(
                    ["machinectl", "terminate", meta["unit"]], capture_output=True, check=False
                )
            _remove_cgroups(_own_cgroups(meta))
            _remove_runtime_leftovers(meta)
            meta["nspawn_pid"] = meta["init_pid"] = None
            if Path(meta["dir"], "meta.json").exists():
                self._save(Path(meta["dir"]), meta)

    def _discard(self, mdir: Path, *, stopped: bool = False) -> None:
        """Stop (unless done) and delete one machine directory."""
        if not mdir.exists():
            return
        if not stopped:
            meta = _read_json(mdir / "meta.json") or {"unit": "", "cgroups": []}
            meta["dir"] = str(mdir)
            if meta.get("unit"):
                self._stop_all([meta], lambda _line: None)
        _remove_tree(mdir)

    def _found(self, ldir: Path) -> FoundResources:
        found = FoundResources()
        if not ldir.is_dir():
            return found
        for mdir in sorted(ldir.iterdir()):
            if not mdir.is_dir():
                continue
            meta = _read_json(mdir / "meta.json") or {}
            name = meta.get("labels", {}).get("guestlab.machine", mdir.name)
            found.machines.append(name)
            if (mdir / "snapshot").is_dir():
                found.other.append(f"snapshot:{name}")
        return found


# ------------------------------------------------------------------ processes


def _copy_tree(src: Path, dest: Path) -> None:
    """Copy a root filesystem with owners, modes, links and xattrs; reflink where possible."""
    work = dest.with_name(dest.name + ".partial")
    if work.exists():
        _remove_tree(work)
    _run(["cp", "-a", "--reflink=auto", "--", str(src), str(work)], what=f"copying {src}")
    os.replace(work, dest)


def _write_inside(root: Path, rel: str, data: bytes) -> None:
    """Write root/rel without following any symlink on the way (the tree may come from a
    student's machine, where /etc could point anywhere on the host)."""
    *dirs, name = rel.split("/")
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for part in dirs:
            nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)  # a symlink or hard link is replaced, not written through
        out = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644, dir_fd=fd)
        try:
            os.write(out, data)
        finally:
            os.close(out)
    except OSError as exc:
        raise ProvisioningError(f"cannot write /{rel} in {root}: {exc}") from exc
    finally:
        os.close(fd)


def _lab_label(ldir: Path) -> str:
    """The lab key the machines of a lab directory are labelled with."""
    for meta_file in sorted(ldir.glob("*/meta.json")):
        key = (_read_json(meta_file) or {}).get("labels", {}).get("guestlab.lab")
        if key:
            return str(key)
    return ldir.name


def _tar_id(tarball: Path) -> dict[str, int]:
    st = tarball.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # a reader never sees half a file


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # console colours
    return "\n".join(text.splitlines()[-lines:])


def _text(raw: bytes | None) -> str:
    return (raw or b"").decode(errors="replace")
