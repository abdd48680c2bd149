"""A container's kernel views: each engine's own mounts over /sys and /proc, as the trusted
shell printed them in real machines of guestlab's (2026-12-01), hide nothing; a student's
mount there, or one more of the engine's own, fails the machine's checks as tampered."""

from __future__ import annotations

import pytest

from orchestrator.checks import engine_mounts, kernel_views

DOCKER = """\
mount / /proc proc -
mount / /sys sysfs -
mount / /sys/fs/cgroup tmpfs -
mount / /sys/fs/cgroup/cpu cgroup -
mount / /sys/fs/cgroup/cpuacct cgroup -
mount / /sys/fs/cgroup/cpuset cgroup -
mount / /sys/fs/cgroup/memory cgroup -
mount / /sys/fs/cgroup/devices cgroup -
mount / /sys/fs/cgroup/freezer cgroup -
mount / /sys/fs/cgroup/blkio cgroup -
mount / /sys/fs/cgroup/pids cgroup -
mount / /sys/fs/cgroup/systemd cgroup -
mount /bus /proc/bus proc -
mount /fs /proc/fs proc -
mount /irq /proc/irq proc -
mount /sys /proc/sys proc -
mount / /proc/acpi tmpfs empty
mount /null /proc/keys devtmpfs chr
mount /null /proc/timer_list devtmpfs chr
mount / /sys/firmware tmpfs empty
mount / /sys/fs/cgroup/unified cgroup2 -
"""
LXD = """\
mount / /proc proc -
mount / /sys sysfs -
mount /sys/fs/binfmt_misc /proc/sys/fs/binfmt_misc proc -
mount /fs/fuse/connections /sys/fs/fuse/connections sysfs -
mount /fs/pstore /sys/fs/pstore sysfs -
mount /kernel/debug /sys/kernel/debug sysfs -
mount /kernel/security /sys/kernel/security sysfs -
mount /kernel/tracing /sys/kernel/tracing sysfs -
mount /.lxc-boot-id /proc/sys/kernel/random/boot_id tmpfs -
mount / /sys/fs/cgroup tmpfs -
mount / /sys/fs/cgroup/unified cgroup2 -
mount / /sys/fs/cgroup/systemd cgroup -
mount / /sys/fs/cgroup/freezer cgroup -
mount / /sys/fs/cgroup/cpuset cgroup -
mount / /sys/fs/cgroup/blkio cgroup -
mount / /sys/fs/cgroup/pids cgroup -
mount / /sys/fs/cgroup/memory cgroup -
mount / /sys/fs/cgroup/devices cgroup -
"""
NSPAWN = """\
mount / /sys tmpfs -
mount / /proc proc -
mount /sys /proc/sys proc -
mount /sys/net /proc/sys/net proc -
mount /sys/net /proc/sys/net proc -
mount /acpi /proc/acpi proc -
mount /bus /proc/bus proc -
mount /fs /proc/fs proc -
mount /irq /proc/irq proc -
mount /block /sys/block sysfs -
mount /bus /sys/bus sysfs -
mount /class /sys/class sysfs -
mount /dev /sys/dev sysfs -
mount /devices /sys/devices sysfs -
mount /kernel /sys/kernel sysfs -
mount / /sys/fs/cgroup tmpfs -
mount / /sys/fs/cgroup/cpuset cgroup -
mount / /sys/fs/cgroup/cpu cgroup -
mount / /sys/fs/cgroup/cpuacct cgroup -
mount / /sys/fs/cgroup/pids cgroup -
mount / /sys/fs/cgroup/memory cgroup -
mount / /sys/fs/cgroup/blkio cgroup -
mount / /sys/fs/cgroup/freezer cgroup -
mount / /sys/fs/cgroup/devices cgroup -
mount / /sys/fs/cgroup/unified cgroup2 -
mount / /sys/fs/cgroup/systemd cgroup -
mount /.#proc-sys-kernel-random-boot-idd54a481622bf69cc//deleted /proc/sys/kernel/random/boot_id tmpfs -
mount /.#proc-sys-kernel-random-boot-idd54a481622bf69cc//deleted /proc/sys/kernel/random/boot_id tmpfs -
mount /.#proc-kmsg4387e46b36fe052e//deleted /proc/kmsg tmpfs -
"""
SEEN = {"docker": DOCKER, "lxc": LXD, "systemd-nspawn": NSPAWN}
#: a file of the student's, as a bind's root shows it from a container (the host's path)
MINE = "/containers/gl-49bd69c1-guest/rootfs/root/cpuinfo"


