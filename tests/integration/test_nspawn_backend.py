"""The nspawn backend against the real systemd-nspawn of this host.

Every test lab has a random student name and is destroyed by a finalizer. With CI=true an
unusable nspawn fails the tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from uuid import uuid4

import pytest

from orchestrator.backends.contract import OUTPUT_LIMIT, Backend, LabRef, MachineSpec
from orchestrator.backends.nspawn import NspawnBackend, unit_name
from orchestrator.errors import MachineUnavailable, ProvisioningError
from tests.integration.conftest import engine

pytestmark = pytest.mark.nspawn

IMAGE = "debian-12-systemd"
SCENARIO = "nspawn-test"


def _progress(line: str) -> None:
    print(f"[nspawn] {line}")


def _new_lab() -> LabRef:
    return LabRef(SCENARIO, f"t{uuid4().hex[:8]}")


def _machine_dir(lab: LabRef, machine: str) -> Path:
    return NspawnBackend().machine_dir(lab, machine)


def _meta(lab: LabRef, machine: str) -> dict:
    return json.loads((_machine_dir(lab, machine) / "meta.json").read_text())


def _procs_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (what `ps` would find)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(entry.path, "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _sh(backend: NspawnBackend, lab: LabRef, machine: str, script: str) -> str:
    result = backend.exec(lab, machine, ["sh", "-c", script], timeout=30)
    assert result.ok, result
    return result.stdout.strip()


def _status(pid: int) -> dict[str, str]:
    """The fields of /proc/PID/status, read on the host."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _host_uid_of_root(backend: NspawnBackend, lab: LabRef, machine: str) -> int:
    """The host uid that root of the machine is (its init's uid seen from the host)."""
    return int(_status(_meta(lab, machine)["init_pid"])["Uid"].split()[0])


def _booted(backend: NspawnBackend, lab: LabRef, machine: str) -> str:
    return backend.exec(lab, machine, ["systemctl", "is-system-running"], timeout=30).stdout.strip()


@pytest.fixture(scope="module")
def backend() -> NspawnBackend:
    b = engine("nspawn")
    assert isinstance(b, NspawnBackend)
    b.ensure_image(IMAGE, _progress)
    return b


@pytest.fixture(scope="module")
def lab(backend: NspawnBackend) -> Iterator[LabRef]:
    ref = _new_lab()
    yield ref
    backend.destroy(ref)


@pytest.fixture(scope="module")
def web(backend: NspawnBackend, lab: LabRef) -> MachineSpec:
    spec = MachineSpec(
        lab, "web", IMAGE, hostname="web-host", memory=384 * 1024**2, cpus=0.5, pids=600
    )
    started = time.monotonic()
    backend.create(spec, _progress)
    print(f"systemd machine ready in {time.monotonic() - started:.1f} s")
    return spec


@pytest.fixture(scope="module")
def box(backend: NspawnBackend, lab: LabRef) -> MachineSpec:
    spec = MachineSpec(lab, "box", IMAGE, init="none")
    backend.create(spec, _progress)
    return spec


def test_backend_fulfils_the_protocol(backend: NspawnBackend) -> None:
    assert isinstance(backend, Backend)
    assert backend.name == "nspawn"
    assert {"systemd", "clone", "snapshot"} <= backend.capabilities
    assert "systemd" in backend.availability().detail


