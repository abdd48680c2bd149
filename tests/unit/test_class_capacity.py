"""How a class's inotify needs are counted on this host: which processes hold instances
against root's limit, read from /proc."""

from __future__ import annotations

import os
from pathlib import Path

from orchestrator.classroom import capacity


def test_processes_in_a_containers_user_namespace_count_against_root() -> None:
    host = "user:[4026531837]"
    assert capacity.counts_against_root(0, host, host)  # Docker's, nspawn's: root itself
    assert capacity.counts_against_root(1879113728, "user:[4026532461]", host)  # LXD's
    assert not capacity.counts_against_root(1000, host, host)  # a user's own shell


def test_inotify_instances_are_counted_from_proc(tmp_path: Path) -> None:
    """A /proc of three processes: root's (2 instances), a container's in its own user
    namespace (1) and one of another namespace-less user, which is not counted."""
    (tmp_path / "sys/fs/inotify").mkdir(parents=True)
    (tmp_path / "sys/fs/inotify/max_user_instances").write_text("1024\n")
    for pid, ns, fds in (
        ("1", "user:[1]", ["anon_inode:inotify", "anon_inode:inotify", "/dev/null"]),
        ("40", "user:[2]", ["anon_inode:inotify", "socket:[9]"]),
        ("41", "user:[1]", ["anon_inode:inotify"]),
    ):
        (tmp_path / pid / "ns").mkdir(parents=True)
        (tmp_path / pid / "ns/user").symlink_to(ns)
        (tmp_path / pid / "fd").mkdir()
        for n, target in enumerate(fds):
            (tmp_path / pid / "fd" / str(n)).symlink_to(target)
    (tmp_path / "self").symlink_to("1")  # guestlab's own process, in the host's namespace
    uid = os.getuid()
    limit, used = capacity.inotify_limit(tmp_path)
    # the files are this test's user's: root's when the suite runs as root
    assert (limit, used) == (1024, 4 if uid == 0 else 1)
    # where guestlab cannot read its own namespace, root's processes alone count
    (tmp_path / "self").unlink()
    assert capacity.inotify_limit(tmp_path) == (1024, 4 if uid == 0 else 0)


def test_the_inotify_count_reads_this_host() -> None:
    """The real /proc: a limit is found (a check that silently found none would let a class
    run out of instances half way, as it did when PID 1's namespace was unreadable here)."""
    limit, _used = capacity.inotify_limit()
    assert limit > 0
