"""The nspawn backend keeps a student's root in the lab, against the real systemd-nspawn:
machines are btrfs snapshots owned by an unprivileged range, root inside is no root on the
host, and the bounds on cgroups, disk, output and time hold against it."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from uuid import uuid4

import pytest

from orchestrator.backends.contract import OUTPUT_LIMIT, LabRef, MachineSpec
from orchestrator.backends.nspawn import NspawnBackend
from tests.integration.nspawn.machine import (
    _host_uid_of_root,
    _machine_dir,
    _meta,
    _procs_mentioning,
    _sh,
    _status,
)

pytestmark = pytest.mark.nspawn


# ------------------------------------------------------------ root stays in the lab


def test_machines_are_btrfs_snapshots_owned_by_an_unprivileged_range(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    # scripts/setup/nspawn.sh makes the pool; without it every machine is a full copy
    assert backend.trees.btrfs, f"{backend.trees.root} is not btrfs: run scripts/setup/nspawn.sh"
    rootfs = _machine_dir(lab, "web") / "rootfs"
    assert os.stat(rootfs).st_ino == 256  # a subvolume's root directory
    owner = os.stat(rootfs).st_uid
    assert owner >= 65536 and owner == _host_uid_of_root(backend, lab, "web")
    assert _meta(lab, "web")["disk_limit"] is True


def test_root_in_the_machine_is_not_root_on_the_host(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    uid_map = _sh(backend, lab, "web", "cat /proc/self/uid_map").split()
    assert uid_map != ["0", "0", "4294967295"]
    assert uid_map[0] == "0" and int(uid_map[1]) >= 65536
    marker = f"{uuid4().int % 1000}.{uuid4().int % 1000 + 1}"  # a unique sleep length
    _sh(backend, lab, "web", f"setsid sleep {marker} >/dev/null 2>&1 < /dev/null &")
    try:
        deadline = time.monotonic() + 10
        while not (pids := _procs_mentioning(f"sleep\0{marker}")) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(pids) == 1, pids
        status = _status(pids[0])
        assert status["Uid"].split()[0] == uid_map[1]  # as seen from the host
        # its capabilities belong to the machine's user namespace, not the host's
        assert os.readlink(f"/proc/{pids[0]}/ns/user") != os.readlink("/proc/self/ns/user")
        init = _status(_meta(lab, "web")["init_pid"])
        assert status["CapBnd"] == init["CapBnd"]
        assert status["Seccomp"] == "2"
        assert status["Seccomp_filters"] == init["Seccomp_filters"] != "0"
    finally:
        for pid in _procs_mentioning(f"sleep\0{marker}"):
            os.kill(pid, signal.SIGKILL)


def test_a_fresh_procfs_cannot_write_the_host_core_pattern(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    before = Path("/proc/sys/kernel/core_pattern").read_text()
    res = backend.exec(
        lab,
        "web",
        [
            "sh",
            "-c",
            "mkdir -p /mnt/p && mount -t proc proc /mnt/p && echo mounted && "
            "cat /mnt/p/sys/kernel/core_pattern > /tmp/cp && "
            "cat /tmp/cp > /mnt/p/sys/kernel/core_pattern && echo written",
        ],
        timeout=30,
    )
    backend.exec(lab, "web", ["umount", "/mnt/p"], timeout=10)
    assert "mounted" in res.stdout  # the mount works: the write is what is refused
    assert "written" not in res.stdout and res.exit_code != 0, res
    assert Path("/proc/sys/kernel/core_pattern").read_text() == before


def test_debugfs_cannot_be_mounted(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    res = backend.exec(
        lab, "web", ["sh", "-c", "mkdir -p /mnt/d && mount -t debugfs none /mnt/d"], timeout=30
    )
    assert res.exit_code != 0, res
    assert _sh(backend, lab, "web", "grep -c ' /mnt/d ' /proc/mounts || true") == "0"


@pytest.mark.parametrize(
    ("hierarchy", "fname", "field"),
    [("pids", "pids.max", "pids"), ("memory", "memory.limit_in_bytes", "memory")],
)
def test_cgroup_limits_hold_against_root_in_the_machine(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec, hierarchy: str, fname: str, field: str
) -> None:
    meta = _meta(lab, "web")
    # the limit the host set, read on the host, is the spec's
    mine = [d for d in meta["cgroups"] if f"/{hierarchy}/" in d]
    assert len(mine) == 1, meta["cgroups"]
    assert Path(mine[0], fname).read_text().strip() == str(getattr(web, field))
    res = backend.exec(
        lab,
        "web",
        [
            "sh",
            "-c",
            f"mkdir -p /mnt/{hierarchy} && mount -t cgroup -o {hierarchy} none /mnt/{hierarchy}"
            f" && echo mounted && v=$(cat /mnt/{hierarchy}/{fname}) && echo $v"
            f" && echo $v > /mnt/{hierarchy}/{fname} && echo written",
        ],
        timeout=30,
    )
    backend.exec(lab, "web", ["umount", f"/mnt/{hierarchy}"], timeout=10)
    assert "mounted" in res.stdout, res  # the hierarchy is there: the write is refused
    assert "written" not in res.stdout and res.exit_code != 0, res
    assert Path(mine[0], fname).read_text().strip() == str(getattr(web, field))


def test_writes_beyond_the_disk_bound_fail(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    assert web.disk == 2 * 1024**3
    small = backend.exec(lab, "web", ["fallocate", "-l", "200M", "/var/tmp/small"], timeout=60)
    assert small.ok, small  # the bound is not simply "nothing"
    big = backend.exec(lab, "web", ["fallocate", "-l", "3G", "/var/tmp/big"], timeout=60)
    _sh(backend, lab, "web", "rm -f /var/tmp/small /var/tmp/big")
    assert big.exit_code != 0, big
    assert "quota" in big.stderr.lower() or "space" in big.stderr.lower(), big


# Makes a btrfs subvolume in /var/tmp with the ioctl named by $ARGV[0] (hex; the upper half
# of a 64-bit request is dropped by the kernel), as a student would without btrfs-progs.
# perl's ioctl writes its buffer back, so the buffer is a variable (pack()'s value is
# read-only: perl would die before any ioctl).
SUBVOLUME_PERL = r"""
my ($req, $name) = @ARGV;
open(my $f, "<", "/var/tmp") or die "open: $!\n";
my $args = (hex($req) & 0xffffffff) == 0x50009418
    ? pack("q q q a32 a4040", 0, 0, 0, "", $name)  # btrfs_ioctl_vol_args_v2
    : pack("q a4088", 0, $name);                    # btrfs_ioctl_vol_args
