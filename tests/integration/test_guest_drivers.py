"""The guest-drivers lab on one real VM (one boot, shared with the doors' VM tests): `guestlab prove`'s steps first
(test_scenarios.py leaves this lab to here), then for each task plausible wrong answers
and hand-made imitations of the facts the checks read, each of which must fail.

The imitations are what root in a VM can do to what its kernel shows: a fake
`systemd-detect-virt`, a file bound over the firmware's DMI vendor, a tmpfs over the
virtio bus (no paravirtual device left to see). Mounts are runtime-only: a reboot would
drop them, but checks do not reboot, so the trusted shell reports them (kernel_views.py).
"""

from __future__ import annotations

import pytest

from tests.integration.module_lab import ModuleLab

pytestmark = pytest.mark.vagrant

SCENARIO = "guest-drivers"
HYPERVISOR, DRIVERS, DEVICE, EMULATED = "hypervisor", "virtio-drivers", "your-device", "emulated"


@pytest.fixture
def guest(guest_vm: ModuleLab) -> ModuleLab:
    """The lab on the VM this lane's door tests share (conftest.guest_vm)."""
    assert guest_vm.lab.scenario.id == SCENARIO
    return guest_vm


def test_the_lab_is_proven_on_the_module_vm(guest: ModuleLab) -> None:
    guest.prove()


def test_the_wrong_hypervisor_or_vendor_fails_and_so_do_their_imitations(guest: ModuleLab) -> None:
    g = guest
    g.solve(HYPERVISOR)
    assert g.passes(HYPERVISOR)
    virt = g.sh("guest", "cat /root/hypervisor").strip()
    other = {"qemu": "kvm", "kvm": "qemu"}[virt]
    g.answer("guest", "hypervisor", other)  # the other of the two a QEMU guest can be
    assert not g.passes(HYPERVISOR)
    g.solve(HYPERVISOR)
    g.answer(
        "guest", "vendor", g.sh("guest", "cat /sys/class/dmi/id/bios_vendor").strip()
    )  # the firmware's
    assert not g.passes(HYPERVISOR)
    # a fake systemd-detect-virt that agrees with the wrong answer
    g.solve(HYPERVISOR)
    g.sh(
        "guest",
        "cp -p /usr/bin/systemd-detect-virt /root/sdv.real && "
        f"printf '#!/bin/sh\\necho {other}\\n' > /usr/bin/systemd-detect-virt",
    )
    g.answer("guest", "hypervisor", other)
    result = g.task(HYPERVISOR)
    assert not result.passed and "tampered" in " ".join(c.message for c in result.checks)
    g.sh("guest", "cp -p /root/sdv.real /usr/bin/systemd-detect-virt")
    # a vendor of the student's own, bound over the one the firmware reports
    g.solve(HYPERVISOR)
    assert g.passes(HYPERVISOR)
    vendor = "/sys/class/dmi/id/sys_vendor"
    bind = f"echo ACME > /root/fake-vendor && mount --bind /root/fake-vendor {vendor}"
    said = g.failure_while_mounted("guest", bind, ("vendor", "ACME"), HYPERVISOR, vendor)
    assert "mounted over /sys" in said, said


def test_drivers_beside_the_virtio_ones_or_missing_fail(guest: ModuleLab) -> None:
    g = guest
    g.solve(DRIVERS)
    assert g.passes(DRIVERS)
    drivers = g.sh("guest", "cat /root/virtio-drivers").split()
    transport = g.sh("guest", "cat /root/virtio-transport").strip()
    assert drivers and transport.startswith("virtio")
    wrong = {
        "the transport among them": [*drivers, transport],
        "the core modules among them": [*drivers, "virtio", "virtio_ring"],
        "one of them missing": drivers[:-1] or ["virtio_ring"],
    }
    for why, names in wrong.items():
        g.answer("guest", "virtio-drivers", "\n".join(names))
        assert not g.passes(DRIVERS), why
    g.solve(DRIVERS)
    for not_it in ("virtio", drivers[0]):  # the core module, a device's driver
        g.answer("guest", "virtio-transport", not_it)
        assert not g.passes(DRIVERS), not_it


def test_another_device_s_driver_address_or_module_fails(guest: ModuleLab) -> None:
    g = guest
    other = {"eth0": "vda", "vda": "eth0"}[g.lab.params["device"]]
    g.solve(DEVICE)
    assert g.passes(DEVICE)
    mine = {f: g.sh("guest", f"cat /root/device-{f}").strip() for f in ("driver", "pci", "module")}
    sysfs = f"$(readlink -f /sys/class/*/{other}/device)"
    theirs = {
        "driver": g.sh("guest", f'basename "$(readlink {sysfs}/driver)"').strip(),
        "pci": g.sh("guest", f'basename "$(dirname {sysfs})" | cut -d: -f2-').strip(),
    }
    theirs["module"] = g.sh("guest", f"modinfo -n {theirs['driver']}").strip()
    for field, value in theirs.items():
        assert value and value != mine[field], field
        g.solve(DEVICE)
        g.answer("guest", f"device-{field}", value)
        assert not g.passes(DEVICE), field


def test_the_wrong_approach_fails_and_hiding_the_virtio_bus_does_not_make_it_full(
    guest: ModuleLab,
) -> None:
    g = guest
    g.solve(EMULATED)
    assert g.passes(EMULATED) and g.sh("guest", "cat /root/approach").strip() == "hybrid"
    for wrong in ("full", "paravirtual"):
        g.answer("guest", "approach", wrong)
        assert not g.passes(EMULATED), wrong
    g.solve(EMULATED)
    g.answer("guest", "emulated-driver", "virtio_pci")  # the transport's driver, not the IDE's
    assert not g.passes(EMULATED)
    # an empty tmpfs over the virtio bus: the check would see no paravirtual device
    g.solve(EMULATED)
    bus = "/sys/bus/virtio/devices"
    said = g.failure_while_mounted(
        "guest", f"mount -t tmpfs none {bus}", ("approach", "full"), EMULATED, bus
    )
    assert f"tmpfs is mounted over {bus}" in said, said
