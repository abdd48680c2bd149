"""`guestlab doctor` on LXD's local btrfs pool: full qgroup accounting, which LXD turns on
when it finds quotas off, is said with its cost and its fix; simple quotas add nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends import btrfs_quota
from orchestrator.backends.lxd import connect, host


def said(monkeypatch: pytest.MonkeyPatch, mode: str | None, simple: bool) -> str:
    monkeypatch.setattr(host, "pool_quota_mode", lambda _pool: mode)
    monkeypatch.setattr(btrfs_quota, "simple_available", lambda: simple)
    return connect._slow_quotas("guestlab")


def test_full_accounting_on_a_kernel_with_simple_quotas_is_said_with_its_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    line = said(monkeypatch, "qgroup", simple=True)
    assert "full qgroup accounting" in line and "scripts/setup/lxd.sh" in line


def test_simple_quotas_or_no_simple_quotas_to_go_to_add_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert said(monkeypatch, "squota", simple=True) == ""
    assert said(monkeypatch, None, simple=True) == ""
    assert said(monkeypatch, "qgroup", simple=False) == ""


def test_the_pool_s_mode_is_read_where_lxd_mounts_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    pools = tmp_path / "storage-pools"
    (pools / "guestlab").mkdir(parents=True)
    monkeypatch.setattr(host, "POOL_DIRS", (pools,))
    seen: list[object] = []
    monkeypatch.setattr(btrfs_quota, "mode", lambda path: seen.append(path) or "squota")
    assert host.pool_quota_mode("guestlab") == "squota"
    assert seen == [pools / "guestlab"]
    assert host.pool_quota_mode("elsewhere") is None
