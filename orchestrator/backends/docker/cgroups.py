"""The host's side of a machine's cgroups: hand systemd its own directories, read limits.

In a user namespace, root in the machine cannot write the cgroup directories the engine
made for it (they belong to host root), so systemd cannot start. The host gives the
machine's root uid the directories and the files that move processes, and keeps every
limit file (`pids.max`, `memory.limit_in_bytes`, ...) its own: systemd can make and fill
sub-groups, no one inside can lift a limit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: per hierarchy kind, the files besides the directory that systemd needs to own
V1_DELEGATED = ("cgroup.procs", "tasks")
V2_DELEGATED = ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")


@dataclass(frozen=True)
class Group:
    """One hierarchy's directory of a process."""

    controllers: frozenset[str]  # empty for the v2 hierarchy
    path: Path  # on the host


def mounts(mounts_file: str = "/proc/self/mounts") -> dict[frozenset[str], Path]:
    """The host's cgroup mounts: controllers (or name=...) -> mount point; v2 under {}."""
    found: dict[frozenset[str], Path] = {}
    for line in Path(mounts_file).read_text().splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        where, kind, options = fields[1], fields[2], fields[3].split(",")
        if kind == "cgroup2":
            found.setdefault(frozenset(), Path(where))
        elif kind == "cgroup":
            ctl = frozenset(o for o in options if o not in ("rw", "ro") and "time" not in o)
            found.setdefault(ctl, Path(where))
    return found


def groups(pid: int, proc: str = "/proc") -> list[Group]:
    """Every cgroup directory of process `pid`, as host paths."""
    points = mounts(f"{proc}/self/mounts")
    out: list[Group] = []
    for line in Path(f"{proc}/{pid}/cgroup").read_text().splitlines():
        _, ctl, rel = line.split(":", 2)
        key = frozenset(ctl.split(",")) if ctl else frozenset()
        point = next((p for k, p in points.items() if key <= k and (key or not k)), None)
        if point is None:
            continue  # a hierarchy the host has not mounted (the unused v2 one on v1)
        out.append(Group(key, point / rel.lstrip("/")))
    return out


def root_ids(pid: int, proc: str = "/proc") -> tuple[int, int]:
    """The host uid and gid that root in the process's user namespace is."""
    ids = []
    for name in ("uid_map", "gid_map"):
        first = Path(f"{proc}/{pid}/{name}").read_text().split()
        if first[0] != "0":
            raise ValueError(f"{name} of {pid} does not map root: {first}")
        ids.append(int(first[1]))
    return ids[0], ids[1]


def delegate(pid: int, proc: str = "/proc") -> None:
    """Give root of `pid`'s user namespace its cgroup directories, not their limits."""
    uid, gid = root_ids(pid, proc)
    if uid == 0:
        return  # no user namespace: nothing to hand over (host_root_risk says so)
    for group in groups(pid, proc):
        names = V2_DELEGATED if not group.controllers else V1_DELEGATED
        os.chown(group.path, uid, gid)
        for name in names:
            target = group.path / name
            if target.exists():
                os.chown(target, uid, gid)


def limit(pid: int, controller: str, name: str) -> str:
    """A limit file of the process's own cgroup, as the host reads it."""
    for group in groups(pid):
        if controller in group.controllers:
            return (group.path / name).read_text().strip()
    raise FileNotFoundError(f"no {controller} hierarchy for process {pid}")
