"""The guest-drivers lab on one real VM (one boot): `guestlab prove`'s steps first
(test_scenarios.py leaves this lab to here), then for each task plausible wrong answers
and hand-made imitations of the facts the checks read, each of which must fail.

The imitations are what root in a VM can do to what its kernel shows: a fake
`systemd-detect-virt`, a file bound over the firmware's DMI vendor, a tmpfs over the
virtio bus (no paravirtual device left to see). Mounts are runtime-only: a reboot would
drop them, but checks do not reboot, so the trusted shell reports them (kernel_views.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator import lab as lifecycle
from orchestrator import teardown
from orchestrator.lab.prove import prove_up_lab
from orchestrator.state import Store
from tests.integration.conftest import engine, student_id

pytestmark = pytest.mark.vagrant

SCENARIO = "guest-drivers"
HYPERVISOR, DRIVERS, DEVICE, EMULATED = "hypervisor", "virtio-drivers", "your-device", "emulated"


class Guest:
    """The module's one lab: commands in its VM, its checks."""

    def __init__(self, lab: Any, store: Store) -> None:
        self.lab, self.store = lab, store
        self.device = lab.params["device"]

    def sh(self, script: str) -> str:
        res = self.lab.exec(self.lab.ref, "guest", ["sh", "-c", script], timeout=120)
        assert res.ok, res
        return str(res.stdout)

    def passes(self, task: str) -> bool:
        return self.task(task).passed

    def task(self, task: str) -> Any:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        [result] = lifecycle.check(self.lab, record, self.store, [task]).tasks
        return result

    def solve(self, *tasks: str) -> None:
        record = self.store.lab(self.lab.ref.key)
        assert record is not None
        lifecycle.solve(self.lab, record, self.store, list(tasks))

    def answer(self, name: str, text: str) -> None:
        self.sh(f"printf '%s\\n' '{text}' > /root/{name}")


@pytest.fixture(scope="module")
def guest() -> Iterator[Guest]:
    engine("vagrant")
    store = Store()
    lab = lifecycle.prepare(SCENARIO, student_id(), "vagrant")
    try:
        lifecycle.up(lab, store, lifecycle.Silent())
        yield Guest(lab, store)
    finally:
        teardown.down(lab.ref, [b.name for b in lab.backends], store)
        store.close()
    assert all(b.find(lab.ref) == {} for b in lab.backends)


def test_the_lab_is_proven_on_the_module_vm(guest: Guest) -> None:
    proof = prove_up_lab(guest.lab, guest.store, lifecycle.Silent())
    assert proof.ok, "\n".join(f"{s.name}: {'ok' if s.ok else s.detail}" for s in proof.steps)
    assert proof.steps[-1].name == "every task fails after reset"


def test_the_wrong_hypervisor_or_vendor_fails_and_so_do_their_imitations(guest: Guest) -> None:
    g = guest
    g.solve(HYPERVISOR)
    assert g.passes(HYPERVISOR)
    virt = g.sh("cat /root/hypervisor").strip()
    other = {"qemu": "kvm", "kvm": "qemu"}[virt]
    g.answer("hypervisor", other)  # the other of the two a QEMU guest can be
    assert not g.passes(HYPERVISOR)
    g.solve(HYPERVISOR)
    g.answer("vendor", g.sh("cat /sys/class/dmi/id/bios_vendor").strip())  # the firmware's
    assert not g.passes(HYPERVISOR)
    # a fake systemd-detect-virt that agrees with the wrong answer
    g.solve(HYPERVISOR)
    g.sh(
        "cp -p /usr/bin/systemd-detect-virt /root/sdv.real && "
        f"printf '#!/bin/sh\\necho {other}\\n' > /usr/bin/systemd-detect-virt"
    )
    g.answer("hypervisor", other)
    result = g.task(HYPERVISOR)
    assert not result.passed and "tampered" in " ".join(c.message for c in result.checks)
    g.sh("cp -p /root/sdv.real /usr/bin/systemd-detect-virt")
    # a vendor of the student's own, bound over the one the firmware reports
    g.solve(HYPERVISOR)
    assert g.passes(HYPERVISOR)
    g.sh(
        "echo ACME > /root/fake-vendor && mount --bind /root/fake-vendor /sys/class/dmi/id/sys_vendor"
    )
    g.answer("vendor", "ACME")
    try:
        result = g.task(HYPERVISOR)
    finally:
        g.sh("umount /sys/class/dmi/id/sys_vendor")
    messages = " ".join(c.message for c in result.checks)
    assert not result.passed and "mounted over /sys" in messages, messages


def test_drivers_beside_the_virtio_ones_or_missing_fail(guest: Guest) -> None:
    g = guest
    g.solve(DRIVERS)
    assert g.passes(DRIVERS)
    drivers = g.sh("cat /root/virtio-drivers").split()
    transport = g.sh("cat /root/virtio-transport").strip()
    assert drivers and transport.startswith("virtio")
    wrong = {
        "the transport among them": [*drivers, transport],
        "the core modules among them": [*drivers, "virtio", "virtio_ring"],
        "one of them missing": drivers[:-1] or ["virtio_ring"],
    }
    for why, names in wrong.items():
        g.answer("virtio-drivers", "\n".join(names))
        assert not g.passes(DRIVERS), why
    g.solve(DRIVERS)
    for not_it in ("virtio", drivers[0]):  # the core module, a device's driver
        g.answer("virtio-transport", not_it)
        assert not g.passes(DRIVERS), not_it


def test_another_device_s_driver_address_or_module_fails(guest: Guest) -> None:
    g = guest
    other = {"eth0": "vda", "vda": "eth0"}[g.device]
    g.solve(DEVICE)
    assert g.passes(DEVICE)
    mine = {f: g.sh(f"cat /root/device-{f}").strip() for f in ("driver", "pci", "module")}
    sysfs = f"$(readlink -f /sys/class/*/{other}/device)"
    theirs = {
        "driver": g.sh(f'basename "$(readlink {sysfs}/driver)"').strip(),
        "pci": g.sh(f'basename "$(dirname {sysfs})" | cut -d: -f2-').strip(),
    }
    theirs["module"] = g.sh(f"modinfo -n {theirs['driver']}").strip()
    for field, value in theirs.items():
        assert value and value != mine[field], field
        g.solve(DEVICE)
        g.answer(f"device-{field}", value)
        assert not g.passes(DEVICE), field


def test_the_wrong_approach_fails_and_hiding_the_virtio_bus_does_not_make_it_full(
    guest: Guest,
) -> None:
    g = guest
    g.solve(EMULATED)
    assert g.passes(EMULATED) and g.sh("cat /root/approach").strip() == "hybrid"
    for wrong in ("full", "paravirtual"):
        g.answer("approach", wrong)
        assert not g.passes(EMULATED), wrong
    g.solve(EMULATED)
    g.answer("emulated-driver", "virtio_pci")  # the transport's driver, not the IDE's
    assert not g.passes(EMULATED)
    # an empty tmpfs over the virtio bus: the check would see no paravirtual device
    g.solve(EMULATED)
    g.sh("mount -t tmpfs none /sys/bus/virtio/devices")
    g.answer("approach", "full")
    try:
        result = g.task(EMULATED)
    finally:
        g.sh("umount /sys/bus/virtio/devices")
    messages = " ".join(c.message for c in result.checks)
    assert not result.passed and "tmpfs is mounted over /sys/bus/virtio/devices" in messages
