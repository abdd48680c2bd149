"""A lab's subnet is chosen while other labs' networks come and go (two suites' VMs)."""

from __future__ import annotations

import pytest

from orchestrator.backends.contract import LabRef
from orchestrator.backends.vagrant import libvirt
from orchestrator.errors import ProvisioningError

TAKEN = "<network><name>gl-a</name><ip address='192.168.121.1' netmask='255.255.255.0'/></network>"


def test_a_network_removed_between_the_list_and_its_read_holds_no_subnet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def virsh(*args: str, timeout: float = 120) -> str:
        if args[:1] == ("net-list",):
            return "gl-a\ngl-gone\n"
        if args == ("net-dumpxml", "gl-gone"):  # another lab's `down` removed it meanwhile
            raise ProvisioningError("error: failed to get network 'gl-gone'")
        if args == ("net-dumpxml", "gl-a"):
            return TAKEN
        raise AssertionError(args)

    monkeypatch.setattr(libvirt, "virsh", virsh)
    monkeypatch.setattr(libvirt, "run_host", lambda *_a, **_k: "")
    subnet = libvirt._free_subnet(LabRef("data-disk", "ann"))
    assert subnet.prefixlen == 24 and str(subnet) != "192.168.121.0/24"
