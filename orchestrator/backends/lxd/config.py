"""What an LXD instance of guestlab is made of: its name, its config keys, its devices.

Pure functions of a MachineSpec and a few facts about the server (no engine calls), so
that they can be tested without LXD.
"""

from __future__ import annotations

import hashlib
import math
import re

from orchestrator.backends.contract import LabRef, MachineSpec

#: LXD config keys are free-form only under `user.`
CONFIG_PREFIX = "user."
SNAPSHOT = "guestlab-start"
OWN_POOL = "guestlab"  # made by scripts/setup/lxd.sh, preferred when present
#: host ids each machine gets of its own (`security.idmap.size`): more than the 65536 of
#: one Debian system, because a lab may run LXD inside (lxd-first-container), whose own
#: unprivileged containers need a subordinate range of 65536 above id 100000
IDMAP_SIZE = 196608
#: storage drivers on which LXD enforces a root disk's `size` (btrfs through qgroups);
#: `dir` only warns in its log and lets the machine fill the host's file system
SIZE_ENFORCED = frozenset({"btrfs", "zfs", "lvm", "ceph", "cephfs"})
#: the CPU scheduler period LXD's `limits.cpu.allowance` is given in
CPU_PERIOD_MS = 100

#: btrfs's ioctls whose argument is a 4096-byte struct btrfs_ioctl_vol_args(_v2), i.e.
#: _IOW(0x94, nr, 4096) = 0x50009400 | nr: SNAP_CREATE 0x01, SUBVOL_CREATE 0x0e,
#: SNAP_CREATE_V2 0x17, SUBVOL_CREATE_V2 0x18 among them (and SNAP_DESTROY, the device
#: ones, which root in a container cannot use anyway). A subvolume made in a machine is
#: outside the quota group of the machine's volume: its bytes escape the disk bound.
BTRFS_VOL_IOCTLS = 0x50009400
#: the bits of the request that name the type (0x94), the size (4096) and the direction:
#: only the low byte (nr) may vary. 32 bits wide on purpose: the kernel reads the
#: request as an unsigned int, so a caller may set any of the upper 32 bits of the
#: register and still reach btrfs; a masked compare ignores them, where `==` or a range
#: on the 64-bit value would let 0xffffffff5000940e through
BTRFS_VOL_MASK = 0xFFFFFF00
EPERM = 1
#: appended by LXD to the seccomp policy it generates (`security.syscalls.deny`), under
#: its `[all]` section: native and compat (i386) system calls alike. Not `raw.seccomp`,
#: which replaces LXD's whole policy (its default denials, its syscall interception).
SECCOMP_DENY = (
    f"ioctl errno {EPERM} [1,{BTRFS_VOL_IOCTLS:#x},SCMP_CMP_MASKED_EQ,{BTRFS_VOL_MASK:#x}]"
)
#: Docker in a machine (docker-basics) would pick its btrfs storage driver on a btrfs pool,
#: which makes a subvolume per image layer: refused above, `docker load` fails. Where
#: dockerd is installed and nobody configured it, it gets overlay2 (its default on other
#: file systems; overlayfs mounts in a user namespace since Linux 5.11), restarted if it
#: runs. Its layers are then plain files, inside the machine's bound. LXD (`dir` pool)
#: and systemd-nspawn in a machine make no subvolume the labs need.
INNER_DOCKER_SCRIPT = """
command -v dockerd > /dev/null 2>&1 || exit 0
[ -e /etc/docker/daemon.json ] && exit 0
mkdir -p /etc/docker
printf '{"storage-driver": "overlay2"}\\n' > /etc/docker/daemon.json
systemctl try-restart docker.service
"""


def instance_name(lab: LabRef, machine: str, incarnation: int = 0) -> str:
    """A valid LXD name (<=63 chars, letter first, letters/digits/hyphens) for a machine.

    The hash keeps names of different labs apart; the readable part is only a courtesy
    to people running `lxc list`. `incarnation` > 0: the lab made again on an LXD cluster
    while its first instances are held by an offline member (their names are taken).
    """
    key = f"{lab.key}\0{machine}" + (f"\0{incarnation}" if incarnation else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", machine.lower()).strip("-")
    return f"gl-{digest}-{slug}"[:63].rstrip("-") if slug else f"gl-{digest}"


def image_alias(image: str) -> str:
    """The LXD image alias of a catalog image."""
    return f"guestlab/{image}"


def config_labels(labels: dict[str, str]) -> dict[str, str]:
    return {CONFIG_PREFIX + key: value for key, value in labels.items()}


def limits(spec: MachineSpec) -> dict[str, str]:
    """The limits and security keys every machine gets, as LXD config."""
    quota_ms = max(1, round(spec.cpus * CPU_PERIOD_MS))
    return {
        "limits.memory": str(spec.memory),  # bytes: LXD takes a bare number as bytes
        # a count of CPUs (a cpuset), and the share of them as a CFS quota, so that the
        # kernel's limit is the scenario's 1.5 CPUs and not two whole ones
        "limits.cpu": str(max(1, math.ceil(spec.cpus))),
        "limits.cpu.allowance": f"{quota_ms}ms/{CPU_PERIOD_MS}ms",
        "limits.processes": str(spec.pids),
        # the backend promises "nested": containers (or LXD) inside the machine
        "security.nesting": "true",
        # unprivileged, and root of this machine is a host uid range no other machine
        # (of this lab or any other) shares
        "security.privileged": "false",
        "security.idmap.isolated": "true",
        "security.idmap.size": str(IDMAP_SIZE),
        # no new btrfs subvolume: it would escape the disk bound (see SECCOMP_DENY)
        "security.syscalls.deny": SECCOMP_DENY,
    }


def root_disk(pool: str | None, size: int | None) -> dict[str, str]:
    """The root disk device; `size` in bytes, None where the pool cannot enforce one."""
    device = {"type": "disk", "path": "/", "pool": pool or ""}
    if size is not None:
        device["size"] = str(size)
    return device


def disk_size(
    spec: MachineSpec, image_bytes: int, driver: str | None, *, owned_only: bool = False
) -> int | None:
    """The root disk size for a machine: what it may write beyond its image, plus the image.

    On btrfs with full qgroup accounting, LXD limits the instance's qgroup by referenced
    bytes, which count the image's files it shares with other machines. With simple quotas
    (`owned_only`) a machine is charged only what it writes itself, so the bound is the
    disk alone. None where the driver cannot bound it.
    """
    if driver not in SIZE_ENFORCED:
        return None
    mib = 1024**2
    shared = 0 if owned_only else max(0, image_bytes)
    return math.ceil((spec.disk + shared) / mib) * mib


#: PID 1 of a machine with `init: none`, as on the other backends: an idle command. LXD
#: has no key for it; LXC's own `lxc.init.cmd` replaces the image's /sbin/init
IDLE_INIT = "lxc.init.cmd = /bin/sleep infinity"


def instance_config(spec: MachineSpec) -> dict[str, str]:
    """The whole config of a machine's instance: its labels as `user.` keys, its limits,
    and for `init: none` the idle command as its PID 1."""
    idle = {"raw.lxc": IDLE_INIT} if spec.init == "none" else {}
    return {**config_labels(spec.labels), **limits(spec), **idle}


def is_isolated(config: dict[str, str]) -> bool:
    """Whether an instance's config makes it unprivileged with an id map of its own."""
    privileged = config.get("security.privileged", "false").lower() in ("true", "1", "yes")
    isolated = config.get("security.idmap.isolated", "false").lower() in ("true", "1", "yes")
    return isolated and not privileged
