"""LXD instance config from a MachineSpec: limits, id maps, disk bounds (no engine)."""

from __future__ import annotations

from orchestrator.backends.base import LabRef, MachineSpec
from orchestrator.backends.lxd_config import (
    IDMAP_SIZE,
    disk_size,
    instance_config,
    is_isolated,
    limits,
    root_disk,
)

LAB = LabRef("demo", "ana")


def test_every_machine_is_unprivileged_with_an_isolated_map() -> None:
    config = limits(MachineSpec(LAB, "web", "debian-12-systemd"))
    assert config["security.idmap.isolated"] == "true"
    assert config["security.privileged"] == "false"
    assert int(config["security.idmap.size"]) == IDMAP_SIZE >= 165536  # room for nested LXD
    assert is_isolated(config)


def test_is_isolated_refuses_privileged_or_shared_maps() -> None:
    assert not is_isolated({})
    assert not is_isolated({"security.idmap.isolated": "false"})
    assert not is_isolated({"security.idmap.isolated": "true", "security.privileged": "true"})


def test_cpu_share_is_a_quota_over_whole_cpus() -> None:
    config = limits(MachineSpec(LAB, "web", "img", cpus=1.5, memory=384 * 1024**2, pids=77))
    assert config["limits.cpu"] == "2"
    assert config["limits.cpu.allowance"] == "150ms/100ms"
    assert config["limits.memory"] == str(384 * 1024**2)
    assert config["limits.processes"] == "77"
    assert limits(MachineSpec(LAB, "w", "img", cpus=0.25))["limits.cpu"] == "1"
    assert limits(MachineSpec(LAB, "w", "img", cpus=0.25))["limits.cpu.allowance"] == "25ms/100ms"


def test_disk_size_is_the_bound_beyond_the_image_on_enforcing_pools_only() -> None:
    spec = MachineSpec(LAB, "web", "img", disk=2 * 1024**3)
    image = 159 * 1024**2 + 5
    size = disk_size(spec, image, "btrfs")
    assert size is not None and size % 1024**2 == 0
    assert 2 * 1024**3 + image <= size < 2 * 1024**3 + image + 1024**2
    assert disk_size(spec, image, "dir") is None
    assert disk_size(spec, image, None) is None
    assert root_disk("guestlab", size) == {
        "type": "disk",
        "path": "/",
        "pool": "guestlab",
        "size": str(size),
    }
    assert "size" not in root_disk("default", None)


def test_labels_and_limits_together() -> None:
    config = instance_config(MachineSpec(LAB, "web", "img"))
    assert config["user.guestlab.machine"] == "web"
    assert config["user.guestlab.lab"] == LAB.key
    assert config["security.nesting"] == "true"
