"""Whether a class fits its host: sizes and durations read, memory shared, quotas checked.

Everything here refuses a class before any resource exists, with the numbers that say
why and how many labs would fit.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from orchestrator import lab as lifecycle
from orchestrator.backends.contract import Backend
from orchestrator.classroom import placement
from orchestrator.errors import GuestlabError, UsageError
from orchestrator.messages import _

MIN_MACHINE_MEMORY = 64 * 1024**2
#: inotify instances a booted systemd machine holds (systemd, journald, logind, dbus: 7-8 seen)
INOTIFY_PER_MACHINE = 8
#: engines whose containers run as root itself (no user namespace)
ROOT_ENGINES = ("docker", "nspawn")
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """Seconds in `90m`, `3h`, `1.5d`, `45s`."""
    m = DURATION.match(text)
    if not m or float(m.group(1)) <= 0:
        raise UsageError(
            _("--expires {text} is not a duration").format(text=repr(text)),
            hint=_("a number and a unit: 45m, 3h, 2d"),
        )
    return float(m.group(1)) * SECONDS[m.group(2)]


def parse_memory(text: str) -> int:
    try:
        value = lifecycle.parse_size(text.strip())
    except (ValueError, KeyError, IndexError):
        value = 0
    if value <= 0:
        raise UsageError(
            _("--memory {text} is not a size").format(text=repr(text)),
            hint=_("bytes, or a number with K, M or G: 768M"),
        )
    return value


def fmt_bytes(n: float) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.0f} MiB"


def with_memory(lab: lifecycle.Lab, per_lab: int) -> lifecycle.Lab:
    """The lab with `per_lab` bytes shared among its machines, in proportion to their limits."""
    specs = lab.specs
    base = sum(s.memory for s in specs)
    sizes = {s.name: per_lab * s.memory // base // 1024**2 * 1024**2 for s in specs}
    small = [n for n, size in sizes.items() if size < MIN_MACHINE_MEMORY]
    if small:
        raise UsageError(
            _(
                "--memory {per_lab} leaves machine {small} of {id} {sizes}; each"
                " machine needs at least {min_machine_memory}"
            ).format(
                per_lab=fmt_bytes(per_lab),
                small=small[0],
                id=lab.scenario.id,
                sizes=fmt_bytes(sizes[small[0]]),
                min_machine_memory=fmt_bytes(MIN_MACHINE_MEMORY),
            ),
            hint=_("at least --memory {mib}M").format(
                mib=len(specs) * MIN_MACHINE_MEMORY // 1024**2
            ),
        )
    machines = [
        dataclasses.replace(
            m,
            resources=dataclasses.replace(m.resources, memory=f"{sizes[m.name] // 1024**2}M"),
        )
        for m in lab.scenario.machines
    ]
    return dataclasses.replace(lab, scenario=dataclasses.replace(lab.scenario, machines=machines))


def lab_memory(lab: lifecycle.Lab) -> int:
    """The memory limit of a whole lab: the sum of its machines' limits."""
    return sum(s.memory for s in lab.specs)


def host_memory(backend: Backend) -> tuple[int, str]:
    """Bytes of memory available for new labs on the backend's host, and which host that is
    (on an LXD cluster: the sum of its online members')."""
    endpoint = os.environ.get("GUESTLAB_LXD_ENDPOINT")
    if backend.name == "lxd" and endpoint:
        from orchestrator.backends.lxd import LxdBackend  # lazy: only a class on LXD needs it

        # a remote LXD: its own account of its memory; a cluster: every online member's
        by_member = placement.memory_by_member(backend)
        if by_member:
            return sum(by_member.values()), f"the LXD cluster at {endpoint}"
        try:
            if isinstance(backend, LxdBackend):
                return backend.available_memory(), f"the LXD server at {endpoint}"
        except (GuestlabError, KeyError, ValueError, TypeError):
            pass  # an older server without /resources: fall back to this host's
    return meminfo_available(), "this host"