print "ppid ", getppid(), "\n";
print ioctl($f, hex($req), $args) ? "CREATED\n" : "refused: $!\n";
"""
# SUBVOL_CREATE, the same with its upper half set, SUBVOL_CREATE_V2
SUBVOLUME_REQUESTS = ("0x5000940e", "0x15000940e", "0x50009418")


def test_no_process_of_the_machine_can_make_a_btrfs_subvolume(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    # a new subvolume would be outside the qgroup that bounds the machine's disk
    meta = _meta(lab, "web")
    for pid in (meta["nspawn_pid"], meta["init_pid"]):  # the filter is there from the start
        assert _status(pid)["Seccomp"] == "2", pid
    outputs = []
    for i, req in enumerate(SUBVOLUME_REQUESTS):
        name = f"nested{i}"
        # through guestlab's exec, and as a service of the machine's own systemd: a child
        # of its PID 1, which only has what the machine's init has
        direct = ["perl", "-e", SUBVOLUME_PERL, req, f"{name}-exec"]
        unit = ["systemd-run", "--wait", "--pipe", "--quiet", *direct[:-1], f"{name}-unit"]
        for argv in (direct, unit):
            res = backend.exec(lab, "web", argv, timeout=60)
            outputs.append((req, argv[0], res))
    made = _sh(backend, lab, "web", "ls /var/tmp | grep '^nested' || true")
    _sh(backend, lab, "web", "rmdir /var/tmp/nested* 2>/dev/null || true")
    for req, via, res in outputs:
        assert "refused: Operation not permitted" in res.stdout, (req, via, res)
        if via == "systemd-run":
            assert "ppid 1\n" in res.stdout, res  # started by the machine's systemd
    assert made == ""
    # every other ioctl passes: a terminal still has a size
    tty = backend.exec(lab, "web", ["script", "-qec", "stty size", "/dev/null"], timeout=30)
    assert tty.ok and tty.stdout.split() == ["0", "0"], tty


def test_output_flood_is_capped_quickly(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    started = time.monotonic()
    res = backend.exec(lab, "box", ["sh", "-c", "yes | head -c 50M"], timeout=60)
    assert time.monotonic() - started < 10
    assert res.truncated and len(res.stdout) <= OUTPUT_LIMIT
    assert res.stdout.startswith("y\ny\n")
    ok = backend.exec(lab, "box", ["sh", "-c", "head -c 1000 /dev/zero | tr '\\0' x"], timeout=10)
    assert ok.ok and not ok.truncated and len(ok.stdout) == 1000


def test_timeout_is_enforced_from_the_host(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    # a student replaces timeout(1) with one that never stops anything
    _sh(backend, lab, "box", "cp -p /usr/bin/timeout /usr/bin/timeout.real")
    backend.put_file(lab, "box", "/usr/bin/timeout", b'#!/bin/sh\nshift\nexec "$@"\n', 0o755)
    try:
        started = time.monotonic()
        res = backend.exec(lab, "box", ["timeout", "1", "sh", "-c", "sleep 41; :"], timeout=3)
        assert time.monotonic() - started < 8
        assert res.timed_out and not res.ok
        assert _sh(backend, lab, "box", "pgrep -f 'sleep 4[1]' || true") == ""
    finally:
        _sh(backend, lab, "box", "mv -f /usr/bin/timeout.real /usr/bin/timeout")
