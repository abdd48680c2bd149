"""How a command reaches a VM: which login, which wrapper, and the cheap liveness read.

The real logins are proven on a VM in tests/integration/test_vagrant_backend.py; here the
ssh command lines and libvirtd's pid files are read without one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.backends.contract import LabRef
from orchestrator.backends.vagrant import libvirt
from orchestrator.backends.vagrant import ssh as ssh_module
from orchestrator.backends.vagrant.ssh import ROOT, SUDO, Ssh


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Ssh, list[list[str]]]:
    monkeypatch.setenv("GUESTLAB_HOME", str(tmp_path))
    calls: list[list[str]] = []

    def run(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, b"ok\n", b"")

    monkeypatch.setattr(ssh_module.subprocess, "run", run)
    ssh = Ssh(LabRef("vm-or-container", "ann"), "vm")
    ssh.save_config("Host vm\n  User vagrant\n")
    return ssh, calls


def test_before_root_is_settled_commands_go_through_sudo(
    machine: tuple[Ssh, list[list[str]]],
) -> None:
    ssh, calls = machine
    assert ssh.login() == SUDO
    assert ssh.run(["id", "-u"], timeout=5).stdout == "ok\n"
    command = calls[-1]
    assert "-l" not in command and command[-1].startswith("sudo -n -- sh -c ")


def test_a_settled_root_login_runs_commands_without_sudo(
    machine: tuple[Ssh, list[list[str]]],
) -> None:
    ssh, calls = machine
    ssh.settle_login()  # the key copy and root's `true` both answer 0 here
    assert ssh.login() == ROOT
    ssh.run(["id", "-u"], timeout=5)
    command = calls[-1]
    assert command[command.index("-l") + 1] == "root"
    assert command[-1].startswith("sh -c ") and "sudo" not in command[-1]
    assert ssh.attach_argv(["cat"], tty=False)[-1] == "cat"
    # the two logins never share a connection
    assert f"ControlPath={ssh._control_path(ROOT)}" in command
    assert ssh._control_path(ROOT) != ssh._control_path(SUDO)


def test_a_guest_that_refuses_root_is_settled_on_sudo(
    machine: tuple[Ssh, list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh, calls = machine

    def run(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        if "-l" in argv and "-O" not in argv:
            return subprocess.CompletedProcess(
                argv, 255, b"", b"root@x: Permission denied (publickey)."
            )
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(ssh_module.subprocess, "run", run)
    ssh.settle_login()
    assert ssh.login() == SUDO
    ssh.forget()  # a new boot settles again
    assert ssh.login() == SUDO and not ssh.config.exists()


def test_root_refused_after_settling_falls_back_to_sudo_for_good(
    machine: tuple[Ssh, list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh, calls = machine
    ssh.settle_login()
    assert ssh.login() == ROOT

    def run(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[bytes]:
        calls.append(argv)
        if "-l" in argv:  # the student took root's key away
            return subprocess.CompletedProcess(
                argv, 255, b"", b"root@x: Permission denied (publickey)."
            )
        return subprocess.CompletedProcess(argv, 0, b"0\n", b"")

    monkeypatch.setattr(ssh_module.subprocess, "run", run)
    assert ssh.run(["id", "-u"], timeout=5).stdout == "0\n"
    assert calls[-1][-1].startswith("sudo -n -- ") and "-l" not in calls[-1]
    assert ssh.login() == SUDO


def test_a_guest_not_answering_is_left_unsettled(
    machine: tuple[Ssh, list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh, _calls = machine

    def run(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, 255, b"", b"ssh: connect to host x: No route")

    monkeypatch.setattr(ssh_module.subprocess, "run", run)
    ssh.settle_login()
    assert not ssh._login_file.exists()


def test_root_cut_off_by_a_restarting_sshd_is_asked_again_later(
    machine: tuple[Ssh, list[list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ssh, _calls = machine

    def run(argv: list[str], **_kw: Any) -> subprocess.CompletedProcess[bytes]:
        if "-l" in argv and "-O" not in argv:
            return subprocess.CompletedProcess(argv, 255, b"", b"")  # closed, no sentence
        return subprocess.CompletedProcess(argv, 0, b"", b"")

    monkeypatch.setattr(ssh_module.subprocess, "run", run)
    ssh.settle_login()
    assert not ssh._login_file.exists() and ssh.login() == SUDO


def test_qemu_is_alive_only_with_a_live_pid_in_libvirts_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(libvirt, "QEMU_RUN_DIR", tmp_path)
    assert not libvirt.qemu_alive("gl-none")
    (tmp_path / "gl-me.pid").write_text(f"{os.getpid()}\n")
    assert libvirt.qemu_alive("gl-me")
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid names no process now
    (tmp_path / "gl-gone.pid").write_text(str(child.pid))
    assert not libvirt.qemu_alive("gl-gone")
    (tmp_path / "gl-junk.pid").write_text("not a pid")
    assert not libvirt.qemu_alive("gl-junk")
