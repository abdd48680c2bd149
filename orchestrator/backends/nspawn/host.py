"""Host-side helpers of the nspawn backend: processes in /proc, cgroups, the freezer.

Split from nspawn.py so that the backend reads as its lifecycle; these functions know
Linux, not guestlab's contract.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from orchestrator.backends.base import MachineSpec

IDLE_COMMAND = ["/bin/sleep", "infinity"]
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


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # comm may contain spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    stat = proc_stat(pid)
    if stat is None:
        return False
    if stat[0] == "Z":
        # A zombie is dead; reap it when it is our own child (we started it).
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
        return False
    return True


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return raw.decode(errors="replace").split("\0")


def is_nspawn_of(pid: int, unit: str) -> bool:
    argv = cmdline(pid)
    return bool(argv) and argv[0].endswith("systemd-nspawn") and f"--machine={unit}" in argv


def nspawn_pids(meta: dict[str, Any]) -> list[int]:
    """Every live systemd-nspawn process of the machine: the recorded PID, checked by
    command line (PIDs are reused), plus a /proc scan in case the PID was never recorded."""
    unit = meta["unit"]
    pids: set[int] = set()
    recorded = meta.get("nspawn_pid")
    if recorded and alive(recorded) and is_nspawn_of(recorded, unit):
        pids.add(recorded)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            pid = int(entry.name)
            if pid not in pids and is_nspawn_of(pid, unit) and alive(pid):
                pids.add(pid)
    return sorted(pids)


def live_nspawn(meta: dict[str, Any]) -> int | None:
    recorded = meta.get("nspawn_pid")
    if recorded and alive(recorded) and is_nspawn_of(recorded, meta["unit"]):
        return int(recorded)  # the common case, without a /proc scan
    pids = nspawn_pids(meta)
    return pids[0] if pids else None


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            kids += [int(k) for k in Path(task.path, "children").read_text().split()]
        return kids
    except FileNotFoundError:
        return []
    except OSError:  # kernel without CONFIG_PROC_CHILDREN: scan for the parent PID
        return [
            int(e.name)
            for e in os.scandir("/proc")
            if e.name.isdigit() and (proc_stat(int(e.name)) or ("", 0))[1] == pid
        ]


def container_init(nspawn: int, rootfs: Path) -> int | None:
    """The child of nspawn that is PID 1 of the container, once its root is the rootfs.

    During start-up nspawn has a helper child still in the host's namespaces; entering it
    would run commands on the host. The container's init is the child in another PID
    namespace whose root directory is the machine's rootfs (a bind mount: same inode).
    """
    try:
        own_ns = os.readlink(f"/proc/{nspawn}/ns/pid")
        want = os.stat(rootfs)
    except OSError:
        return None
    for kid in children(nspawn):
        try:
            if os.readlink(f"/proc/{kid}/ns/pid") == own_ns:
                continue
            root = os.stat(f"/proc/{kid}/root")
        except OSError:
            continue
        if (root.st_dev, root.st_ino) == (want.st_dev, want.st_ino):
            return kid
    return None


def payload_started(init: int) -> bool:
    """With --as-pid2, whether the stub init has exec'd the idle command as its child."""
    return any(cmdline(k)[:1] == IDLE_COMMAND[:1] for k in children(init))


def send_signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


# -------------------------------------------------------------------- cgroups


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


def cgroup_pids(meta: dict[str, Any]) -> list[int]:
    pids: set[int] = set()
    for d in own_cgroups(meta):
        for dirpath, _dirs, _files in os.walk(d):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
    return sorted(p for p in pids if alive(p))


def remove_cgroups(dirs: Sequence[str]) -> None:
    for d in dirs:
        if not os.path.isdir(d):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(d), key=lambda t: -len(t[0])):
            with contextlib.suppress(OSError):
                os.rmdir(dirpath)  # cgroup dirs go with rmdir, deepest first


def remove_runtime_leftovers(meta: dict[str, Any]) -> None:
    """Remove what a stopped nspawn can leave in /run: its propagation directory and the
    lock file of its root directory (left when the payload is killed rather than shut down)."""
    run = Path("/run/systemd/nspawn")
    propagate = run / "propagate" / meta["unit"]
    if propagate.is_dir() and not propagate.is_symlink():
        shutil.rmtree(propagate, ignore_errors=True)
    with contextlib.suppress(OSError):
        st = os.stat(Path(meta["dir"]) / "rootfs")
        lock = run / "locks" / f"inode-{st.st_dev}:{st.st_ino}"
        if lock.is_file() and lock.stat().st_size == 0:
            lock.unlink()


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
    found = freezer_dir(meta)
    if found is not None:
        d, version = found
        with contextlib.suppress(OSError):
            if version == "v1":
                (d / "freezer.state").write_text("THAWED")
            else:
                (d / "cgroup.freeze").write_text("0")


def machined_scope(pid: int) -> str | None:
    """The machine-*.scope unit systemd-machined put an nspawn process in."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            for part in line.split(":", 2)[2].split("/"):
                if part.startswith("machine-") and part.endswith(".scope"):
                    return part
    return None


def wait_group_gone(pgid: int, *, limit: float) -> None:
    """Wait until no process (zombies included) of process group `pgid` is left."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        members = False
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and fields[2] == str(pgid):
                members = True
                break
        if not members:
            return
        time.sleep(0.05)
