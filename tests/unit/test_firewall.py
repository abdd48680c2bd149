"""The firewall chain: written once, left alone when right, jumped to first from INPUT."""

from __future__ import annotations

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
