"""Extra disks of a VM (`disks:`): the format refuses them where no VM would hold them,
at their line; the schema describes them; the Vagrantfile gives libvirt one volume each."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator import lab as lifecycle
from orchestrator.backends.contract import LabRef, MachineSpec
from orchestrator.errors import ProvisioningError, ScenarioError
from orchestrator.lab.backend_choice import required_capabilities
from orchestrator.scenario.load import load_text
from orchestrator.scenario.model import MAX_DISKS, size_bytes
from orchestrator.scenario.schema import json_schema

# Line numbers below refer to this text; each test changes one thing in it.
BASE = """\
apiVersion: guestlab/v1
kind: Scenario
metadata: {id: demo, title: Demo}
backends: [vagrant]
machines:
  - name: vm
    disks:
      - size: 1G
      - size: 512M
tasks:
  - id: t
    title: T
    checks: [{machine: vm, run: "true"}]
"""


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def problems(text: str) -> list[tuple[int, int, str, str]]:
    with pytest.raises(ScenarioError) as caught:
        load_text(text, "demo.yaml", labs_dir=None)
    return [(p.line, p.column, p.path, p.message) for p in caught.value.problems]


def test_a_vm_of_a_vagrant_scenario_or_of_kind_vm_takes_disks() -> None:
    sc = load_text(BASE, "demo.yaml", labs_dir=None)
    assert [d.size for d in sc.machine("vm").disks] == ["1G", "512M"]
    vm_kind = edit("backends: [vagrant]", "backends: [docker, lxd]")
    vm_kind = edit("  - name: vm\n", "  - name: vm\n    kind: vm\n", vm_kind)
    assert len(load_text(vm_kind, "demo.yaml", labs_dir=None).machine("vm").disks) == 2


@pytest.mark.parametrize("backends", ["[docker]", "[vagrant, lxd]"])
def test_a_container_machine_with_disks_is_refused_at_its_disks(backends: str) -> None:
    [(line, column, path, message)] = problems(edit("[vagrant]", backends))
    assert (line, column, path) == (8, 7, "machines.0.disks")
    assert "need a virtual machine" in message and "kind: vm" in message
    assert backends.strip("[]").split(", ")[-1] in message


@pytest.mark.parametrize(
    ("size", "why"),
    [("65G", "from 1M to 64G"), ("512K", "from 1M to 64G"), ('"0"', "from 1M to 64G"), ("1T", "")],
)
def test_a_disk_too_small_too_large_or_unreadable_is_refused(size: str, why: str) -> None:
    [(line, _, path, message)] = problems(edit("size: 512M", f"size: {size}"))
    assert (line, path) == (9, "machines.0.disks.1.size")
    assert why in message


def test_at_most_max_disks() -> None:
    many = "    disks:\n" + "      - size: 1M\n" * (MAX_DISKS + 1)
    text = edit("    disks:\n      - size: 1G\n      - size: 512M\n", many)
    [(line, _, path, message)] = problems(text)
    assert (line, path) == (8, "machines.0.disks")
    assert str(MAX_DISKS) in message
    ok = edit(
        "    disks:\n      - size: 1G\n      - size: 512M\n",
        "    disks:\n" + "      - size: 1M\n" * MAX_DISKS,
    )
    assert len(load_text(ok, "demo.yaml", labs_dir=None).machine("vm").disks) == MAX_DISKS


def test_clones_and_disks_do_not_mix() -> None:
    """A clone is a copy of its source's system disk: it gets no disks, nor may its
    source have some that it would silently lack."""
    clone = BASE.replace("tasks:", "  - name: copy\n    clone_of: vm\ntasks:")
    [(line, _, path, message)] = problems(clone)
    assert (line, path) == (11, "machines.1.clone_of")
    assert "`vm` has extra `disks`" in message
    own = edit("    disks:\n      - size: 1G\n      - size: 512M\n", "")
    own = own.replace("tasks:", "  - name: copy\n    clone_of: vm\n    disks: [{size: 1G}]\ntasks:")
    [(line, _, path, message)] = problems(own)
    assert (line, path) == (7, "machines.1")
    assert "no extra `disks`" in message


def test_the_schema_describes_disks() -> None:
    machine = json_schema()["$defs"]["Machine"]["properties"]["disks"]
    assert machine["maxItems"] == MAX_DISKS and machine["items"] == {"$ref": "#/$defs/Disk"}
    assert "virtual machine" in machine["description"]
    size = json_schema()["$defs"]["Disk"]["properties"]["size"]
    assert size["pattern"] and "64G" in size["description"]


def test_disks_need_a_vm_backend_and_reach_the_spec_in_bytes() -> None:
    sc = load_text(BASE, "demo.yaml", labs_dir=None)
    assert "vm" in required_capabilities(sc)
    lab = lifecycle.Lab(LabRef("demo", "al"), sc, Path("/nowhere"), backend=None, params={})  # type: ignore[arg-type]
    assert lab.spec("vm").disks == (1024**3, 512 * 1024**2)
    assert size_bytes("1.5G") == int(1.5 * 1024**3) and size_bytes("4096") == 4096


def _libvirt_text(machines: list[dict[str, Any]]) -> str:
    from orchestrator.backends.vagrant.vagrantfile import render_vagrantfile

    return render_vagrantfile(
        {
            "lab": LabRef("demo", "al"), "provider": "libvirt", "driver": "qemu",
            "kvm_reason": "test", "pool": "guestlab", "key": "/k", "insecure_key": "/i",
            "network": {"name": "gl-net", "address": "192.168.130.0/24"},
            "machines": machines,
        }
    )  # fmt: skip


def test_the_vagrantfile_gives_each_disk_a_qcow2_virtio_volume() -> None:
    from orchestrator.backends.vagrant.machines import machine_entry

    lab = LabRef("demo", "al")
    spec = MachineSpec(lab, "vm", "debian-12-lab", disks=(1024**3, 1536 * 1024**2 + 1))
    meta = {"provider": "libvirt", "network": {"name": "gl-net"}}
    entry = {"name": "vm", **machine_entry(spec, meta), "prefix": "gl-x-"}
    assert entry["disks"] == ["1024M", "1537M"]  # whole MiB, never less than asked
    plain = {**entry, "name": "other", "disks": []}
    old = {k: v for k, v in entry.items() if k != "disks"}  # meta.json from before disks
    text = _libvirt_text([entry, plain, {**old, "name": "old"}])
    storage = [line.strip() for line in text.splitlines() if "lv.storage :file" in line]
    assert storage == [
        'lv.storage :file, size: \'1024M\', type: "qcow2", bus: "virtio"',
        'lv.storage :file, size: \'1537M\', type: "qcow2", bus: "virtio"',
    ]
    # both inside the first machine's provider block: before the next machine's define
    first, rest = text.split("config.vm.define 'other'")
    assert first.count("lv.storage :file") == 2 and "vdb in the guest" in first and "vdc" in first
    assert "lv.storage :file" not in rest


def test_a_provider_that_would_drop_the_disks_is_refused_before_anything_is_made() -> None:
    from orchestrator.backends.vagrant.machines import create

    spec = MachineSpec(LabRef("demo", "al"), "vm", "debian-12-lab", disks=(1024**3,))
    preflight = SimpleNamespace(engine=lambda: SimpleNamespace(provider="virtualbox"))
    with pytest.raises(ProvisioningError, match="libvirt provider only"):
        create(spec, lambda _: None, preflight, files=None)  # type: ignore[arg-type]
