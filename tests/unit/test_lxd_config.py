"""LXD instance config from a MachineSpec: limits, id maps, disk bounds (no engine)."""

from __future__ import annotations

import re

import pytest

from orchestrator.backends.contract import LabRef, MachineSpec
from orchestrator.backends.lxd.config import (
    IDMAP_SIZE,
    INNER_DOCKER_SCRIPT,
    SECCOMP_DENY,
    disk_size,
    instance_config,
    is_isolated,
    limits,
    root_disk,
)

LAB = LabRef("demo", "ana")


def test_every_machine_is_unprivileged_with_an_isolated_map() -> None:
    config = limits(MachineSpec(LAB, "web", "debian-12-systemd"))
    assert config["security.idmap.isolated"] == "true"
    assert config["security.privileged"] == "false"
    assert int(config["security.idmap.size"]) == IDMAP_SIZE >= 165536  # room for nested LXD
    assert is_isolated(config)


def test_is_isolated_refuses_privileged_or_shared_maps() -> None:
    assert not is_isolated({})
    assert not is_isolated({"security.idmap.isolated": "false"})
    assert not is_isolated({"security.idmap.isolated": "true", "security.privileged": "true"})


def test_cpu_share_is_a_quota_over_whole_cpus() -> None:
    config = limits(MachineSpec(LAB, "web", "img", cpus=1.5, memory=384 * 1024**2, pids=77))
    assert config["limits.cpu"] == "2"
    assert config["limits.cpu.allowance"] == "150ms/100ms"
    assert config["limits.memory"] == str(384 * 1024**2)
    assert config["limits.processes"] == "77"
    assert limits(MachineSpec(LAB, "w", "img", cpus=0.25))["limits.cpu"] == "1"
    assert limits(MachineSpec(LAB, "w", "img", cpus=0.25))["limits.cpu.allowance"] == "25ms/100ms"


def test_disk_size_is_the_bound_beyond_the_image_on_enforcing_pools_only() -> None:
    spec = MachineSpec(LAB, "web", "img", disk=2 * 1024**3)
    image = 159 * 1024**2 + 5
    size = disk_size(spec, image, "btrfs")
    assert size is not None and size % 1024**2 == 0
    assert 2 * 1024**3 + image <= size < 2 * 1024**3 + image + 1024**2
    # simple quotas charge the image's files to the image: the bound is the disk alone
    assert disk_size(spec, image, "btrfs", owned_only=True) == 2 * 1024**3
    assert disk_size(spec, image, "dir") is None
    assert disk_size(spec, image, None) is None
    assert root_disk("guestlab", size) == {
        "type": "disk",
        "path": "/",
        "pool": "guestlab",
        "size": str(size),
    }
    assert "size" not in root_disk("default", None)


def test_labels_and_limits_together() -> None:
    config = instance_config(MachineSpec(LAB, "web", "img"))
    assert config["user.guestlab.machine"] == "web"
    assert config["user.guestlab.lab"] == LAB.key
    assert config["security.nesting"] == "true"
    assert "raw.lxc" not in config  # systemd: the image's own init
    idle = instance_config(MachineSpec(LAB, "box", "img", init="none"))
    assert idle["raw.lxc"] == "lxc.init.cmd = /bin/sleep infinity"


def btrfs_iow(nr: int) -> int:
    """_IOW(0x94, nr, 4096) as <linux/btrfs.h> computes it."""
    return (1 << 30) | (4096 << 16) | (0x94 << 8) | nr


def refused(rule: str, syscall: str, args: tuple[int, ...]) -> bool:
    """Whether an LXC seccomp v2 rule line `NAME errno N [idx,value,op(,mask)]...` matches
    a call: every comparison on the 64-bit argument, as libseccomp makes it."""
    name, _, rest = rule.partition(" ")
    if name != syscall:
        return False
    cmps = re.findall(r"\[(\d+),(\w+),(\w+)(?:,(\w+))?\]", rest)
    assert cmps, rule
    for index, value, op, mask in cmps:
        arg, want = args[int(index)], int(value, 0)
        if op == "SCMP_CMP_MASKED_EQ":
            ok = arg & int(mask, 0) == want
        elif op == "SCMP_CMP_EQ":
            ok = arg == want
        else:
            raise AssertionError(f"no model of {op}")
        if not ok:
            return False
    return True


def test_every_machine_refuses_new_btrfs_subvolumes_with_eperm() -> None:
    config = limits(MachineSpec(LAB, "web", "img"))
    assert config["security.syscalls.deny"] == SECCOMP_DENY
    assert "raw.seccomp" not in config  # it would replace LXD's whole policy
    assert SECCOMP_DENY.startswith("ioctl errno 1 [1,")  # EPERM, on the request
    assert "\n" not in SECCOMP_DENY  # one line of LXD's deny list


@pytest.mark.parametrize(
    "request_",
    [
        btrfs_iow(0x01),  # SNAP_CREATE
        btrfs_iow(0x0E),  # SUBVOL_CREATE
        btrfs_iow(0x17),  # SNAP_CREATE_V2
        btrfs_iow(0x18),  # SUBVOL_CREATE_V2
        btrfs_iow(0x0F),  # SNAP_DESTROY
        btrfs_iow(0x3F),  # SNAP_DESTROY_V2
        btrfs_iow(0xFF),
        0x5000940E | 0xFFFFFFFF << 32,  # the kernel drops the upper half: so must we
        0x5000940E | 1 << 32,
    ],
)
def test_the_rule_refuses_btrfs_volume_ioctls(request_: int) -> None:
    assert refused(SECCOMP_DENY, "ioctl", (3, request_, 0))


@pytest.mark.parametrize(
    "request_",
    [
        0x5401,  # TCGETS: terminals
        0x5414,  # TIOCSWINSZ
        0x541B,  # FIONREAD
        0x80086601,  # FS_IOC_GETFLAGS (lsattr)
        0x90009427,  # BTRFS_IOC_DEVICES_READY: _IOR, not _IOW
        0x500093FF,  # just below the range
        0x50009500,  # just above it
        0xC4009420,  # BTRFS_IOC_BALANCE_V2 (another size)
    ],
)
def test_the_rule_leaves_other_ioctls_alone(request_: int) -> None:
    assert not refused(SECCOMP_DENY, "ioctl", (3, request_, 0))
    assert not refused(SECCOMP_DENY, "open", (3, btrfs_iow(0x0E), 0))


def test_an_inner_docker_is_kept_off_btrfs_subvolumes_only_where_unconfigured() -> None:
    lines = INNER_DOCKER_SCRIPT.strip().splitlines()
    assert lines[0].startswith("command -v dockerd") and lines[0].endswith("|| exit 0")
    assert "[ -e /etc/docker/daemon.json ] && exit 0" in lines  # never overwrites one
    assert """'{"storage-driver": "overlay2"}\\n'""" in INNER_DOCKER_SCRIPT
    assert lines[-1] == "systemctl try-restart docker.service"  # only if it runs
