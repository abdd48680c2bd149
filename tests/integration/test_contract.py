"""The Backend contract, the same tests on every engine available here.

Checks and the lifecycle rely only on what is asserted here; an engine that passes this
module runs every scenario the same way. Vagrant runs these very tests in
test_vagrant_backend.py, on the VMs that module's own tests use: a VM boot under
software emulation costs a minute, and one boot serves both.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from orchestrator.backends.contract import Backend, LabRef, MachineSpec, no_progress
from orchestrator.errors import MachineUnavailable
from tests.conftest import CLUSTER_GROUP
from tests.integration.conftest import engine, student_id

BACKENDS = [
    pytest.param(name, marks=getattr(pytest.mark, name)) for name in ("docker", "lxd", "nspawn")
] + [  # scripts/lxd-cluster.sh's, with the cluster's other tests
    pytest.param("lxd-cluster", marks=[pytest.mark.lxd, pytest.mark.xdist_group(CLUSTER_GROUP)])
]
IMAGE = "debian-12-systemd"


class Bench:
    """One lab with a systemd machine, shared by the tests of one backend."""

    def __init__(self, backend: Backend, memory: int = 256 * 1024**2) -> None:
        self.backend = backend
        self.lab = LabRef("contract", student_id())
        self.base = MachineSpec(self.lab, "base", IMAGE, hostname="base-host", memory=memory)

    def run(self, machine: str, cmd: str, timeout: float = 30) -> str:
        res = self.backend.exec(self.lab, machine, ["sh", "-c", cmd], timeout=timeout)
        assert res.exit_code == 0 and not res.timed_out, res
        return res.stdout.strip()


@pytest.fixture(scope="module", params=BACKENDS)
def bench(request: pytest.FixtureRequest) -> Iterator[Bench]:
    if request.param == "lxd-cluster":
        from tests.integration.lxd_cluster import cluster_backend

        engine("lxd")
        b = Bench(cluster_backend(request.getfixturevalue("lxd_cluster")))
    else:
        b = Bench(engine(request.param))
    b.backend.ensure_image(IMAGE, no_progress)
    b.backend.create(b.base, no_progress)
    yield b
    b.backend.destroy(b.lab)


def test_a_systemd_machine_boots_with_its_hostname_and_labels(bench: Bench) -> None:
    assert bench.run("base", "systemctl is-system-running || true") in ("running", "degraded")
    # a restore boots the machine again: its name must come from its own /etc/hostname
    assert bench.run("base", "hostname; cat /etc/hostname") == "base-host\nbase-host"
    assert bench.run("base", "cat /proc/1/comm") == "systemd"
    assert bench.run("base", "hostname") == "base-host"
    assert bench.run("base", "systemd-detect-virt || true") == bench.backend.virtualization
    found = bench.backend.find(bench.lab)
    assert list(found) == [bench.lab.key] and found[bench.lab.key].machines == ["base"]
    assert bench.lab.key in bench.backend.find()  # every lab of this store


def test_exec_returns_code_stdout_and_stderr_separately(bench: Bench) -> None:
    res = bench.backend.exec(
        bench.lab, "base", ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=30
    )
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    argv = bench.backend.exec(
        bench.lab, "base", ["printf", "%s|", "a b", "$HOME", "'q'"], timeout=30
    )
    assert argv.stdout == "a b|$HOME|'q'|"  # argv is passed as is, never through a shell


def test_exec_stops_a_command_at_its_timeout(bench: Bench) -> None:
    started = time.monotonic()
    res = bench.backend.exec(bench.lab, "base", ["sleep", "600"], timeout=2)
    assert res.timed_out and res.exit_code == 124
    # stopped at its timeout, not at the command's end (a bound for a host under CI's load)
    assert time.monotonic() - started < 120
    assert bench.run("base", "pgrep -x sleep || echo none") == "none"


def test_put_file_writes_content_mode_and_owner(bench: Bench) -> None:
    bench.backend.put_file(bench.lab, "base", "/opt/lab/deep/note.txt", b"hello\n", 0o640)
    assert bench.run("base", "cat /opt/lab/deep/note.txt") == "hello"
    assert bench.run("base", "stat -c '%a %U' /opt/lab/deep/note.txt") == "640 root"


def test_clone_copies_the_filesystem_and_keeps_the_source_running(bench: Bench) -> None:
    bench.run("base", "echo from-setup > /root/marker")
    target = replace(bench.base, name="copy", hostname="copy-host")
    bench.backend.clone(bench.base, target, no_progress)
    assert bench.run("copy", "cat /etc/machine-id") == bench.run("base", "cat /etc/machine-id")
    assert bench.run("copy", "cat /root/marker") == "from-setup"
    assert bench.run("copy", "hostname") == "copy-host"
    assert bench.run("base", "cat /proc/1/comm") == "systemd"
    assert sorted(bench.backend.find(bench.lab)[bench.lab.key].machines) == ["base", "copy"]


def test_restore_returns_to_the_snapshot(bench: Bench) -> None:
    specs = [bench.base]
    bench.run("base", "echo before > /root/state")
    bench.backend.snapshot(bench.lab, specs)
    bench.run("base", "echo after > /root/state; rm -f /etc/os-release; touch /root/new")
    bench.backend.restore(bench.lab, specs, no_progress)
    assert bench.run("base", "cat /root/state") == "before"
    assert bench.run("base", "test -e /etc/os-release && test ! -e /root/new && echo ok") == "ok"
    assert bench.run("base", "systemctl is-system-running || true") in ("running", "degraded")


def test_destroy_removes_everything_and_is_idempotent(bench: Bench) -> None:
    removed = bench.backend.destroy(bench.lab)
    assert sorted(removed.machines) == ["base", "copy"]
    assert bench.backend.find(bench.lab) == {}
    with pytest.raises(MachineUnavailable):
        bench.backend.exec(bench.lab, "base", ["true"], timeout=10)
    assert not bench.backend.destroy(bench.lab)


def test_a_machine_without_systemd_idles(bench: Bench) -> None:
    lab = LabRef("contract", student_id())
    spec = MachineSpec(lab, "plain", IMAGE, init="none")
    try:
        bench.backend.create(spec, no_progress)
        res = bench.backend.exec(lab, "plain", ["echo", "hi"], timeout=30)
        assert res.stdout == "hi\n"
    finally:
        bench.backend.destroy(lab)
    assert bench.backend.find(lab) == {}
