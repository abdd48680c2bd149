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
    from orchestrator.backends.contract import LabRef, MachineSpec
    from orchestrator.backends.docker.confine import HOLD_THEN_BOOT, Confinement
    from orchestrator.backends.vagrant.vagrantfile import render_vagrantfile

    spec = MachineSpec(LabRef("demo", "ana"), "web", "debian-12-systemd", memory=256 * 1024**2)
    conf = Confinement(spec, "gl-net", spec.labels, disk=2 * 1024**3)
    v1 = conf.cli_args()
    assert "--privileged" not in v1 and "/sys/fs/cgroup" not in " ".join(v1)
    assert v1[:2] == ["--network", "gl-net"] and "guestlab.lab=demo--ana" in v1
    assert v1[v1.index("--cgroupns") : v1.index("--cgroupns") + 2] == ["--cgroupns", "private"]
    assert f"size={2 * 1024**3}" in v1 and "--storage-opt" in v1
    assert (
        Confinement(spec, "gl-net", spec.labels, disk=None).cli_args().count("--storage-opt") == 0
    )
    # the SDK form says the same
    kw = conf.sdk_kwargs()
    assert kw["cgroupns"] == "private" and kw["storage_opt"] == {"size": str(2 * 1024**3)}
    assert kw["cap_add"] == ["SYS_ADMIN"] and kw["pids_limit"] == spec.pids
    plain = MachineSpec(spec.lab, "job", spec.image, init="none")
    pconf = Confinement(plain, "gl-net", plain.labels, disk=None)
    assert "--init" in pconf.cli_args() and pconf.command == ["sleep", "infinity"]
    assert "cap_add" not in pconf.sdk_kwargs()
    machine = {
        "name": "web", "domain": "gl-demo--ana-web", "hostname": "web", "clone_of": None,
        "docker_image": "guestlab/debian-12-systemd:latest", "docker_cmd": conf.command,
        "docker_args": v1, "disk": None,
    }  # fmt: skip
    text = render_vagrantfile(
        {"lab": spec.lab, "provider": "docker", "network": {"name": "gl-net"},
         "machines": [machine]}
    )  # fmt: skip
    assert "NOT a real VM" in text and HOLD_THEN_BOOT in text
    assert "'--cgroupns', 'private'" in text and "ssh.private_key_path" not in text
