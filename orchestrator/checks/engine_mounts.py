"""What each container engine mounts over the kernel's views (/sys, /proc) itself.

Read off real machines of each engine on 2026-12-01 (Docker 20.10 with user namespaces,
LXD 5.0, systemd-nspawn 252, Debian 12 guests booted by guestlab), and from the engines'
own lists: Docker's masked paths, lxcfs's files. The kernel's own views among them (proc's
`/sys` bound read-only at /proc/sys, sysfs's `/class` at /sys/class, cgroups) are told
apart in kernel_views.py; what is here is the rest, which a student's mount could imitate.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass


@dataclass(frozen=True)
class EngineMount:
    """A mount that a container engine makes over the kernel's views itself."""

    point: str  # a pattern (fnmatch) of where it is mounted
    fstypes: frozenset[str]
    root: str  # a pattern of the mount's root; `=` for the mount point itself
    times: int = 1  # how many mounts the engine stacks there
    hides: bool = False  # a mask: it must show an empty folder or a character device

    def matches(self, point: str, fstype: str, root: str) -> bool:
        want = point if self.root == "=" else self.root
        return (
            fnmatch.fnmatchcase(point, self.point)
            and fstype in self.fstypes
            and fnmatch.fnmatchcase(root, want)
        )


def masks(*points: str) -> tuple[EngineMount, ...]:
    """Masks at `points`: an empty read-only tmpfs, or a bind of /dev/null."""
    return tuple(
        EngineMount(p, frozenset({"tmpfs", "devtmpfs"}), root, hides=True)
        for p in points
        for root in ("/", "/null")
    )


TMPFS = frozenset({"tmpfs"})
#: Docker's default masked paths (those of a newer engine too), each hidden by a mask
DOCKER = masks(
    *("/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/kcore", "/proc/keys"),
    *("/proc/latency_stats", "/proc/sched_debug", "/proc/scsi", "/proc/timer_list"),
    *("/proc/timer_stats", "/sys/devices/virtual/powercap", "/sys/firmware"),
)
#: LXD's boot ID for the container, and lxcfs's views of /proc and of the CPUs where the
#: host runs lxcfs (each is lxcfs's file of the same path)
LXD = (
    EngineMount("/proc/sys/kernel/random/boot_id", TMPFS, "/.lxc-boot-id"),
    EngineMount("/proc/*", frozenset({"fuse.lxcfs"}), "="),
    EngineMount("/sys/devices/system/cpu*", frozenset({"fuse.lxcfs"}), "="),
)
#: nspawn's /sys (a tmpfs holding binds of sysfs's folders), and its boot ID and kernel
#: log for the container, bound from files it deleted once bound
NSPAWN = (
    EngineMount("/sys", TMPFS, "/"),
    EngineMount(
        "/proc/sys/kernel/random/boot_id", TMPFS, "/.#proc-sys-kernel-random-boot-id*", times=2
    ),
    EngineMount("/proc/kmsg", TMPFS, "/.#proc-kmsg*"),
)
#: by what systemd-detect-virt says in the engine's machines (a backend's `virtualization`)
ENGINES: dict[str, tuple[EngineMount, ...]] = {
    "docker": DOCKER,
    "lxc": LXD,
    "systemd-nspawn": NSPAWN,
}