def meminfo_available(path: str = "/proc/meminfo") -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    raise UsageError(_("cannot tell how much memory this host has (no MemAvailable in /proc)"))


def require_fit(per_lab: int, count: int, available: int, where: str) -> None:
    """Refuse a class whose labs' memory limits add up to more than the host has free."""
    need = per_lab * count
    if need > available:
        fits = available // per_lab if per_lab else 0
        raise UsageError(
            _(
                "the class does not fit: {count} lab(s) x {per_lab} = {need} of"
                " memory, and {where} has {available} available; nothing was created"
            ).format(
                count=count,
                per_lab=fmt_bytes(per_lab),
                need=fmt_bytes(need),
                where=where,
                available=fmt_bytes(available),
            ),
            hint=_(
                "{fits} lab(s) of this size fit: a smaller roster, a smaller"
                " --memory, or a remote LXD (GUESTLAB_LXD_ENDPOINT) with more memory"
            ).format(fits=fits),
        )


def charges_root_inotify(backend: str) -> bool:
    """Whether the backend's containers count against root's inotify instances on this host.

    Docker and nspawn run them as root; a local LXD runs them in user namespaces that root
    made, and the kernel charges an instance to the namespace's owner as well (the 129th
    LXD container of a class lost its systemd to it, measured on 2026-12-02). A remote
    LXD's containers count on its own host.
    """
    if backend == "lxd":
        return not os.environ.get("GUESTLAB_LXD_ENDPOINT")
    return backend in ROOT_ENGINES


def counts_against_root(uid: int, userns: str, host_userns: str) -> bool:
    """Whether a process's inotify instances count against root's: root's own, and those of
    a process in another user namespace than the host's (a container's, whatever its
    uid there). A rootless engine's namespaces are counted too: over, never under."""
    return uid == 0 or userns != host_userns


def inotify_limit(proc_root: Path = Path("/proc")) -> tuple[int, int]:
    """(fs.inotify.max_user_instances, instances held against root's count now)."""
    try:
        limit = int((proc_root / "sys/fs/inotify/max_user_instances").read_text())
    except (OSError, ValueError):
        return 0, 0  # not Linux as we know it: no check
    try:
        # guestlab's own namespace, the engines' (PID 1's may be unreadable in a sandbox)
        host_userns = os.readlink(proc_root / "self/ns/user")
    except OSError:
        host_userns = ""  # unknown: root's processes alone are counted
    used = 0
    for proc in proc_root.iterdir():
        if not proc.name.isdigit():
            continue
        try:
            userns = os.readlink(proc / "ns/user") if host_userns else ""
            if not counts_against_root(proc.stat().st_uid, userns, host_userns):
                continue
            used += sum(
                1 for fd in (proc / "fd").iterdir() if os.readlink(fd) == "anon_inode:inotify"
            )
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return limit, used


def require_inotify(machines: int, limit: int, used: int) -> None:
    """Refuse a class whose systemd machines would run out of inotify instances.

    Every container of Docker, nspawn and a local LXD shares root's quota
    (`charges_root_inotify`), and systemd without one exits at boot: on a host left at the
    kernel's default of 128 that is about 16 machines, long before memory runs out.
    """
    need = machines * INOTIFY_PER_MACHINE
    if limit and need > limit - used:
        fits = max(0, (limit - used) // INOTIFY_PER_MACHINE)
        raise UsageError(
            _(
                "the class does not fit: {machines} new machine(s) running systemd"
                " need about {need} inotify instances ({inotify_per_machine} each),"
                " and this host allows {limit} per user"
                " (fs.inotify.max_user_instances) with {used} in use; nothing was"
                " created"
            ).format(
                machines=machines,
                need=need,
                inotify_per_machine=INOTIFY_PER_MACHINE,
                limit=limit,
                used=used,
            ),
            hint=_(
                "room for {fits} machine(s) now; raise the limit as root: `sysctl -w"
                " fs.inotify.max_user_instances=8192` (and in /etc/sysctl.d/ to keep"
                " it)"
            ).format(fits=fits),
        )
