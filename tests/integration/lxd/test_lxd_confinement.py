"""The LXD backend keeps a student's root in the lab, against a real LXD daemon: an id map
of its own per machine, bounds on disk, output, time and cgroups that root inside cannot
lift, no btrfs subvolume made inside. (test_lxd_backend.py has the contract.)"""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import pytest

from orchestrator.backends.contract import (
    DEFAULT_DISK,
    OUTPUT_LIMIT,
    LabRef,
    MachineSpec,
    no_progress,
)
from orchestrator.backends.lxd import LxdBackend, instance_name
from orchestrator.backends.lxd import config as lxd_config
from orchestrator.backends.lxd import host as lxd_host
from tests.integration.lxd.machine import IMAGE, new_lab, run

pytestmark = pytest.mark.lxd


# -- a student's root stays in the lab ------------------------------------------------


def uid_map(backend: LxdBackend, spec: MachineSpec) -> tuple[int, int, int]:
    first = run(backend, spec, "cat", "/proc/self/uid_map").splitlines()[0].split()
    inside, host, count = (int(x) for x in first)
    return inside, host, count


def host_uid_of_init(backend: LxdBackend, spec: MachineSpec) -> int:
    pid = backend.client().instances.get(instance_name(spec.lab, spec.name)).state().pid
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def test_each_machine_has_an_id_map_of_its_own(backend: LxdBackend, web: MachineSpec) -> None:
    other_lab = new_lab()
    other = MachineSpec(other_lab, "web", IMAGE, init="none")
    try:
        backend.create(other, no_progress)
        ours, theirs = uid_map(backend, web), uid_map(backend, other)
        for inside, host, count in (ours, theirs):
            assert inside == 0 and host >= 65536 and count == lxd_config.IDMAP_SIZE
        # the two ranges do not overlap: root of one lab is nobody in the other
        (_, a, n), (_, b, m) = ours, theirs
        assert a + n <= b or b + m <= a, (ours, theirs)
        # and the kernel agrees: each machine's init runs as its own range's first uid
        assert host_uid_of_init(backend, web) == a
        assert host_uid_of_init(backend, other) == b
        config = backend.client().instances.get(instance_name(web.lab, web.name)).config
        assert lxd_config.is_isolated(config)
        assert backend.host_root_risk() is None
    finally:
        backend.destroy(other_lab)


def test_a_clone_gets_an_id_map_of_its_own(backend: LxdBackend, lab: LabRef) -> None:
    src = MachineSpec(lab, "idsrc", IMAGE, init="none")
    dst = MachineSpec(lab, "iddst", IMAGE, init="none")
    backend.create(src, no_progress)
    backend.clone(src, dst, no_progress)
    (_, a, n), (_, b, m) = uid_map(backend, src), uid_map(backend, dst)
    assert a + n <= b or b + m <= a
    # the copy's files were shifted to its range: root inside still owns /etc
    assert run(backend, dst, "stat", "-c", "%u", "/etc/passwd") == "0"


def test_writing_beyond_the_disk_bound_is_refused(backend: LxdBackend, web: MachineSpec) -> None:
    inst = backend.client().instances.get(instance_name(web.lab, web.name))
    size = int(inst.devices["root"]["size"])
    # the bound, plus the image where the pool has full accounting (lxd/config.py)
    if lxd_host.pool_quota_mode(inst.devices["root"]["pool"]) == "squota":
        assert size == DEFAULT_DISK
    else:
        assert DEFAULT_DISK < size < DEFAULT_DISK + 1024**3
    res = backend.exec(web.lab, web.name, ["fallocate", "-l", "3G", "/var/tmp/x"], timeout=60)
    assert res.exit_code != 0 and "quota" in res.stderr.lower(), res
    # written, not only reserved: the kernel must still enforce the bound after other
    # labs' machines were deleted (which marks the pool's qgroups inconsistent)
    fill = "dd if=/dev/zero of=/var/tmp/x bs=1M count=4096 status=none && echo FILLED"
    res = backend.exec(web.lab, web.name, ["sh", "-c", fill], timeout=300)
    assert "FILLED" not in res.stdout and "quota" in res.stderr.lower(), res
    run(backend, web, "sh", "-c", "rm -f /var/tmp/x && sync")
    # below the bound, writing works: the refusal above is the bound, not a broken disk
    run(backend, web, "fallocate", "-l", "256M", "/var/tmp/y", timeout=60)
    run(backend, web, "rm", "-f", "/var/tmp/x", "/var/tmp/y")


