"""What guestlab does on the LXD host itself, when LXD runs on this machine.

Nothing here trusts the machine: processes are found through the host's view of them
(`lxd forkexec` helpers run in the host's pid namespace as host root), and files only
under LXD's own log directory for guestlab's own instance names.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from orchestrator import paths
from orchestrator.backends import btrfs_quota
from orchestrator.backends.common import file_lock

#: where LXD keeps each instance's logs (lxc.log, console.log, exec output): Debian's
#: package, then the snap
LOG_DIRS = (Path("/var/log/lxd"), Path("/var/snap/lxd/common/lxd/logs"))
PROC = Path("/proc")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError:
        return b""


def parse_stat_ppid(stat: bytes) -> int | None:
    """The parent pid from /proc/PID/stat (the command name may hold spaces and parens)."""
    end = stat.rfind(b")")
    if end < 0:
        return None
    fields = stat[end + 2 :].split()
    try:
        return int(fields[1])  # fields[0] is the state
    except (IndexError, ValueError):
        return None


def is_exec_helper(argv: list[bytes], instance: str, marker: str) -> bool:
    """Whether a host process's argv is LXD's `forkexec` for this instance and this command.

    LXD runs `lxd forkexec NAME LXCPATH CONFIG CWD UID GID ... -- env ... -- cmd ARGV`; the
    marker is a random word guestlab put in the command, so no other exec matches.
    """
    if len(argv) < 3 or argv[1] != b"forkexec" or argv[2] != instance.encode():
        return False
    try:
        cmd = argv.index(b"cmd")
    except ValueError:
        return False
    return marker.encode() in argv[cmd + 1 :]


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        ppid = parse_stat_ppid(_read(entry / "stat"))
        if ppid is not None:
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(tree: dict[int, list[int]], root: int) -> set[int]:
    found: set[int] = set()
    todo = list(tree.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(tree.get(pid, []))
    return found


def exec_helpers(instance: str, marker: str) -> list[int]:
    """Host pids of LXD's forkexec helper running this command, in this pid namespace."""
    own_ns = os.readlink("/proc/self/ns/pid")
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        argv = _read(entry / "cmdline").split(b"\0")
        if not is_exec_helper(argv, instance, marker):
            continue
        try:
            # a process in the machine may copy that argv: it is in another pid
            # namespace and does not belong to host root
            if os.readlink(entry / "ns" / "pid") != own_ns or entry.stat().st_uid != 0:
                continue
        except OSError:
            continue
        found.append(int(entry.name))
    return found


