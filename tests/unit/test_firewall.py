"""The firewall chain: written once, left alone when right, jumped to first from INPUT."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest

from orchestrator.backends import firewall


def test_bridge_names_fit_an_interface_and_carry_the_prefix() -> None:
    for prefix in (firewall.CONTAINER_PREFIX, firewall.VM_PREFIX):
        name = firewall.bridge_name(prefix, "gl-some-lab--with-a-very-long-student-name")
        assert name.startswith(prefix) and len(name) <= 15  # IFNAMSIZ - 1


def test_each_prefix_ends_in_a_drop_and_vms_keep_only_replies_and_dhcp() -> None:
    rules = [" ".join(r) for r in firewall.RULES]
    assert rules[0] == "-i glb+ -j DROP"
    vm = [r for r in rules if r.startswith("-i glv+")]
    assert vm[-1] == "-i glv+ -j DROP" and len(vm) == 3
    assert "ESTABLISHED" in vm[0] and "--dport 67" in vm[1]


def test_expected_is_what_iptables_prints() -> None:
    assert firewall.expected()[0] == f"-N {firewall.CHAIN}"
    assert firewall.expected()[1] == f"-A {firewall.CHAIN} -i glb+ -j DROP"


class FakeIptables:
    """iptables and iptables-restore as subprocess.run sees them: the chain reads as
    `listed`; every call is recorded."""

    def __init__(self, listed: list[str]) -> None:
        self.listed = listed
        self.calls: list[tuple[list[str], str | None]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs.get("input")))
        out = "\n".join(self.listed) + "\n" if argv[2:3] == ["-S"] else ""
        return subprocess.CompletedProcess(argv, 0, out, "")


def fake(monkeypatch: pytest.MonkeyPatch, listed: list[str]) -> FakeIptables:
    tools = FakeIptables(listed)
    monkeypatch.setattr(subprocess, "run", tools)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    return tools


def test_a_chain_gone_wrong_is_written_whole_in_one_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # what two processes appending rule by rule once made: the VMs' DROP before DHCP
    good = firewall.expected()
    tools = fake(monkeypatch, [good[0], good[1], good[4], good[2], good[3]])
    firewall._ensure("iptables")
    restores = [(argv, data) for argv, data in tools.calls if argv[0].endswith("-restore")]
    assert [argv for argv, _ in restores] == [["/usr/sbin/iptables-restore", "-w", "--noflush"]]
    table = restores[0][1]
    assert table is not None
    assert table.splitlines() == ["*filter", f":{firewall.CHAIN} - [0:0]", *good[1:], "COMMIT"]
    # nothing rule by rule: no flush, no append of the chain's own
    assert not [a for a, _ in tools.calls if {"-F", "-A"} & set(a)]


def test_a_chain_already_right_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    tools = fake(monkeypatch, firewall.expected())
    firewall._ensure("iptables")
    assert not [a for a, _ in tools.calls if a[0].endswith("-restore")]
