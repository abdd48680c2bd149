"""The cgroups of an nspawn machine and of each command run in it, and its freezer.

Where the host's PID 1 is not systemd, guestlab puts each systemd-nspawn process in
cgroups of its own (below its own cgroup, under `guestlab/`): the machine's memory, CPU
and PIDs limits, a freezer, and the list of every process to kill on destroy. Each
command run in the machine gets a fresh cgroup below those, so that the host can find
and kill all it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from orchestrator.backends.contract import MachineSpec
from orchestrator.backends.nspawn.host import alive, live_nspawn, machined_scope, proc_stat

CGROUP_PARENT = "guestlab"
#: cgroup v1 hierarchies guestlab uses; cpuset and the others need setup it has no use for
V1_HIERARCHIES = ("pids", "memory", "cpu", "freezer", "name=systemd")
# Joins the cgroups named before `--`, then becomes the command after it (same PID). Used
# instead of Popen(preexec_fn=...), which is unsafe in threads, and lab.py creates machines
# in threads. A fixed script: the paths and the command come as arguments.
_JOIN_AND_EXEC = (
    'while [ "$1" != -- ]; do { echo $$ > "$1/cgroup.procs"; } 2>/dev/null || :; shift; done;'
    ' shift; exec "$@"'
)


def hierarchies() -> list[tuple[frozenset[str], Path]]:
    """(controllers, directory of our own cgroup) per hierarchy guestlab uses.

    Machines are nested under the caller's own cgroup, so guestlab never escapes limits
    that whoever runs it set on it. An empty controller set means cgroup v2.
    """
    known = {
        line.split()[0]
        for line in Path("/proc/cgroups").read_text().splitlines()
        if line and not line.startswith("#")
    }
    mounts: dict[frozenset[str], tuple[str, str]] = {}  # controllers -> (mount root, point)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            pre, _, post = line.partition(" - ")
            fields, (fstype, *_, options) = pre.split(), post.split()
            if fstype == "cgroup2":
                mounts[frozenset()] = (fields[3], fields[4])
            elif fstype == "cgroup":
                ctrl = {o for o in options.split(",") if o in known or o.startswith("name=")}
                mounts[frozenset(ctrl)] = (fields[3], fields[4])
    out: list[tuple[frozenset[str], Path]] = []
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        ctrl = frozenset(names.split(",")) if names else frozenset()
        if ctrl and not ctrl & set(V1_HIERARCHIES):
            continue
        if ctrl not in mounts or ".." in path:  # not mounted, or outside our cgroup namespace
            continue
        root, point = mounts[ctrl]
        rel = path[len(root) :] if root != "/" and path.startswith(root) else path
        out.append((ctrl, Path(point + rel.rstrip("/"))))
    return out


def make_cgroups(unit: str, spec: MachineSpec) -> tuple[list[str], list[str], dict[str, bool]]:
    """Create the machine's cgroups and write its limits.

    Returns every cgroup dir, the ones a command run in the machine joins (v1 resource
    controllers: the container's systemd manages the name=systemd and v2 trees), and which
    limits hold.
    """
    dirs: list[str] = []
    joinable: list[str] = []
    limits = {"memory": False, "cpus": False, "pids": False}
    quota = max(1000, round(spec.cpus * 100_000))
    for ctrl, own in hierarchies():
        d = own / CGROUP_PARENT / unit
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue  # read-only or foreign cgroup tree: run without it
        dirs.append(str(d))
        writes: list[tuple[str, str, str]] = []
        if not ctrl:  # cgroup v2: limits only work for controllers delegated to us
            with contextlib.suppress(OSError):
                (d.parent / "cgroup.subtree_control").write_text("+memory +pids +cpu")
            writes += [
                ("memory", "memory.max", str(spec.memory)),
                ("pids", "pids.max", str(spec.pids)),
                ("cpus", "cpu.max", f"{quota} 100000"),
            ]
        else:
            if ctrl & {"pids", "memory", "cpu", "freezer"}:
                joinable.append(str(d))
            if "memory" in ctrl:
                writes.append(("memory", "memory.limit_in_bytes", str(spec.memory)))
            if "pids" in ctrl:
                writes.append(("pids", "pids.max", str(spec.pids)))
            if "cpu" in ctrl:
                writes += [
                    ("", "cpu.cfs_period_us", "100000"),
                    ("cpus", "cpu.cfs_quota_us", str(quota)),
                ]
        for limit, fname, value in writes:
            try:
                (d / fname).write_text(value)
            except OSError:
                continue
            if limit:
                limits[limit] = True
    return dirs, joinable, limits


def in_cgroups(dirs: Sequence[str], argv: list[str]) -> list[str]:
    """argv, started inside the cgroups `dirs` (a process's children inherit them)."""
    if not dirs:
        return argv
    return ["/bin/sh", "-c", _JOIN_AND_EXEC, "sh", *dirs, "--", *argv]


def own_cgroups(meta: dict[str, Any]) -> list[str]:
    """The machine's cgroup dirs from its meta, only if they are really the machine's
    (killing every process of a wrong cgroup could take the host down)."""
    tail = f"/{CGROUP_PARENT}/{meta.get('unit')}"
    return [
        d for d in meta.get("cgroups", []) if d.startswith("/sys/fs/cgroup/") and d.endswith(tail)
    ]


def pids_in(dirs: Sequence[str]) -> set[int]:
    """The PIDs listed in the cgroups `dirs` and every cgroup below them (zombies too)."""
    pids: set[int] = set()
    for d in dirs:
        for dirpath, _dirs, _files in os.walk(d):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
    return pids


def cgroup_pids(meta: dict[str, Any]) -> list[int]:
    """The live processes in the machine's own cgroups."""
    return sorted(p for p in pids_in(own_cgroups(meta)) if alive(p))


def remove_cgroups(dirs: Sequence[str]) -> None:
    """Remove the cgroups `dirs` and those below them, deepest first; busy ones stay."""
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)  # cgroup dirs go with rmdir, deepest first


def exec_cgroups(parents: Sequence[str]) -> list[str]:
    """A fresh cgroup below each of the machine's limit cgroups, for one command."""
    name = f"exec-{uuid.uuid4().hex[:12]}"
    made = []
    for parent in parents:
        d = Path(parent, name)
        with contextlib.suppress(OSError):
            d.mkdir()
            made.append(str(d))
    return made


def kill_cgroups(dirs: Sequence[str]) -> None:
    """Kill every process of the cgroups (frozen first where a freezer is, so that none
    forks while being killed), then remove the cgroups."""
    freezer = next((Path(d) for d in dirs if Path(d, "freezer.state").exists()), None)
    for _ in range(200):
        pids = {p for p in pids_in(dirs) if (proc_stat(p) or ("Z", 0))[0] != "Z"}
        if not pids:
            break
        if freezer is not None:
            with contextlib.suppress(OSError):
                (freezer / "freezer.state").write_text("FROZEN")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if freezer is not None:
            with contextlib.suppress(OSError):
                (freezer / "freezer.state").write_text("THAWED")
        time.sleep(0.02)
    remove_cgroups(dirs)


def freezer_dir(meta: dict[str, Any]) -> tuple[Path, str] | None:
    """(cgroup dir, v1|v2) that freezes the machine, if it has one."""
    for d in own_cgroups(meta):
        if Path(d, "freezer.state").exists():
            return Path(d), "v1"
    for d in own_cgroups(meta):
        if Path(d, "cgroup.freeze").exists():
            return Path(d), "v2"
    return None


def freeze(meta: dict[str, Any], nspawn: int) -> Callable[[], object]:
    """Freeze the machine; return the function that thaws it."""
    found = freezer_dir(meta)
    if found is not None:
        d, version = found
        fname, on, off = (
            ("freezer.state", "FROZEN", "THAWED")
            if version == "v1"
            else ("cgroup.freeze", "1", "0")
        )
        (d / fname).write_text(on)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if version == "v1" and (d / fname).read_text().strip() == "FROZEN":
                break
            if version == "v2" and "frozen 1" in (d / "cgroup.events").read_text():
                break
            time.sleep(0.02)
        return lambda: (d / fname).write_text(off)
    scope = machined_scope(nspawn)
    if scope and meta.get("route") == "machined":
        ok = subprocess.run(["systemctl", "freeze", scope], capture_output=True, check=False)
        if ok.returncode == 0:
            return lambda: subprocess.run(["systemctl", "thaw", scope], check=False)
    # No freezer: copy while running. Files being written during the copy may come out
    # torn, like after a power cut; lab machines are idle between steps, so this is rare.
    return lambda: None


def thaw_all(meta: dict[str, Any]) -> None:
    """Thaw the machine's freezer cgroup, if it has one (frozen processes cannot act on
    SIGTERM)."""
    found = freezer_dir(meta)
    if found is not None:
        d, version = found
        with contextlib.suppress(OSError):
            if version == "v1":
                (d / "freezer.state").write_text("THAWED")
            else:
                (d / "cgroup.freeze").write_text("0")


@contextlib.contextmanager
def frozen(meta: dict[str, Any]) -> Iterator[None]:
    """Pause every process of the machine for a consistent copy of its files."""
    nspawn = live_nspawn(meta)
    if nspawn is None:  # a stopped machine's files do not change
        yield
        return
    thaw = freeze(meta, nspawn)
    try:
        yield
    finally:
        thaw()
