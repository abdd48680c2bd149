"""The host's reading of a machine's cgroups, from a /proc laid out in a folder."""

from __future__ import annotations

from pathlib import Path

from orchestrator.backends.docker import cgroups

MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,nosuid,nodev,noexec,relatime,pids 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,xattr,name=systemd 0 0
"""
CGROUP = """\
9:name=systemd:/docker/abc
8:pids:/docker/abc
2:cpu,cpuacct:/docker/abc
0::/docker/abc
"""


def proc(tmp_path: Path, uid_map: str = "0 2080374784 65536") -> Path:
    (tmp_path / "self").mkdir(parents=True)
    (tmp_path / "self" / "mounts").write_text(MOUNTS)
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "cgroup").write_text(CGROUP)
    (tmp_path / "42" / "uid_map").write_text(f"         {uid_map}\n")
    (tmp_path / "42" / "gid_map").write_text(f"         {uid_map}\n")
    return tmp_path


def test_every_mounted_hierarchy_of_the_process_is_found(tmp_path: Path) -> None:
    found = {tuple(sorted(g.controllers)): g.path for g in cgroups.groups(42, str(proc(tmp_path)))}
    assert found == {
        ("name=systemd",): Path("/sys/fs/cgroup/systemd/docker/abc"),
        ("pids",): Path("/sys/fs/cgroup/pids/docker/abc"),
        ("cpu", "cpuacct"): Path("/sys/fs/cgroup/cpu,cpuacct/docker/abc"),
    }  # the v2 line names a hierarchy this host has not mounted: left out


def test_the_v2_hierarchy_when_mounted(tmp_path: Path) -> None:
    p = proc(tmp_path)
    (p / "self" / "mounts").write_text("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n")
    (p / "42" / "cgroup").write_text("0::/docker/abc\n")
    [group] = cgroups.groups(42, str(p))
    assert group.controllers == frozenset() and group.path == Path("/sys/fs/cgroup/docker/abc")


def test_root_of_the_namespace_is_read_from_its_maps(tmp_path: Path) -> None:
    assert cgroups.root_ids(42, str(proc(tmp_path))) == (2080374784, 2080374784)


def test_a_map_that_does_not_start_at_root_is_refused(tmp_path: Path) -> None:
    import pytest

    with pytest.raises(ValueError, match="does not map root"):
        cgroups.root_ids(42, str(proc(tmp_path, "1000 2080374784 1")))


def test_only_directories_and_process_files_are_delegated() -> None:
    assert "pids.max" not in cgroups.V1_DELEGATED + cgroups.V2_DELEGATED
    assert all(not n.startswith(("memory.", "pids.", "cpu.")) for n in cgroups.V2_DELEGATED)


def test_delegate_hands_over_the_directory_and_process_files_only(tmp_path: Path) -> None:
    import os

    p = proc(tmp_path / "proc", "0 2080374784 65536")
    group = tmp_path / "cg" / "pids" / "docker" / "abc"
    group.mkdir(parents=True)
    for name in ("cgroup.procs", "tasks", "pids.max", "notify_on_release"):
        (group / name).write_text("")
    (p / "self" / "mounts").write_text(f"cgroup {tmp_path}/cg/pids cgroup rw,pids 0 0\n")
    (p / "42" / "cgroup").write_text("8:pids:/docker/abc\n")
    cgroups.delegate(42, str(p))
    owner = {f.name: f.stat().st_uid for f in group.iterdir()}
    assert group.stat().st_uid == 2080374784
    assert owner == {
        "cgroup.procs": 2080374784, "tasks": 2080374784, "pids.max": os.getuid(),
        "notify_on_release": os.getuid(),
    }  # fmt: skip