def _signal(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_exec(instance: str, marker: str) -> int:
    """Kill every process a command started in the machine, from the host; how many.

    The processes are frozen first (SIGSTOP, taken again until no new child appears) so
    that none can fork past the kill, then killed together. The forkexec helper itself
    stays: it reports the command's end to LXD. A process that left the command's tree
    (a daemon, re-parented to the machine's init) is not the command any more.
    """
    helpers = exec_helpers(instance, marker)
    if not helpers:
        return 0
    stopped: set[int] = set()
    for _ in range(20):
        tree = _children()
        found = set().union(*(_descendants(tree, h) for h in helpers)) - stopped
        if not found:
            break
        _signal(found, signal.SIGSTOP)
        stopped |= found
    _signal(stopped, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and any(_alive(pid) for pid in stopped):
        time.sleep(0.01)
    return len(stopped)


def _alive(pid: int) -> bool:
    """Still running: neither gone nor a zombie waiting for its parent to reap it."""
    stat = _read(PROC / str(pid) / "stat")
    end = stat.rfind(b")")
    return bool(stat) and stat[end + 2 : end + 3] not in (b"Z", b"X")


def remove_logs(instance: str) -> list[str]:
    """Remove what LXD left of a deleted instance under its log directory; what went.

    LXD 5.0 leaves /var/log/lxd/NAME (lxc.log, console.log, exec output) behind when it
    deletes an instance.
    """
    if not instance.startswith("gl-") or "/" in instance:
        raise ValueError(f"not a guestlab instance name: {instance!r}")
    removed = []
    for base in LOG_DIRS:
        path = base / instance
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(str(path))
    return removed


def cgroup_limits(instance: str, root: Path = Path("/sys/fs/cgroup")) -> dict[str, str]:
    """The limits the kernel applies to an instance, read from the host's cgroup files.

    Keys: memory (bytes), pids, cpu_quota and cpu_period (microseconds, quota "max" when
    none), cpus (the cpuset). cgroup v1 (lxc.payload.NAME in each hierarchy) or v2.
    """
    group = f"lxc.payload.{instance}"
    out: dict[str, str] = {}
    if (root / "memory").is_dir():  # v1 or hybrid
        files = {
            "memory": root / "memory" / group / "memory.limit_in_bytes",
            "pids": root / "pids" / group / "pids.max",
            "cpu_quota": root / "cpu" / group / "cpu.cfs_quota_us",
            "cpu_period": root / "cpu" / group / "cpu.cfs_period_us",
            "cpus": root / "cpuset" / group / "cpuset.cpus",
        }
        for key, path in files.items():
            out[key] = _read(path).decode().strip()
        return out
    base = root / group
    out["memory"] = _read(base / "memory.max").decode().strip()
    out["pids"] = _read(base / "pids.max").decode().strip()
    quota, _, period = _read(base / "cpu.max").decode().strip().partition(" ")
    out["cpu_quota"], out["cpu_period"] = quota, period
    out["cpus"] = _read(base / "cpuset.cpus").decode().strip()
    return out


@contextmanager
def create_lock(server: str = "") -> Iterator[None]:
    """One instance creation at a time from this host on one LXD (`server`: "", or an LXD
    cluster's certificate fingerprint).

    LXD 5.0 records a new instance before it picks the instance's isolated id range, and
    meanwhile counts it as holding range 0: a second creation at that moment gets a range
    below root's /etc/subuid range, which fails to start, and every later one follows it.
    A cluster's members have ranges of their own: its creations never wait for the
    host's LXD (reached by its socket or by its address), nor the host's for them.
    """
    with file_lock(paths.host_locks_dir() / f"guestlab-lxd-create{_of(server)}.lock"):
        yield


def _of(server: str) -> str:
    """A lock name's part for an LXD cluster (none for one LXD)."""
    return f"-{server[:16]}" if server.isalnum() else ""


#: where LXD mounts its storage pools: Debian's package, then the snap
POOL_DIRS = (Path("/var/lib/lxd/storage-pools"), Path("/var/snap/lxd/common/lxd/storage-pools"))


def _pool_path(pool: str) -> Path | None:
    """Where LXD mounts a local pool, if it does."""
    return next((d / pool for d in POOL_DIRS if (d / pool).is_dir()), None)


def pool_quota_mode(pool: str) -> str | None:
    """The quota mode of a local btrfs pool (`squota`, `qgroup`), None when off or unknown."""
    path = _pool_path(pool)
    return btrfs_quota.mode(path) if path is not None else None


def heal_quota(pool: str, server: str = "") -> bool:
    """Rescan a btrfs pool's qgroups when the kernel marked them inconsistent; whether it did.

    Deleting an instance whose qgroup still counts bytes marks every qgroup of the file
    system inconsistent (kernel 6.x), and the kernel then stops enforcing their limits:
    a machine's disk bound would hold only until the first `down`. A rescan takes a
    fraction of a second on a lab pool.
    """
    path = _pool_path(pool)
    if path is None:
        return False
    return btrfs_quota.heal(path, lambda _uuid: pool_lock(pool, server, exclusive=True))


@contextmanager
def pool_lock(pool: str, server: str = "", *, exclusive: bool = False) -> Iterator[None]:
    """Deletions on a pool of one LXD (or of one cluster: create_lock) share this lock; a
    qgroup rescan takes it alone.

    A snapshot deleted while btrfs rescans the pool's qgroups was seen half deleted (gone
    from LXD's database, its subvolume still there), and its instance could not be deleted.
    """
    lock = paths.host_locks_dir() / f"guestlab-lxd-pool-{pool}{_of(server)}.lock"
    with file_lock(lock, shared=not exclusive):
        yield
