"""Host-side helpers of the nspawn backend: its processes, seen in the host's /proc.

Split from the backend so that it reads as its lifecycle; these functions know Linux,
not guestlab's contract. The machine's cgroups and freezer are in cgroups.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

IDLE_COMMAND = ["/bin/sleep", "infinity"]


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None when it does not exist."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # comm may contain spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not, and is reaped when it is our child)."""
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
    """The PID of the machine's running systemd-nspawn, None when there is none."""
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
    """Send a signal, ignoring a process that is gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


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
