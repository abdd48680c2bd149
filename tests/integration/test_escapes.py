"""Root in a lab machine tries what a hostile student would; each attempt must be refused.

Every attempt is non-destructive: a host file is written back with the value it already
holds, a limit is raised to its own value. One machine per container backend, shared by
the module's tests.
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.backends.contract import OUTPUT_LIMIT, Backend, LabRef, MachineSpec, no_progress
from tests.integration.conftest import engine, student_id

BACKENDS = [
    pytest.param("docker", marks=pytest.mark.docker),
    pytest.param("lxd", marks=pytest.mark.lxd),
    pytest.param("nspawn", marks=pytest.mark.nspawn),
]
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


class Machine:
    def __init__(self, backend: Backend, spec: MachineSpec) -> None:
        self.backend, self.spec = backend, spec

    def sh(self, script: str, timeout: float = 60) -> str:
        res = self.backend.exec(
            self.spec.lab, self.spec.name, ["sh", "-c", script], timeout=timeout
        )
        return res.stdout + res.stderr


@pytest.fixture(scope="module", params=BACKENDS)
def machine(request: pytest.FixtureRequest) -> Iterator[Machine]:
    backend = engine(request.param)
    spec = MachineSpec(LabRef("escape", student_id()), "box", "debian-12-systemd")
    backend.ensure_image(spec.image, no_progress)
    try:
        backend.create(spec, no_progress)
        yield Machine(backend, spec)
    finally:
        backend.destroy(spec.lab)


def test_root_inside_is_an_unprivileged_uid_outside(machine: Machine) -> None:
    first = machine.sh("head -n1 /proc/self/uid_map").split()
    assert first[0] == "0", first
    assert int(first[1]) >= 65536, f"root in the machine is host uid {first[1]}"
    assert machine.backend.host_root_risk() is None


def test_a_fresh_procfs_cannot_write_the_hosts_core_pattern(machine: Machine) -> None:
    before = CORE_PATTERN.read_text()
    out = machine.sh(
        "mkdir -p /tmp/p; mount -t proc proc /tmp/p && echo MOUNTED; "
        'v=$(cat /tmp/p/sys/kernel/core_pattern); printf "%s\\n" "$v" '
        "> /tmp/p/sys/kernel/core_pattern && echo WROTE-FRESH; "
        'v=$(cat /proc/sys/kernel/core_pattern); printf "%s\\n" "$v" '
        "> /proc/sys/kernel/core_pattern && echo WROTE-PROC; umount /tmp/p 2>/dev/null; true"
    )
    assert "WROTE" not in out, out
    assert CORE_PATTERN.read_text() == before


def test_debugfs_cannot_be_mounted(machine: Machine) -> None:
    out = machine.sh("mkdir -p /tmp/d; mount -t debugfs none /tmp/d && echo MOUNTED; true")
    assert "MOUNTED" not in out, out


# For each controller: mount the v1 hierarchy (where the host has v1) and write every
# limit file from the machine's own group up to the top it can see back with its value.
LIMIT_PROBE = r"""
ctl=$1 file=$2
mkdir -p /tmp/cg-$ctl
if ! mount -t cgroup -o $ctl none /tmp/cg-$ctl 2>/dev/null; then
  mount -t cgroup2 none /tmp/cg-$ctl 2>/dev/null || { echo NOMOUNT; exit 0; }
fi
own=$(awk -F: -v c="$ctl" '$2 ~ "(^|,)"c"(,|$)" {print $3}' /proc/self/cgroup)
dir=/tmp/cg-$ctl${own%/}
while :; do
  if [ -f "$dir/$file" ]; then
    v=$(cat "$dir/$file")
    if printf '%s\n' "$v" > "$dir/$file" 2>/dev/null; then echo "WROTE $dir $v"
    else echo "REFUSED $dir $v"; fi
  fi
  [ "$dir" = /tmp/cg-$ctl ] && break
  dir=$(dirname "$dir")