def test_systemd_machine_boots(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    assert _booted(backend, lab, "web") in ("running", "degraded")
    assert _sh(backend, lab, "web", "systemd-detect-virt") == backend.virtualization
    assert _sh(backend, lab, "web", "hostname") == "web-host"
    assert _sh(backend, lab, "web", "cat /proc/1/comm") == "systemd"
    # --private-network: only a loopback interface
    assert _sh(backend, lab, "web", "ls /sys/class/net") == "lo"


def test_limits_apply_to_the_machine(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    meta = _meta(lab, "web")
    if meta["route"] != "keep-unit":
        pytest.skip("limits are systemd-machined's job on a systemd host")
    init = meta["init_pid"]
    cgroups = dict(
        line.split(":", 2)[1:] for line in Path(f"/proc/{init}/cgroup").read_text().splitlines()
    )
    expected = {
        "pids": ("pids.max", str(web.pids)),
        "memory": ("memory.limit_in_bytes", str(web.memory)),
        "cpus": ("cpu.cfs_quota_us", "50000"),
    }
    controller = {"pids": "pids", "memory": "memory", "cpus": "cpu"}
    checked = 0
    for limit, (fname, value) in expected.items():
        if not meta["limits"][limit]:
            continue
        ctrl = controller[limit]
        own = cgroups[next(k for k in cgroups if ctrl in k.split(","))]
        candidates = [p for p in Path("/sys/fs/cgroup").glob(f"*{ctrl}*") if p.is_dir()]
        values = [
            (base / own.lstrip("/") / fname).read_text().strip()
            for base in candidates
            if (base / own.lstrip("/") / fname).exists()
        ]
        assert value in values, (limit, values)
        checked += 1
    if Path("/sys/fs/cgroup/pids").is_dir():
        assert checked == 3, meta["limits"]


def test_machine_without_init(backend: NspawnBackend, lab: LabRef, box: MachineSpec) -> None:
    assert _sh(backend, lab, "box", "cat /proc/2/cmdline | tr '\\0' ' '") == "/bin/sleep infinity"
    assert _sh(backend, lab, "box", "hostname") == "box"
    assert _sh(backend, lab, "box", "systemd-detect-virt || true") == "systemd-nspawn"


def test_exec_reports_exit_code_and_streams(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    result = backend.exec(lab, "box", ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=10)
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert not result.ok and not result.timed_out
    env = backend.exec(lab, "box", ["sh", "-c", 'echo "$HOME $(id -u) $PWD"'], timeout=10)
    assert env.stdout == "/root 0 /\n"
    # the machine's own binaries and files, not the host's
    assert "bookworm" in _sh(backend, lab, "box", "cat /etc/os-release")


def test_exec_timeout_kills_the_command(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    started = time.monotonic()
    result = backend.exec(lab, "box", ["sleep", "30"], timeout=2)
    assert time.monotonic() - started < 8
    assert result.timed_out and result.exit_code == 124 and not result.ok
    assert _sh(backend, lab, "box", "pgrep -x sleep -a | grep -c 'sleep 30' || true") == "0"


def test_put_file_writes_content_mode_and_owner(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    backend.put_file(lab, "box", "/etc/guestlab/app.conf", b"key = value\n\xff", 0o640)
    assert _sh(backend, lab, "box", "stat -c '%a %u %g' /etc/guestlab/app.conf") == "640 0 0"
    raw = backend.exec(lab, "box", ["cat", "/etc/guestlab/app.conf"], timeout=10)
    assert raw.stdout == "key = value\n\ufffd"
    backend.put_file(lab, "box", "/etc/guestlab/app.conf", b"again\n", 0o755)
    assert _sh(
        backend, lab, "box", "stat -c %a /etc/guestlab/app.conf; cat /etc/guestlab/app.conf"
    ) == ("755\nagain")


def test_put_file_never_follows_a_link_onto_the_host(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec, tmp_path: Path
) -> None:
    # A student's absolute symlink names a host directory; it must resolve inside the machine.
    _sh(backend, lab, "box", f"ln -s {tmp_path} /root/escape")
    with pytest.raises(ProvisioningError):  # dangling inside the machine: nothing to write to
        backend.put_file(lab, "box", "/root/escape/pwned", b"x\n", 0o644)
    assert not (tmp_path / "pwned").exists()

    _sh(backend, lab, "box", f"mkdir -p {tmp_path}")
    backend.put_file(lab, "box", "/root/escape/pwned", b"x\n", 0o644)
    assert not (tmp_path / "pwned").exists()
    assert _sh(backend, lab, "box", f"cat {tmp_path}/pwned") == "x"


def test_clone_copies_every_file_and_keeps_the_source_running(
    backend: NspawnBackend, lab: LabRef, web: MachineSpec
) -> None:
    marker = uuid4().hex
    backend.put_file(lab, "web", "/root/marker", marker.encode(), 0o600)
    _sh(backend, lab, "web", f"echo {marker} > /var/lib/written-before-clone")
    target = MachineSpec(lab, "web-clone", IMAGE, hostname="web-clone")
    started = time.monotonic()
    backend.clone(web, target, _progress)
    print(f"clone ready in {time.monotonic() - started:.1f} s")

    machine_id = "cat /etc/machine-id"
    assert _sh(backend, lab, "web-clone", machine_id) == _sh(backend, lab, "web", machine_id)
    assert _sh(backend, lab, "web-clone", "cat /root/marker") == marker
    assert _sh(backend, lab, "web-clone", "cat /var/lib/written-before-clone") == marker
    assert _sh(backend, lab, "web-clone", "hostname") == "web-clone"
    assert _booted(backend, lab, "web-clone") in ("running", "degraded")
    assert _booted(backend, lab, "web") in ("running", "degraded")
    # the two are separate machines: a change in one stays there
    _sh(backend, lab, "web-clone", "rm /root/marker")
    assert _sh(backend, lab, "web", "cat /root/marker") == marker


def test_snapshot_and_restore(backend: NspawnBackend, lab: LabRef, web: MachineSpec) -> None:
    backend.put_file(lab, "web", "/etc/lab-start", b"original\n", 0o644)
    backend.snapshot(lab, [web])
    assert "snapshot:web" in backend.find(lab)[lab.key].other

    _sh(backend, lab, "web", "rm /etc/lab-start; echo junk > /etc/added-later")
    started = time.monotonic()
    backend.restore(lab, [web], _progress)
    print(f"restore ready in {time.monotonic() - started:.1f} s")

    assert _sh(backend, lab, "web", "cat /etc/lab-start") == "original"
    assert _sh(backend, lab, "web", "test -e /etc/added-later && echo yes || echo no") == "no"
    assert _booted(backend, lab, "web") in ("running", "degraded")
    assert _sh(backend, lab, "web", "hostname") == "web-host"


def test_destroy_leaves_nothing_and_is_idempotent(backend: NspawnBackend) -> None:
    lab = _new_lab()
    try:
        # in threads, as lab.py provisions the machines of a lab
        specs = [MachineSpec(lab, "web", IMAGE), MachineSpec(lab, "box", IMAGE, init="none")]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for fut in [pool.submit(backend.create, spec, _progress) for spec in specs]:
                fut.result()
        units = [unit_name(lab, "web"), unit_name(lab, "box")]
        assert lab.key in backend.find()
        assert sorted(backend.find(lab)[lab.key].machines) == ["box", "web"]
        assert all(_procs_mentioning(u) for u in units)

        # A crash between spawn and saving the PID: destroy must find nspawn by its name.
        meta_file = _machine_dir(lab, "web") / "meta.json"
        meta = json.loads(meta_file.read_text())
        meta["nspawn_pid"] = meta["init_pid"] = None
        meta_file.write_text(json.dumps(meta))

        started = time.monotonic()
        found = backend.destroy(lab)
        print(f"destroy took {time.monotonic() - started:.1f} s")
        assert sorted(found.machines) == ["box", "web"]
        assert not _machine_dir(lab, "web").parent.exists()
        assert not [pid for u in units for pid in _procs_mentioning(u)]
        assert not [u for u in units if Path("/run/systemd/nspawn/propagate", u).exists()]
        assert lab.key not in backend.find()
        assert backend.find(lab) == {}

        assert not backend.destroy(lab)  # harmless the second time
        with pytest.raises(MachineUnavailable):
            backend.exec(lab, "web", ["true"], timeout=5)
    finally:
        backend.destroy(lab)


def test_dead_machine_is_unavailable_and_still_destroyed(backend: NspawnBackend) -> None:
    lab = _new_lab()
    try:
        backend.create(MachineSpec(lab, "box", IMAGE, init="none"), _progress)
        os.kill(_meta(lab, "box")["nspawn_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _procs_mentioning(unit_name(lab, "box")) and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(MachineUnavailable, match="not running"):
            backend.exec(lab, "box", ["true"], timeout=5)
        with pytest.raises(MachineUnavailable):
            backend.shell_argv(lab, "box")
        assert backend.destroy(lab).machines == ["box"]
        assert not _machine_dir(lab, "box").exists()
    finally:
        backend.destroy(lab)


def test_shell_argv_enters_the_machine_confined(
    backend: NspawnBackend, lab: LabRef, box: MachineSpec
) -> None:
    argv = backend.shell_argv(lab, "box")
    assert argv[-2:] == ["/bin/bash", "-l"]
    out = subprocess.run(
        [*argv, "-c", "hostname; cat /proc/self/uid_map; grep CapBnd /proc/self/status"],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    hostname, uid_map, capbnd = out.stdout.strip().splitlines()
    assert hostname == "box"
    assert uid_map.split()[:2] == ["0", str(_host_uid_of_root(backend, lab, "box"))]
    assert capbnd.split()[1] == _status(_meta(lab, "box")["init_pid"])["CapBnd"]


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
