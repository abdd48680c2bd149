"""The Vagrant backend against real VMs (scripts/setup/vagrant.sh prepares the host).

Every VM boot costs about a minute under QEMU software emulation, so the module boots as
few as it can: one VM, `base`, serves the backend contract (test_contract.py's tests,
run here in order) and this module's VM-only tests; the contract's clone is the second
VM, a machine without systemd the third; snapshots are restored without a boot. Under
CI=true a host where Vagrant cannot run is a failure.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from orchestrator.backends.contract import Backend, LabRef, MachineSpec, no_progress
from orchestrator.backends.vagrant import VagrantBackend
from orchestrator.backends.vagrant import boxes as boxes_module
from orchestrator.backends.vagrant.execution import ssh_for
from orchestrator.backends.vagrant.host import domain_name, domain_prefix, lab_dir, network_name
from orchestrator.backends.vagrant.libvirt import POOL
from orchestrator.backends.vagrant.ssh import ROOT, SUDO, Ssh
from orchestrator.errors import MachineUnavailable, UsageError
from tests.integration import test_contract as contract
from tests.integration.conftest import engine, student_id

pytestmark = pytest.mark.vagrant

IMAGE = "debian-12-systemd"


def virsh(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", "-q", *args], capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def backend() -> VagrantBackend:
    b = engine("vagrant")
    assert isinstance(b, VagrantBackend)
    b.ensure_image(IMAGE, no_progress)  # first run on a host: builds the box, ~40 s
    return b


@pytest.fixture(scope="module")
def bench(backend: VagrantBackend) -> Iterator[contract.Bench]:
    """The contract's bench on a VM: `base`, 640 MiB, shared by every test here."""
    b = contract.Bench(backend, memory=640 * 1024**2)
    backend.create(b.base, no_progress)
    yield b
    backend.destroy(b.lab)


@pytest.fixture(scope="module")
def lab(bench: contract.Bench) -> LabRef:
    return bench.lab


@pytest.fixture(scope="module")
def web(bench: contract.Bench) -> MachineSpec:
    return bench.base


def run(backend: VagrantBackend, spec: MachineSpec, *argv: str, timeout: float = 30) -> str:
    res = backend.exec(spec.lab, spec.name, list(argv), timeout=timeout)
    assert res.ok, res
    return res.stdout.strip()


def test_availability_says_how_vms_run(backend: VagrantBackend) -> None:
    state = backend.availability()
    assert state.usable and state.detail.startswith("Vagrant ")
    if backend.virtualization == "kvm":
        assert "libvirt with KVM" in state.detail
    else:
        assert "libvirt with QEMU software emulation (KVM unusable: " in state.detail
    assert isinstance(backend, Backend)
    assert "vm" in backend.capabilities


# the contract, on this module's VM, before the VM-only tests
test_a_systemd_machine_boots_with_its_hostname_and_labels = (
    contract.test_a_systemd_machine_boots_with_its_hostname_and_labels
)
test_exec_returns_code_stdout_and_stderr_separately = (
    contract.test_exec_returns_code_stdout_and_stderr_separately
)
test_exec_stops_a_command_at_its_timeout = contract.test_exec_stops_a_command_at_its_timeout
test_put_file_writes_content_mode_and_owner_as_the_contract_says = (
    contract.test_put_file_writes_content_mode_and_owner
)


def test_vm_boots_systemd_under_a_hypervisor(backend: VagrantBackend, web: MachineSpec) -> None:
    virt = run(backend, web, "systemd-detect-virt")
    assert virt in ("qemu", "kvm")
    assert virt == backend.virtualization
    assert "hypervisor" in run(backend, web, "grep", "-m1", "^flags", "/proc/cpuinfo").split()
    assert run(backend, web, "hostname") == web.hostname
    res = backend.exec(web.lab, web.name, ["systemctl", "is-system-running"], timeout=30)
    assert res.stdout.strip() in ("running", "degraded")
    # a kernel of its own, not the host's: the difference the syllabus starts from
    assert run(backend, web, "cat", "/proc/1/comm") == "systemd"
    mem_kib = int(run(backend, web, "awk", "/MemTotal/ {print $2}", "/proc/meminfo"))
    assert 500 * 1024 < mem_kib <= 640 * 1024


def test_the_vm_reaches_no_service_of_the_host(backend: VagrantBackend, web: MachineSpec) -> None:
    """The lab network's host address answers DHCP and the host's SSH, nothing else."""
    import contextlib
    import ipaddress
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(4)
    srv.settimeout(8)
    seen: list[str] = []

    def accept() -> None:
        with contextlib.suppress(OSError):  # the timeout: nobody came, as it should be
            seen.append(str(srv.accept()[1]))

    threading.Thread(target=accept, daemon=True).start()
    try:
        # the lab network's first address is the host's (vagrant/libvirt.py, ensure_network)
        cidr = run(backend, web, "sh", "-c", "ip -4 -o addr show scope global | awk '{print $4}'")
        target = str(next(ipaddress.ip_interface(cidr.split()[0]).network.hosts()))
        port = srv.getsockname()[1]
        res = backend.exec(
            web.lab, web.name,
            ["timeout", "5", "bash", "-c", f"echo > /dev/tcp/{target}/{port}"], timeout=20,
        )  # fmt: skip
        assert not res.ok, f"the VM reached {target}:{port}"
        assert seen == []
    finally:
        srv.close()


