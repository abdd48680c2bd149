"""An image's chroot gets a /dev of its own: package scripts never see the host's nodes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from orchestrator.images import chroot, chrootdev


def test_the_chroot_mounts_a_tmpfs_dev_never_the_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounted: list[list[str]] = []
    monkeypatch.setattr(chroot, "sh", lambda argv, **_k: mounted.append(list(argv)) or "")
    monkeypatch.setattr(chrootdev, "populate", lambda dev: None)
    with chroot.mounts(tmp_path):
        pass
    dev = [argv for argv in mounted if argv[-1] == str(tmp_path / "dev")]
    assert dev and "--bind" not in dev[0] and "/dev" not in dev[0]
    assert dev[0][1:3] == ["-t", "tmpfs"]


def test_the_private_dev_has_the_nodes_package_scripts_use(tmp_path: Path) -> None:
    chrootdev.populate(tmp_path)
    null = (tmp_path / "null").stat()
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1
    assert stat.S_IMODE(null.st_mode) == 0o666
    assert os.readlink(tmp_path / "fd") == "/proc/self/fd"
    assert not (tmp_path / "kvm").exists()