def running(backend: LxdBackend, spec: MachineSpec, *commands: str) -> list[str]:
    """Processes running one of these command lines in the machine (zombies are dead)."""
    table = run(backend, spec, "ps", "-eo", "stat=,args=")
    rows = [line.split(None, 1) for line in table.splitlines()]
    return [" ".join(r) for r in rows if len(r) == 2 and r[1] in commands and r[0][0] != "Z"]


def log_dir_bytes() -> int:
    total = 0
    for root, _dirs, files in os.walk("/var/log/lxd"):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def test_an_output_flood_is_cut_and_never_reaches_the_host_disk(backend: LxdBackend) -> None:
    lab = new_lab()
    spec = MachineSpec(lab, "flood", IMAGE, init="none")
    name = instance_name(lab, "flood")
    try:
        backend.create(spec, no_progress)
        before = log_dir_bytes()
        started = time.monotonic()
        flood = "head -c 50000000 /dev/zero | tr '\\0' x; echo done"
        res = backend.exec(lab, "flood", ["sh", "-c", flood], timeout=60)
        elapsed = time.monotonic() - started
        assert res.truncated and not res.ok
        assert len(res.stdout) == OUTPUT_LIMIT and set(res.stdout) == {"x"}
        assert elapsed < 20  # stopped at the limit, not after 50 MB
        assert log_dir_bytes() - before < 1024**2
        # the command was killed, not left writing into a pipe nobody reads
        assert running(backend, spec, "head -c 50000000 /dev/zero", "tr \\0 x") == []
        # the same on stderr
        res = backend.exec(lab, "flood", ["sh", "-c", "yes >&2"], timeout=60)
        assert res.truncated and len(res.stderr) == OUTPUT_LIMIT
        assert Path("/var/log/lxd", name).is_dir()
        backend.destroy(lab)
        assert not Path("/var/log/lxd", name).exists()
        assert not [p for p in Path("/var/log/lxd").iterdir() if p.name == name]
    finally:
        backend.destroy(lab)


def test_the_time_limit_is_kept_from_the_host(backend: LxdBackend, web: MachineSpec) -> None:
    # a student's timeout that never stops anything, and a command that ignores TERM
    fake = b'#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done; shift; exec "$@"\n'
    run(backend, web, "cp", "-a", "/usr/bin/timeout", "/root/timeout.orig")
    backend.put_file(web.lab, web.name, "/usr/bin/timeout", fake, 0o755)
    try:
        started = time.monotonic()
        stubborn = "trap '' TERM INT HUP; sleep 41 & sleep 42; echo never"
        res = backend.exec(web.lab, web.name, ["sh", "-c", stubborn], timeout=2)
        elapsed = time.monotonic() - started
        assert res.timed_out and res.exit_code == 124 and "never" not in res.stdout
        assert elapsed < 5
        # its whole process tree is gone, the child started in the background too
        assert running(backend, web, "sleep 41", "sleep 42") == []
    finally:
        run(backend, web, "mv", "-f", "/root/timeout.orig", "/usr/bin/timeout")


MOUNT_AND_WRITE = """
set -u
for ctl in pids memory; do
  mkdir -p /tmp/cg-$ctl
  mountpoint -q /tmp/cg-$ctl || mount -t cgroup -o $ctl none /tmp/cg-$ctl || continue
  echo "mounted $ctl"
done
own_pids=$(sed -n 's/^[0-9]*:pids:\\(.*\\)$/\\1/p' /proc/self/cgroup)
for f in /tmp/cg-pids/pids.max "/tmp/cg-pids$own_pids/pids.max"; do
  echo max > "$f" 2>/dev/null && echo "WROTE $f"
done
for f in /tmp/cg-memory/memory.limit_in_bytes; do
  echo 8589934592 > "$f" 2>/dev/null && echo "WROTE $f"
done
cat /tmp/cg-pids/pids.max /tmp/cg-memory/memory.limit_in_bytes
"""


