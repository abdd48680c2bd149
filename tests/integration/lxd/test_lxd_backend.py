"""The LXD backend against a real LXD daemon (scripts/setup/lxd.sh prepares one).

Skipped with the reason when LXD cannot be used here; under CI=true that is a failure,
since an engine test that never runs proves nothing.
"""

from __future__ import annotations

import os
import time
from uuid import uuid4

import pytest

from orchestrator.backends.contract import (
    Backend,
    LabRef,
    MachineSpec,
    no_progress,
)
from orchestrator.backends.lxd import LxdBackend, instance_name
from orchestrator.backends.lxd import host as lxd_host
from orchestrator.backends.lxd.backend import DRAINED
from orchestrator.errors import MachineUnavailable, UsageError
from tests.integration.lxd.machine import IMAGE, new_lab, run

pytestmark = pytest.mark.lxd


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


def test_a_machine_without_init_idles_as_pid_one(backend: LxdBackend) -> None:
    """`init: none` as on the other backends: an idle command is PID 1, in a copy too, and
    a restart ends the machine's other processes."""
    lab = new_lab()
    box = MachineSpec(lab, "box", IMAGE, init="none")
    copy = MachineSpec(lab, "box-copy", IMAGE, init="none")
    try:
        backend.create(box, no_progress)
        backend.clone(box, copy, no_progress)
        for spec in (box, copy):
            assert run(backend, spec, "cat", "/proc/1/comm") == "sleep", spec.name
        run(backend, box, "sh", "-c", "setsid sleep 4321 >/dev/null 2>&1 < /dev/null &")
        backend.restart(lab, [box], no_progress)
        assert run(backend, box, "cat", "/proc/1/comm") == "sleep"
        assert "sleep 4321" not in run(backend, box, "ps", "-eo", "args")
    finally:
        backend.destroy(lab)


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
        *("lxc", "exec", instance_name(lab, "web"), "--"),
        *DRAINED,
        *("bash", "-l"),
    ]
