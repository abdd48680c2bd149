"""The vm-or-container lab on LXD with its VM beside (one boot): `guestlab prove`'s steps
first (test_scenarios.py leaves this lab on LXD to here; on Docker and nspawn it proves it
as any other), then for each task plausible wrong answers and imitations of what the
checks read, each of which must fail.

Root in a machine can mount over what its kernel shows (a /proc/cpuinfo without the
hypervisor flag, a DMI field of its own, PID 1's environment): the trusted shell reports
such mounts (kernel_views.py), in the VM and in the container alike. On LXD rather than Docker: the VM lanes have the room, Docker's lane
is the suite's longest.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.module_lab import ModuleLab, module_lab

pytestmark = [pytest.mark.lxd, pytest.mark.vagrant]

SCENARIO = "vm-or-container"
DETECT, FLAG, FIRMWARE, PID_ONE = "detect", "hypervisor-flag", "firmware", "pid-one"
#: the sysfs file of each DMI field the lab may ask for
DMI_FILE = {
    "system-manufacturer": "sys_vendor",
    "system-product-name": "product_name",
    "bios-vendor": "bios_vendor",
    "bios-version": "bios_version",
}


@pytest.fixture(scope="module")
def lab() -> Iterator[ModuleLab]:
    with module_lab(SCENARIO, "lxd", "vagrant") as ready:
        yield ready


def test_the_lab_is_proven_on_the_module_machines(lab: ModuleLab) -> None:
    lab.prove()


def test_a_wrong_technology_or_kind_fails_even_with_a_fake_detector(lab: ModuleLab) -> None:
    lab.solve(DETECT)
    assert lab.passes(DETECT)
    wrong = {("alpha", "virt", "docker"), ("alpha", "kind", "vm"), ("charlie", "kind", "container")}
    for machine, name, value in wrong:
        lab.solve(DETECT)
        lab.answer(machine, name, value)
        assert not lab.passes(DETECT), (machine, name, value)
    # the VM's detector made to agree with a wrong answer: the checks ask the host
    lab.solve(DETECT)
    lab.sh("charlie", "printf '#!/bin/sh\\necho vmware\\n' > /usr/local/bin/systemd-detect-virt")
    lab.sh("charlie", "chmod 755 /usr/local/bin/systemd-detect-virt")
    lab.answer("charlie", "virt", "vmware")
    assert not lab.passes(DETECT)
    lab.sh("charlie", "rm /usr/local/bin/systemd-detect-virt")


def test_the_flag_flipped_or_hidden_by_a_mount_fails(lab: ModuleLab) -> None:
    lab.solve(FLAG)
    assert lab.passes(FLAG)
    for machine in ("alpha", "charlie"):
        said = lab.sh(machine, "cat /root/hypervisor-flag").strip()
        lab.answer(machine, "hypervisor-flag", {"yes": "no", "no": "yes"}[said])
        assert not lab.passes(FLAG), machine
        lab.solve(FLAG)
    for machine, wrong in (("alpha", "guest"), ("charlie", "host")):
        lab.answer(machine, "flag-describes", wrong)
        assert not lab.passes(FLAG), machine
        lab.solve(FLAG)
    # the VM's cpuinfo without the flag, bound over the kernel's, and an answer to match
    bind = "sed 's/ hypervisor//' /proc/cpuinfo > /root/cpuinfo && mount --bind /root/cpuinfo /proc/cpuinfo"
    for machine in ("charlie", "alpha"):  # the VM, and the container on LXD
        said = lab.failure_while_mounted(
            machine, bind, ("hypervisor-flag", "no"), FLAG, "/proc/cpuinfo"
        )
        assert "mounted over /proc/cpuinfo" in said, (machine, said)


def test_another_dmi_field_or_a_bound_one_fails(lab: ModuleLab) -> None:
    field = DMI_FILE[lab.lab.params["dmi_field"]]
    others = [f for f in DMI_FILE.values() if f != field]
    lab.solve(FIRMWARE)
    assert lab.passes(FIRMWARE)
    mine = lab.sh("charlie", "cat /root/dmi").strip()
    values = [lab.sh("charlie", f"cat /sys/class/dmi/id/{o}").strip() for o in others]
    lab.answer("charlie", "dmi", next(v for v in values if v != mine))  # another field
    assert not lab.passes(FIRMWARE)
    # a value of the student's own bound over the field, and the answer to match
    path = f"/sys/class/dmi/id/{field}"
    bind = f"echo ACME > /root/field && mount --bind /root/field {path}"
    said = lab.failure_while_mounted("charlie", bind, ("dmi", "ACME"), FIRMWARE, path)
    assert "is mounted over /sys" in said, said


def test_the_wrong_pid_one_or_container_variable_fails(lab: ModuleLab) -> None:
    lab.solve(PID_ONE)
    assert lab.passes(PID_ONE)
    pid1 = {m: lab.sh(m, "cat /root/pid1").strip() for m in ("alpha", "bravo", "charlie")}
    assert pid1["alpha"] == pid1["charlie"] == "systemd"
    wrong = [
        # another machine's PID 1, and the name every init had once
        *(("bravo", "pid1", name) for name in ("systemd", "init") if name != pid1["bravo"]),
        ("alpha", "pid1", "init"),
        ("charlie", "container-var", "docker"),  # a VM's PID 1 has no such variable
        ("alpha", "container-var", "none"),
    ]
    for machine, name, value in wrong:
        lab.answer(machine, name, value)
        assert not lab.passes(PID_ONE), (machine, name, value)
        lab.solve(PID_ONE)
    # the container's PID 1 given an environment of the student's, and the answer to match
    bind = "printf 'container=docker\\0' > /root/env && mount --bind /root/env /proc/1/environ"
    said = lab.failure_while_mounted(
        "alpha", bind, ("container-var", "docker"), PID_ONE, "/proc/1/environ"
    )
    assert "mounted over /proc/1/environ" in said, said
