"""The pure parts of LXD's exec: output caps, the exit-code line, host process matching."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.backends.lxd.execution import Capped, new_marker, split_exit, wrap
from orchestrator.backends.lxd.host import (
    cgroup_limits,
    is_exec_helper,
    parse_stat_ppid,
    remove_logs,
)


def test_capped_keeps_the_limit_and_says_it_overflowed() -> None:
    cap = Capped(limit=10)
    cap.add(b"12345")
    assert not cap.overflow
    cap.add(b"67890")
    assert bytes(cap.data) == b"1234567890" and not cap.overflow
    cap.add(b"x")
    assert bytes(cap.data) == b"1234567890" and cap.overflow


def test_split_exit_takes_the_wrapper_line_off_stderr() -> None:
    marker = new_marker()
    assert split_exit(b"err\n\n" + marker.encode() + b"3\n", marker) == (b"err\n", 3)
    assert split_exit(b"\n" + marker.encode() + b"0\n", marker) == (b"", 0)
    # not yet printed, or someone else's marker: stderr untouched, no code
    assert split_exit(b"err\n", marker) == (b"err\n", None)
    assert split_exit(b"\nguestlab-exit-other:1\n", marker)[1] is None
    # a marker followed by more than a code is not the wrapper's line
    assert split_exit(b"\n" + marker.encode() + b"1\nmore", marker)[1] is None


def test_wrap_passes_argv_untouched() -> None:
    argv = ["printf", "%s|", "a b", "$HOME", ";"]
    wrapped = wrap(argv, "M:")
    assert wrapped[:2] == ["sh", "-c"] and wrapped[3:] == ["sh", "M:", *argv]


def test_exec_helper_matching() -> None:
    marker = "guestlab-exit-abc:"
    argv = (
        "/usr/bin/lxd forkexec gl-1-web /var/lib/lxd/containers /var/log/lxd/gl-1-web/lxc.conf"
        f"  0 0 0 -- env HOME=/root -- cmd sh -c X sh {marker} sleep 9"
    ).split(" ")
    raw = [a.encode() for a in argv]
    assert is_exec_helper(raw, "gl-1-web", marker)
    assert not is_exec_helper(raw, "gl-1-db", marker)
    assert not is_exec_helper(raw, "gl-1-web", "guestlab-exit-other:")
    # the marker in the environment part is not the command
    env_only = [a.encode() for a in argv[: argv.index("cmd")]] + [marker.encode()]
    assert not is_exec_helper(env_only, "gl-1-web", marker)


def test_parse_stat_ppid_survives_odd_names() -> None:
    assert parse_stat_ppid(b"42 (a) b) c) S 7 42 42 0") == 7
    assert parse_stat_ppid(b"garbage") is None


def test_cgroup_limits_v1_and_v2(tmp_path: Path) -> None:
    v1 = tmp_path / "v1"
    files = {
        "memory/lxc.payload.gl-x/memory.limit_in_bytes": "402653184",
        "pids/lxc.payload.gl-x/pids.max": "1024",
        "cpu/lxc.payload.gl-x/cpu.cfs_quota_us": "150000",
        "cpu/lxc.payload.gl-x/cpu.cfs_period_us": "100000",
        "cpuset/lxc.payload.gl-x/cpuset.cpus": "0-1",
    }
    for rel, text in files.items():
        (v1 / rel).parent.mkdir(parents=True, exist_ok=True)
        (v1 / rel).write_text(text + "\n")
    assert cgroup_limits("gl-x", v1) == {
        "memory": "402653184",
        "pids": "1024",
        "cpu_quota": "150000",
        "cpu_period": "100000",
        "cpus": "0-1",
    }
    v2 = tmp_path / "v2" / "lxc.payload.gl-x"
    v2.mkdir(parents=True)
    for name, text in {
        "memory.max": "402653184",
        "pids.max": "1024",
        "cpu.max": "150000 100000",
        "cpuset.cpus": "0-1",
    }.items():
        (v2 / name).write_text(text + "\n")
    assert cgroup_limits("gl-x", tmp_path / "v2")["cpu_quota"] == "150000"


def test_remove_logs_only_takes_guestlab_instances() -> None:
    for bad in ("lxd", "../etc", "gl-a/../../x", ""):
        with pytest.raises(ValueError):
            remove_logs(bad)
