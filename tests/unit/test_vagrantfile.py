"""The top-level Vagrantfile (a guestlab host for macOS and Windows) is valid for Vagrant.

Runs `vagrant validate` where Vagrant is installed; under CI=true a missing Vagrant is a
failure, since a check that never runs proves nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_top_level_vagrantfile_validates(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and vagrant is not installed (scripts/setup/vagrant.sh)")
        pytest.skip("vagrant is not installed")
    env = {
        **os.environ,
        "VAGRANT_CHECKPOINT_DISABLE": "1",
        # its own Vagrant home: validating must not depend on (or touch) the user's boxes
        "VAGRANT_HOME": str(tmp_path / "vagrant.d"),
    }
    # a copy: `vagrant validate` leaves a .vagrant directory where it runs
    work = tmp_path / "host"
    work.mkdir()
    shutil.copy(ROOT / "Vagrantfile", work / "Vagrantfile")
    proc = subprocess.run(
        ["vagrant", "validate"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Vagrantfile validated successfully" in proc.stdout


def test_top_level_vagrantfile_provisions_with_the_setup_script() -> None:
    text = (ROOT / "Vagrantfile").read_text()
    assert "./scripts/setup.sh" in text
    assert 'config.vm.box = "debian/bookworm64"' in text


def test_docker_provider_machines_are_confined_and_flagged() -> None:
    """Vagrant's docker provider gets the docker backend's confinement, never --privileged."""
    from orchestrator.backends.base import LabRef, MachineSpec
    from orchestrator.backends.vagrant_docker import command, run_args
    from orchestrator.backends.vagrant_host import render_vagrantfile

    spec = MachineSpec(LabRef("demo", "ana"), "web", "debian-12-systemd", memory=256 * 1024**2)
    v1, v2 = run_args(spec, "gl-net", "1"), run_args(spec, "gl-net", "2")
    assert "--privileged" not in v1 + v2
    assert v1[-2:] == ["--cgroupns", "private"] and "/sys/fs/cgroup:/sys/fs/cgroup:rw" in v2
    assert v1[:2] == ["--network", "gl-net"] and "guestlab.lab=demo--ana" in v1
    plain = MachineSpec(spec.lab, "job", spec.image, init="none")
    assert "--init" in run_args(plain, "gl-net", "1") and command("none") == ["sleep", "infinity"]
    machine = {
        "name": "web", "domain": "gl-demo--ana-web", "hostname": "web", "clone_of": None,
        "docker_image": "guestlab/debian-12-systemd:latest", "docker_cmd": command("systemd"),
        "docker_args": v1, "disk": None,
    }  # fmt: skip
    text = render_vagrantfile(
        {"lab": spec.lab, "provider": "docker", "network": {"name": "gl-net"},
         "machines": [machine]}
    )  # fmt: skip
    assert "NOT a real VM" in text and "d.cmd = ['/lib/systemd/systemd']" in text
    assert "'--cgroupns', 'private'" in text and "ssh.private_key_path" not in text
