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