class Engine:
    def __init__(self, virtualization: str, vm: bool = False) -> None:
        self.virtualization = virtualization
        self.capabilities = frozenset({"systemd", "vm"} if vm else {"systemd"})


def judged(engine: str, extra: str = "") -> str | None:
    views = kernel_views.views_of(Engine(engine))
    assert views is not None
    return kernel_views.covered(kernel_views.parse(SEEN[engine] + extra), views)


@pytest.mark.parametrize("engine", sorted(SEEN))
def test_an_engine_s_own_mounts_hide_nothing(engine: str) -> None:
    assert judged(engine) is None
    # they are the engine's, not the kernel's: a VM with the same mounts is tampered with
    seen = kernel_views.parse(SEEN[engine])
    assert kernel_views.covered(seen, ()) is not None


@pytest.mark.parametrize("engine", sorted(SEEN))
@pytest.mark.parametrize(
    ("line", "said"),
    [
        # a cpuinfo of the student's without the hypervisor flag
        (f"mount {MINE} /proc/cpuinfo btrfs -", "btrfs is mounted over /proc/cpuinfo,"),
        # PID 1's environment with another `container=`
        ("mount /root/env /proc/1/environ ext4 -", "over /proc/1/environ"),
        # a folder of its own over the DMI fields
        ("mount / /sys/class/dmi/id tmpfs -", "tmpfs is mounted over /sys/class/dmi/id"),
        # one of the kernel's own files bound where another is read
        ("mount /uptime /proc/cpuinfo proc -", "proc (/uptime) is mounted over /proc/cpuinfo"),
        # an lxcfs file where another is read (only lxcfs's own place is its view)
        (
            "mount /proc/uptime /proc/cpuinfo fuse.lxcfs -",
            "fuse.lxcfs is mounted over /proc/cpuinfo",
        ),
    ],
)
def test_a_student_s_mount_is_tampering_on_every_engine(engine: str, line: str, said: str) -> None:
    why = judged(engine, line)
    assert why and why.startswith("tampered: ") and said in why, why


@pytest.mark.parametrize(
    ("engine", "line"),
    [
        # a second mask over Docker's, with firmware tables of its own in it
        ("docker", "mount / /sys/firmware tmpfs -"),
        # Docker's mask replaced by a folder that is not empty
        ("docker", "mount / /proc/acpi tmpfs -"),
        # a file of the student's called null, where Docker binds /dev/null
        ("docker", "mount /null /proc/keys tmpfs -"),
        # a /sys of the student's over nspawn's
        ("systemd-nspawn", "mount / /sys tmpfs -"),
        # a boot ID of its own, once more than nspawn binds it
        ("systemd-nspawn", "mount /.#proc-sys-kernel-random-boot-id1//deleted /proc/sys/kernel/random/boot_id tmpfs -"),
        ("lxc", "mount /.lxc-boot-id /proc/sys/kernel/random/boot_id tmpfs -"),
    ],
)  # fmt: skip
def test_one_more_of_the_engine_s_own_or_a_mask_that_shows_something_is_tampering(
    engine: str, line: str
) -> None:
    assert judged(engine, line), line


def test_lxcfs_views_are_lxd_s_own() -> None:
    lxcfs = "mount /proc/cpuinfo /proc/cpuinfo fuse.lxcfs -\n"
    lxcfs += "mount /sys/devices/system/cpu /sys/devices/system/cpu fuse.lxcfs -\n"
    assert judged("lxc", lxcfs) is None
    assert judged("docker", lxcfs) is not None  # not Docker's


def test_which_views_a_backend_s_machines_are_judged_by() -> None:
    assert kernel_views.views_of(Engine("qemu", vm=True)) == ()
    assert kernel_views.views_of(Engine("docker")) == engine_mounts.DOCKER
    # Vagrant's docker provider says docker; an engine not known is not judged
    assert kernel_views.views_of(Engine("podman")) is None
    assert kernel_views.views_of(object()) is None