def test_lab_directory_explains_itself(backend: VagrantBackend, web: MachineSpec) -> None:
    root = lab_dir(web.lab)
    vagrantfile = (root / "Vagrantfile").read_text()
    assert f"config.vm.define '{web.name}'" in vagrantfile
    assert 'management_network_mode = "none"' in vagrantfile
    meta = json.loads((root / "meta.json").read_text())
    assert meta["labels"]["guestlab.lab"] == web.lab.key
    assert meta["machines"][web.name]["memory"] == 640
    desc = virsh("desc", domain_name(web.lab, web.name)).stdout
    assert json.loads(desc.removeprefix("guestlab "))["guestlab.machine"] == web.name
    # the lab's network forwards nothing: VM traffic stays on this host
    net = virsh("net-dumpxml", network_name(web.lab)).stdout
    assert "<forward" not in net


def test_exec_returns_code_and_both_streams(backend: VagrantBackend, web: MachineSpec) -> None:
    res = backend.exec(
        web.lab, web.name, ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout=20
    )
    assert (res.exit_code, res.stdout, res.stderr, res.timed_out) == (3, "out\n", "err\n", False)
    # arguments arrive as they were given, spaces and quotes included
    odd = ["printf", "%s|", "a b", "it's", "$HOME", ";", "*"]
    assert run(backend, web, *odd) == "a b|it's|$HOME|;|*|"
    assert run(backend, web, "id", "-u") == "0"


def test_exec_times_out(backend: VagrantBackend, web: MachineSpec) -> None:
    started = time.monotonic()
    res = backend.exec(web.lab, web.name, ["sleep", "600"], timeout=2)
    assert res.timed_out and res.exit_code == 124 and not res.ok
    # stopped at its timeout, not at the command's end (a bound for a host under CI's load)
    assert time.monotonic() - started < 120


def test_exec_is_not_held_by_a_background_process(
    backend: VagrantBackend, web: MachineSpec
) -> None:
    try:
        # held until the background `sleep` ends, the exec would time out instead
        res = backend.exec(web.lab, web.name, ["sh", "-c", "sleep 600 & echo started"], timeout=120)
        assert res.ok and res.stdout == "started\n"
    finally:  # the VM is shared with later tests
        backend.exec(web.lab, web.name, ["pkill", "-x", "sleep"], timeout=60)


def test_commands_log_in_as_root_without_sudo(backend: VagrantBackend, web: MachineSpec) -> None:
    assert Ssh(web.lab, web.name).login() == ROOT
    # sudo would have set SUDO_USER: the command reached root by its own login
    assert run(backend, web, "sh", "-c", "echo ${SUDO_USER:-none} $(id -u)") == "none 0"


def test_a_guest_that_stops_root_logins_is_still_reached(
    backend: VagrantBackend, web: MachineSpec
) -> None:
    ssh = Ssh(web.lab, web.name)
    deny = "/etc/ssh/sshd_config.d/no-root.conf"

    def settled(want: str) -> str:
        """Settle anew until `want` (sshd applies a reload a moment after `reload`)."""
        deadline = time.monotonic() + 60
        while True:
            ssh.forget()
            ssh_for(web.lab, web.name).settle_login()  # with a fresh ssh-config, as `up`
            if ssh.login() == want or time.monotonic() > deadline:
                return ssh.login()
            time.sleep(1)

    try:
        # a student's root removes the copied key: the next command goes through sudo
        run(backend, web, "rm", "/root/.ssh/authorized_keys")
        ssh.close()  # as the shared connection does after five idle minutes
        assert run(backend, web, "id", "-u") == "0"
        assert ssh.login() == SUDO
        # a guest that refuses root altogether is settled on sudo, and still reached
        backend.put_file(web.lab, web.name, deny, b"DenyUsers root\n", 0o644)
        run(backend, web, "systemctl", "reload", "ssh")
        assert settled(SUDO) == SUDO
        assert run(backend, web, "sh", "-c", "echo ${SUDO_USER:-none} $(id -u)") == "vagrant 0"
    finally:
        backend.exec(
            web.lab, web.name, ["sh", "-c", f"rm -f {deny}; systemctl reload ssh"], timeout=30
        )
    assert settled(ROOT) == ROOT


