"""The LXD backend against a real LXD daemon (scripts/setup/lxd.sh prepares one).

Skipped with the reason when LXD cannot be used here; under CI=true that is a failure,
since an engine test that never runs proves nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest

from orchestrator.backends.contract import (
    DEFAULT_DISK,
    OUTPUT_LIMIT,
    Backend,
    LabRef,
    MachineSpec,
    no_progress,
)
from orchestrator.backends.lxd import LxdBackend, instance_name
from orchestrator.backends.lxd import config as lxd_config
from orchestrator.backends.lxd import host as lxd_host
from orchestrator.errors import MachineUnavailable, UsageError
from tests.integration.conftest import engine

pytestmark = pytest.mark.lxd

IMAGE = "debian-12-systemd"


def new_lab() -> LabRef:
    return LabRef("lxd-test", f"t{uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def backend() -> LxdBackend:
    b = engine("lxd")
    assert isinstance(b, LxdBackend)
    b.ensure_image(IMAGE, no_progress)  # first run on a host: debootstrap, ~40 s
    return b


@pytest.fixture(scope="module")
def lab(backend: LxdBackend) -> Iterator[LabRef]:
    ref = new_lab()
    yield ref
    backend.destroy(ref)


@pytest.fixture(scope="module")
def web(backend: LxdBackend, lab: LabRef) -> MachineSpec:
    spec = MachineSpec(lab, "web", IMAGE, hostname="web-host", memory=384 * 1024**2, cpus=1.5)
    backend.create(spec, no_progress)
    return spec


def run(backend: LxdBackend, spec: MachineSpec, *argv: str, timeout: float = 20) -> str:
    res = backend.exec(spec.lab, spec.name, list(argv), timeout=timeout)
    assert res.ok, res
    return res.stdout.strip()


def test_availability_names_the_server(backend: LxdBackend) -> None:
    state = backend.availability()
    assert state.usable
    assert state.detail.startswith("LXD ")
    assert isinstance(backend, Backend)


def test_machine_boots_systemd_with_its_hostname(backend: LxdBackend, web: MachineSpec) -> None:
    assert run(backend, web, "systemd-detect-virt") == "lxc"
    assert run(backend, web, "hostname") == "web-host"
    res = backend.exec(web.lab, web.name, ["systemctl", "is-system-running"], timeout=20)
    assert res.stdout.strip() in ("running", "degraded")


def test_machine_has_no_network_device(backend: LxdBackend, web: MachineSpec) -> None:
    links = run(backend, web, "ip", "-o", "link", "show").splitlines()
    assert [line.split(":")[1].strip() for line in links] == ["lo"]


def test_limits_are_applied(backend: LxdBackend, web: MachineSpec) -> None:
    inst = backend.client().instances.get(instance_name(web.lab, web.name))
    assert inst.config["limits.memory"] == str(384 * 1024**2)
    assert inst.config["limits.cpu"] == "2"  # 1.5 CPUs rounds up to a whole one
    assert inst.config["limits.processes"] == str(web.pids)
    assert inst.config["user.guestlab.machine"] == "web"
    assert inst.config["user.guestlab.student"] == web.lab.student
    # and the kernel enforces it (cgroup v1 or v2, whichever the host has)
    res = backend.exec(
        web.lab,
        web.name,
        [
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory.max 2>/dev/null"
            " || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
        timeout=10,
    )
    assert res.stdout.strip() == str(384 * 1024**2)
    # what the host's kernel applies is what the scenario asked: 384 MiB, 1024 PIDs, 1.5
    # CPUs as a CFS quota over a set of two
    applied = lxd_host.cgroup_limits(instance_name(web.lab, web.name))
    assert applied["memory"] == str(384 * 1024**2)
    assert applied["pids"] == str(web.pids)
    assert int(applied["cpu_quota"]) / int(applied["cpu_period"]) == 1.5
    assert cpuset_size(applied["cpus"]) == min(2, os.cpu_count() or 1)


def cpuset_size(cpus: str) -> int:
    count = 0
    for part in cpus.split(","):
        first, _, last = part.partition("-")
        count += int(last or first) - int(first) + 1
    return count


def test_exec_returns_code_and_both_streams(backend: LxdBackend, web: MachineSpec) -> None:
    res = backend.exec(
        web.lab, web.name, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10
    )
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    assert not res.ok


def test_exec_times_out_quickly(backend: LxdBackend, web: MachineSpec) -> None:
    started = time.monotonic()
    res = backend.exec(web.lab, web.name, ["sleep", "30"], timeout=2)
    elapsed = time.monotonic() - started
    assert res.timed_out and res.exit_code == 124 and not res.ok
    assert elapsed < 6


def test_exec_is_not_held_by_a_background_process(backend: LxdBackend, web: MachineSpec) -> None:
    started = time.monotonic()
    res = backend.exec(web.lab, web.name, ["sh", "-c", "sleep 30 & echo started"], timeout=10)
    assert res.ok and res.stdout == "started\n"
    assert time.monotonic() - started < 3


def test_a_quick_command_ends_well_whatever_this_thread_waits(
    backend: LxdBackend, web: MachineSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loaded host: the thread that runs an exec waits for a core between its websocket
    writes. LXD starts the command once stdin, stdout and stderr are connected, and closes
    them all when it ends: the end of input must be written before that, not after (it was
    written last, and a quick command's exec then failed with a broken pipe)."""
    from orchestrator.backends.lxd import execution

    plain = execution._ws_class()

    class Descheduled(plain):  # type: ignore[misc,valid-type]
        def send(self, payload: bytes, binary: bool = False) -> None:
            time.sleep(1.0)
            super().send(payload, binary)

    monkeypatch.setattr(execution, "_ws_class", lambda: Descheduled)
    for argv, want in (
        (["true"], (0, "", "")),
        (["sh", "-c", "echo out; echo err >&2; exit 3"], (3, "out\n", "err\n")),
        (["cat"], (0, "", "")),  # its input is empty, not pending
    ):
        res = backend.exec(web.lab, web.name, argv, timeout=20)
        assert (res.exit_code, res.stdout, res.stderr) == want, (argv, res)