done
umount /tmp/cg-$ctl 2>/dev/null; true
"""


@pytest.mark.parametrize(
    ("ctl", "limit_file", "field"),
    [("pids", "pids.max", "pids"), ("memory", "memory.limit_in_bytes", "memory")],
)
def test_cgroup_limits_cannot_be_lifted_and_are_what_applies(
    machine: Machine, ctl: str, limit_file: str, field: str
) -> None:
    out = machine.sh(f"set -- {ctl} {limit_file}\n{LIMIT_PROBE}")
    assert "NOMOUNT" not in out, f"could not even look: {out}"
    assert "WROTE" not in out, out
    values = [
        int(line.split()[2])
        for line in out.splitlines()
        if line.startswith("REFUSED") and line.split()[2].isdigit()
    ]
    # the tightest limit the machine sees is the one guestlab asked for
    assert values and min(values) == getattr(machine.spec, field), out


def test_the_disk_is_bounded(machine: Machine) -> None:
    over = machine.spec.disk + 1024**3
    out = machine.sh(
        f"fallocate -l {over} /var/tmp/big && echo ALLOCATED; rm -f /var/tmp/big; "
        "dd if=/dev/zero of=/var/tmp/fill bs=1M count=4096 status=none && echo FILLED; "
        "rm -f /var/tmp/fill; true",
        timeout=300,
    )
    assert "ALLOCATED" not in out and "FILLED" not in out, out


# btrfs lets anyone who can write a folder make a subvolume there, and a new subvolume is
# outside the quota group of the one it sits in: perl (in every Debian) makes one with the
# ioctl, as a student would without btrfs-progs.
SUBVOLUME = (
    'perl -e \'open(my $f, "<", "/var/tmp") or die; my $a = pack("q a4088", 0, "nested");'
    ' ioctl($f, {nr}, $a) or die "refused: $!\\n"; print "CREATED\\n"\''
)


@pytest.mark.parametrize("request_nr", [0x5000940E, 0x1_5000940E], ids=["create", "high-bits"])
def test_a_nested_subvolume_does_not_escape_the_disk_bound(
    machine: Machine, request_nr: int
) -> None:
    """BTRFS_IOC_SUBVOL_CREATE, and the same with bits the kernel ignores above 32."""
    over = machine.spec.disk // 1024**2 + 1024
    out = machine.sh(
        SUBVOLUME.format(nr=request_nr)
        + f"; dd if=/dev/zero of=/var/tmp/nested/fill bs=1M count={over} status=none"
        " 2>/dev/null && echo FILLED; rm -f /var/tmp/nested/fill; rmdir /var/tmp/nested"
        " 2>/dev/null; true",
        timeout=300,
    )
    assert "CREATED" not in out and "FILLED" not in out, out


@pytest.fixture
def host_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP listener on every host address (0.0.0.0) that records who connected."""
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    seen: list[str] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, peer = srv.accept()
            except OSError:
                continue
            seen.append(peer[0])
            conn.close()

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1], seen
    stop.set()
    t.join()
    srv.close()


def host_addresses() -> list[str]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return [
        line.split()[3].split("/")[0]
        for line in out.splitlines()
        if not line.split()[3].startswith("127.")
    ]


def test_no_route_to_the_hosts_services(
    machine: Machine, host_listener: tuple[int, list[str]]
) -> None:
    port, seen = host_listener
    targets = host_addresses()
    gateway = machine.sh("ip route 2>/dev/null | awk '/^default/ {print $3}'").strip()
    if gateway:
        targets.append(gateway)
    assert targets
    for ip in targets:
        out = machine.sh(f"timeout 3 bash -c 'echo > /dev/tcp/{ip}/{port}' && echo REACHED; true")
        assert "REACHED" not in out, f"{ip}: {out}"
    time.sleep(0.3)
    assert seen == []


def test_output_is_bounded_on_the_host(machine: Machine) -> None:
    res = machine.backend.exec(
        machine.spec.lab, machine.spec.name, ["sh", "-c", "yes | head -c 50000000"], timeout=120
    )
    assert res.truncated and not res.ok
    assert len(res.stdout.encode()) <= OUTPUT_LIMIT


def test_the_timeout_holds_when_the_machine_lies(machine: Machine) -> None:
    """A student replaces `timeout` (and `sleep`'s neighbours): the host still stops it."""
    machine.sh(
        "cp -a /usr/bin/timeout /usr/bin/timeout.orig; "
        "printf '#!/bin/sh\\nwhile shift; do case $1 in [0-9]*) shift; exec \"$@\";; esac; done\\n'"
        " > /usr/bin/timeout; chmod +x /usr/bin/timeout"
    )
    try:
        started = time.monotonic()
        res = machine.backend.exec(
            machine.spec.lab, machine.spec.name, ["sh", "-c", "sleep 300; echo DONE"], timeout=3
        )
        assert res.timed_out and "DONE" not in res.stdout
        assert time.monotonic() - started < 60
        left = machine.sh("ps -eo args | grep -c '^sleep 300' || true").strip()
        assert left == "0", f"the command outlived its timeout: {left} left"
    finally:
        machine.sh("mv -f /usr/bin/timeout.orig /usr/bin/timeout")