def test_the_machine_cannot_raise_its_own_cgroup_limits(
    backend: LxdBackend, web: MachineSpec
) -> None:
    res = backend.exec(web.lab, web.name, ["sh", "-c", MOUNT_AND_WRITE], timeout=20)
    lines = res.stdout.splitlines()
    assert "mounted pids" in lines and "mounted memory" in lines, res
    assert not [line for line in lines if line.startswith("WROTE")], res
    assert lines[-2:] == [str(web.pids), str(384 * 1024**2)]
    applied = lxd_host.cgroup_limits(instance_name(web.lab, web.name))
    assert (applied["pids"], applied["memory"]) == (str(web.pids), str(384 * 1024**2))
    assert math.isclose(int(applied["cpu_quota"]) / int(applied["cpu_period"]), 1.5)


# Root in a machine makes a btrfs subvolume with the ioctl, as a student would without
# btrfs-progs. The argument is a variable: perl dies before the call when given pack()'s
# constant-folded, read-only result. The request goes through syscall() so that its upper
# 32 bits can be set: the kernel ignores them (the request is an unsigned int), a 64-bit
# compare in the filter would not. Snapshots name /var/tmp as their source: not a
# subvolume, so btrfs itself says EINVAL, where the filter says EPERM before btrfs looks.
SUBVOLUME_PROBE = r"""
my ($sysno, $request, $layout, $name) = @ARGV;
open(my $dir, "<", "/var/tmp") or die "open: $!\n";
my $args = $layout eq "v2"
  ? pack("q q q a32 a4040", fileno($dir), 0, 0, "", $name)  # btrfs_ioctl_vol_args_v2
  : pack("q a4088", fileno($dir), $name);  # btrfs_ioctl_vol_args
my $r = syscall($sysno, fileno($dir), hex($request), $args);
print $r == 0 ? "CREATED\n" : "refused: $!\n";
print -e "/var/tmp/$name" ? "EXISTS\n" : "ABSENT\n";
"""
IOCTL_SYSCALL = {"x86_64": 16, "aarch64": 29}


@pytest.mark.parametrize(
    ("request_hex", "layout"),
    [
        ("0x5000940e", "v1"),  # SUBVOL_CREATE
        ("0x50009418", "v2"),  # SUBVOL_CREATE_V2
        ("0x50009401", "v1"),  # SNAP_CREATE
        ("0x50009417", "v2"),  # SNAP_CREATE_V2
        ("0xffffffff5000940e", "v1"),  # SUBVOL_CREATE with the upper bits set
    ],
)
def test_no_btrfs_subvolume_can_be_made_inside(
    backend: LxdBackend, web: MachineSpec, request_hex: str, layout: str
) -> None:
    sysno = IOCTL_SYSCALL[os.uname().machine]
    name = f"nested-{request_hex}"
    argv = ["perl", "-e", SUBVOLUME_PROBE, str(sysno), request_hex, layout, name]
    res = backend.exec(web.lab, web.name, argv, timeout=30)
    assert res.stdout.split("\n")[:2] == ["refused: Operation not permitted", "ABSENT"], res
    config = backend.client().instances.get(instance_name(web.lab, web.name)).config
    assert config["security.syscalls.deny"] == lxd_config.SECCOMP_DENY


def test_terminals_and_other_ioctls_still_work(backend: LxdBackend, web: MachineSpec) -> None:
    # a pseudo-terminal: stty's TCGETS/TIOCGWINSZ, and a resize (TIOCSWINSZ)
    out = run(backend, web, "script", "-qec", "stty rows 31 cols 97; stty size", "/dev/null")
    assert out.split()[-2:] == ["31", "97"], out
    # an ioctl of btrfs outside the refused range on the machine's btrfs root:
    # FS_IOC_GETFLAGS (lsattr) and FIONREAD on a pipe
    probe = (
        'open(my $f, "<", "/etc/hostname") or die; my $v = pack("L", 0);'
        ' ioctl($f, 0x80086601, $v) or die "GETFLAGS: $!\\n";'
        ' pipe(my $r, my $w) or die; syswrite($w, "abc"); my $n = pack("L", 0);'
        ' ioctl($r, 0x541B, $n) or die "FIONREAD: $!\\n"; print unpack("L", $n), "\\n"'
    )
    assert run(backend, web, "perl", "-e", probe) == "3"