def test_a_ping_answered_after_the_command_ended_is_no_error(
    backend: LxdBackend, web: MachineSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LXD pings an exec's websockets and ws4py answers as it reads, the handshake's reply
    included. An answer written after LXD closed them all (the command ended while this
    thread waited for a core) broke its pipe: it is dropped, the result stands."""
    from orchestrator.backends.lxd import execution

    plain = execution._ws_class()
    connected = []

    class Pinged(plain):  # type: ignore[misc,valid-type]
        def connect(self) -> None:
            super().connect()
            connected.append(self)
            if len(connected) % 4 == 0:  # the last: LXD starts the command now
                time.sleep(1.0)
                self._write(self.stream.pong(b""))

    monkeypatch.setattr(execution, "_ws_class", lambda: Pinged)
    res = backend.exec(
        web.lab, web.name, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=20
    )
    assert (res.exit_code, res.stdout, res.stderr) == (3, "out\n", "err\n"), res


def test_an_exec_lxd_gave_up_waiting_for_is_asked_again(
    backend: LxdBackend, web: MachineSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    """LXD waits five seconds for an exec's websockets, then fails the exec before its
    command starts (a thread kept off the cores that long): the command is asked for
    again, once it is sure not to have run, and runs once."""
    from orchestrator.backends.lxd import execution

    plain = execution._ws_class()
    late = [6.0]

    class Late(plain):  # type: ignore[misc,valid-type]
        def connect(self) -> None:
            if late:
                time.sleep(late.pop())
            super().connect()

    monkeypatch.setattr(execution, "_ws_class", lambda: Late)
    name = f"/root/runs-{uuid4().hex[:8]}"
    res = backend.exec(web.lab, web.name, ["sh", "-c", f"echo x >> {name}; cat {name}"], timeout=20)
    assert (res.exit_code, res.stdout) == (0, "x\n"), res
    assert not late


def test_put_file_writes_content_and_mode(backend: LxdBackend, web: MachineSpec) -> None:
    backend.put_file(web.lab, web.name, "/etc/guestlab-test.conf", b"key = value\n", 0o640)
    assert run(backend, web, "cat", "/etc/guestlab-test.conf") == "key = value"
    assert run(backend, web, "stat", "-c", "%a %U %G", "/etc/guestlab-test.conf") == "640 root root"
    # a directory that does not exist yet is created
    backend.put_file(web.lab, web.name, "/opt/lab/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    assert run(backend, web, "/opt/lab/bin/run.sh") == "hi"


def test_clone_keeps_machine_id_and_files(
    backend: LxdBackend, lab: LabRef, web: MachineSpec
) -> None:
    backend.put_file(web.lab, web.name, "/root/before-clone", b"written before\n", 0o644)
    copy = MachineSpec(lab, "web-copy", IMAGE, hostname="copy-host")
    backend.clone(web, copy, no_progress)

    assert run(backend, copy, "cat", "/etc/machine-id") == run(
        backend, web, "cat", "/etc/machine-id"
    )
    assert run(backend, copy, "cat", "/root/before-clone") == "written before"
    assert run(backend, copy, "hostname") == "copy-host"
    assert run(backend, web, "hostname") == "web-host"
    # the source kept running throughout
    assert backend.client().instances.get(instance_name(lab, web.name)).status == "Running"
    inst = backend.client().instances.get(instance_name(lab, copy.name))
    assert inst.config["user.guestlab.machine"] == "web-copy"
    assert sorted(backend.find(lab)[lab.key].machines) == ["web", "web-copy"]


def test_snapshot_then_restore_brings_a_file_back(
    backend: LxdBackend, lab: LabRef, web: MachineSpec
) -> None:
    backend.put_file(web.lab, web.name, "/root/precious", b"original\n", 0o600)
    backend.snapshot(lab, [web])
    backend.snapshot(lab, [web])  # taking it again replaces it
    run(backend, web, "rm", "/root/precious")
    backend.put_file(web.lab, web.name, "/root/junk", b"student change\n", 0o644)

    backend.restore(lab, [web], no_progress)

    assert run(backend, web, "cat", "/root/precious") == "original"
    assert backend.exec(lab, web.name, ["test", "-e", "/root/junk"], timeout=10).exit_code == 1
    assert run(backend, web, "hostname") == "web-host"


def test_destroy_removes_everything_and_is_idempotent(backend: LxdBackend) -> None:
    lab = new_lab()
    spec = MachineSpec(lab, "doomed", IMAGE, init="none")
    try:
        backend.create(spec, no_progress)
        backend.snapshot(lab, [spec])
        assert lab.key in backend.find()

        # a stopped machine is unavailable, not an engine error
        backend.client().instances.get(instance_name(lab, "doomed")).stop(force=True, wait=True)
        with pytest.raises(MachineUnavailable):
            backend.exec(lab, "doomed", ["true"], timeout=5)

        gone = backend.destroy(lab)
        assert gone.machines == ["doomed"]
        assert gone.other == [f"{instance_name(lab, 'doomed')}/guestlab-start"]
        assert lab.key not in backend.find()
        assert backend.find(lab) == {}
        assert not backend.client().instances.exists(instance_name(lab, "doomed"))
        assert not backend.destroy(lab)  # nothing left: harmless

        with pytest.raises(MachineUnavailable):
            backend.exec(lab, "doomed", ["true"], timeout=5)
    finally:
        backend.destroy(lab)


def test_missing_image_without_build_names_the_command(
    backend: LxdBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.backends.lxd import image as lxd_image

    monkeypatch.setattr(lxd_image, "image_alias", lambda image: f"guestlab/missing-{image}")
    with pytest.raises(UsageError, match=f"guestlab image build {IMAGE} --backend lxd"):
        backend.ensure_image(IMAGE, no_progress, build=False)


def test_names_are_valid_for_lxd() -> None:
    lab = LabRef("a-very-long-scenario-name-indeed", "Student With Spaces@example.org")
    for machine in ("web", "x" * 80, "Web_Server.1", "___"):
        name = instance_name(lab, machine)
        assert len(name) <= 63 and name[0].isalpha() and not name.endswith("-")
        assert all(c.isalnum() or c == "-" for c in name)
    assert instance_name(lab, "web") != instance_name(new_lab(), "web")
    assert LxdBackend().shell_argv(lab, "web") == [
        "lxc",
        "exec",
        instance_name(lab, "web"),
        "--",
        "bash",
        "-l",
    ]


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
    assert DEFAULT_DISK <= size < DEFAULT_DISK + 1024**3  # the bound plus the image
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
