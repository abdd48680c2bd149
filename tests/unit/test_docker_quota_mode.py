"""`guestlab doctor` on Docker's btrfs pool: full qgroup accounting, which a restarted
dockerd turns on, is said with its cost and its fix; simple quotas are said as they are."""

from __future__ import annotations

import pytest

from orchestrator.backends import btrfs_quota
from orchestrator.backends.docker.engine import EngineFacts

FACTS = EngineFacts(
    cgroup_version="1",
    userns=True,
    apparmor=False,
    storage_driver="btrfs",
    backing_fs="btrfs",
    seccomp_profile=True,
    data_root="/var/lib/guestlab/docker",
)


def said(monkeypatch: pytest.MonkeyPatch, mode: str | None, simple: bool) -> str:
    monkeypatch.setattr(btrfs_quota, "mode", lambda _path: mode)
    monkeypatch.setattr(btrfs_quota, "simple_available", lambda: simple)
    return str(FACTS)


def test_full_accounting_on_a_kernel_with_simple_quotas_is_said_with_its_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = said(monkeypatch, "qgroup", simple=True)
    assert "full accounting, which makes every clone slow" in line
    assert "scripts/setup/docker.sh" in line


def test_simple_quotas_and_an_older_kernel_s_accounting_are_said_as_they_are(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert said(monkeypatch, "squota", simple=True).endswith("disk bound by btrfs (squota)")
    # no simple quotas to go back to: full accounting is all the kernel has
    assert said(monkeypatch, "qgroup", simple=False).endswith("disk bound by btrfs (qgroup)")