def test_put_file_writes_content_mode_and_owner(backend: VagrantBackend, web: MachineSpec) -> None:
    backend.put_file(web.lab, web.name, "/etc/guestlab-test.conf", b"key = value\n", 0o640)
    assert run(backend, web, "cat", "/etc/guestlab-test.conf") == "key = value"
    assert run(backend, web, "stat", "-c", "%a %U %G", "/etc/guestlab-test.conf") == "640 root root"
    backend.put_file(web.lab, web.name, "/opt/lab/bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755)
    assert run(backend, web, "/opt/lab/bin/run.sh") == "hi"


# the contract's clone makes the second VM, `copy`, from `base`
test_clone_copies_the_filesystem_and_keeps_the_source_running = (
    contract.test_clone_copies_the_filesystem_and_keeps_the_source_running
)


def test_the_clone_is_a_vm_of_its_own_with_the_sources_identity(
    backend: VagrantBackend, lab: LabRef, web: MachineSpec
) -> None:
    copy = MachineSpec(lab, "copy", IMAGE, hostname="copy-host")
    keys = "cat /etc/ssh/ssh_host_*_key.pub | sort"
    assert run(backend, copy, "cat", "/etc/machine-id") == run(
        backend, web, "cat", "/etc/machine-id"
    )
    assert run(backend, copy, "sh", "-c", keys) == run(backend, web, "sh", "-c", keys)
    assert run(backend, copy, "hostname") == "copy-host"
    assert run(backend, web, "hostname") == web.hostname
    # two VMs, two disks: the copy does not write to the source's disk
    run(backend, copy, "touch", "/root/only-in-copy")
    assert (
        backend.exec(lab, web.name, ["test", "-e", "/root/only-in-copy"], timeout=20).exit_code == 1
    )
    assert virsh("domstate", domain_name(lab, web.name)).stdout.strip() == "running"
    assert virsh("domstate", domain_name(lab, "copy")).stdout.strip() == "running"


test_restore_returns_to_the_snapshot = contract.test_restore_returns_to_the_snapshot


def test_snapshot_then_restore_brings_a_file_back(
    backend: VagrantBackend, lab: LabRef, web: MachineSpec
) -> None:
    backend.put_file(web.lab, web.name, "/root/precious", b"original\n", 0o600)
    backend.snapshot(lab, [web])
    backend.snapshot(lab, [web])  # taking it again replaces it
    run(backend, web, "rm", "/root/precious")
    backend.put_file(web.lab, web.name, "/root/junk", b"student change\n", 0o644)

    backend.restore(lab, [web], no_progress)

    assert run(backend, web, "cat", "/root/precious") == "original"
    assert backend.exec(lab, web.name, ["test", "-e", "/root/junk"], timeout=20).exit_code == 1
    assert run(backend, web, "hostname") == web.hostname


def test_destroy_leaves_nothing_and_is_idempotent(
    backend: VagrantBackend, lab: LabRef, web: MachineSpec
) -> None:
    # a VM that is not running is unavailable, not an engine error
    assert virsh("destroy", domain_name(lab, "copy")).returncode == 0
    with pytest.raises(MachineUnavailable):
        backend.exec(lab, "copy", ["true"], timeout=10)
    assert lab.key in backend.find()

    gone = backend.destroy(lab)

    # what the contract's destroy test asserts, on a VM, and what libvirt kept besides
    assert sorted(gone.machines) == [web.name, "copy"]
    assert f"{domain_name(lab, web.name)}/guestlab-start" in gone.other
    names = virsh("list", "--all", "--name").stdout.split()
    assert not [n for n in names if n.startswith(domain_prefix(lab))]
    volumes = virsh("vol-list", POOL).stdout
    assert domain_prefix(lab) not in volumes
    assert virsh("net-info", network_name(lab)).returncode != 0
    assert not lab_dir(lab).exists()
    assert backend.find(lab) == {} and lab.key not in backend.find()
    assert not backend.destroy(lab)  # nothing left: harmless
    with pytest.raises(MachineUnavailable):
        backend.exec(lab, web.name, ["true"], timeout=10)


# a third VM, without systemd, in a lab of its own
test_a_machine_without_systemd_idles = contract.test_a_machine_without_systemd_idles


def test_missing_box_without_build_names_the_command(
    backend: VagrantBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setattr(boxes_module, "box_dir", lambda image, provider: None)
    monkeypatch.setenv("GUESTLAB_IMAGES", str(tmp_path))  # no cached box file either
    with pytest.raises(UsageError, match=f"guestlab image build {IMAGE} --backend vagrant"):
        backend.ensure_image(IMAGE, no_progress, build=False)


def test_shell_argv_uses_ssh_with_sudo(backend: VagrantBackend) -> None:
    lab = LabRef("vagrant-test", student_id())
    argv = backend.shell_argv(lab, "base")
    assert "vagrant ssh" in " ".join(argv) and "sudo -i" in " ".join(argv)
