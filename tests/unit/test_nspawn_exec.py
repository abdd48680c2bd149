"""Pure helpers of the nspawn backend's exec route, and its bounded runner with host commands."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import time
from pathlib import Path

import pytest

from orchestrator.backends.contract import OUTPUT_LIMIT
from orchestrator.backends.nspawn import enter as nspawn_enter
from orchestrator.backends.nspawn.execution import parse_bounding, run_bounded
from orchestrator.backends.nspawn.store import Trees, store_root

STATUS = "Name:\tsystemd\nCapEff:\t00000000fdecbfff\nCapBnd:\t00000000fdecbfff\nSeccomp:\t2\n"


def test_bounding_set_is_read_from_the_status() -> None:
    assert parse_bounding(STATUS) == "00000000fdecbfff"
    with pytest.raises(ValueError):
        parse_bounding("Name:\tsh\n")
    with pytest.raises(ValueError):
        parse_bounding("CapBnd:\tnot-hex\n")


def test_capabilities_outside_the_bounding_set_are_dropped() -> None:
    assert nspawn_enter.outside(0b101, 3) == [1, 3]
    assert nspawn_enter.outside((1 << 41) - 1, 40) == []
    dropped = nspawn_enter.outside(0xFDECBFFF, 40)
    # what systemd-nspawn leaves out: CAP_IPC_LOCK, SYS_MODULE, SYS_RAWIO, SYS_PACCT, SYS_TIME
    assert dropped[:5] == [14, 16, 17, 20, 25]
    assert dropped[5:] == list(range(32, 41))


def test_enter_arguments_are_parsed_up_to_the_command() -> None:
    opts, argv = nspawn_enter.parse(
        ["--pid", "7", "--cgroup", "/a", "--cgroup", "/b", "--", "sh", "-c", "--pid"]
    )
    assert opts == {"--pid": ["7"], "--cgroup": ["/a", "/b"]}
    assert argv == ["sh", "-c", "--pid"]
    with pytest.raises(SystemExit):
        nspawn_enter.parse(["--pid", "7"])


def test_seccomp_filters_round_trip(tmp_path: Path) -> None:
    progs = [bytes(range(8)) * 3, b"\x06\x00\x00\x00\x00\x00\xff\x7f"]
    path = tmp_path / "seccomp.bpf"
    path.write_bytes(b"".join(struct.pack("<I", len(p) // 8) + p for p in progs))
    assert nspawn_enter.load_filters(str(path)) == progs


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_output_is_kept_up_to_the_limit_and_the_command_stopped() -> None:
    started = time.monotonic()
    res = run_bounded(["sh", "-c", "yes | head -c 50M"], stdin=None, timeout=30, stop=_kill_group)
    assert time.monotonic() - started < 10
    assert res.truncated and len(res.stdout) == OUTPUT_LIMIT and not res.timed_out
    assert res.exit_code == 128 + signal.SIGKILL
    cmd = ["sh", "-c", "head -c 3M /dev/zero >&2; echo done"]
    err = run_bounded(cmd, stdin=None, timeout=30, stop=_kill_group)
    assert err.truncated and len(err.stderr) == OUTPUT_LIMIT and err.stdout == ""


def test_timeout_stops_the_command_and_streams_flow_both_ways() -> None:
    started = time.monotonic()
    res = run_bounded(["sh", "-c", "echo early; sleep 30"], stdin=None, timeout=1, stop=_kill_group)
    assert time.monotonic() - started < 5
    assert res.timed_out and res.exit_code == 124 and res.stdout == "early\n"
    data = os.urandom(3 * 65536).hex().encode()  # more than a pipe holds
    echo = run_bounded(["sh", "-c", "wc -c; exit 3"], stdin=data, timeout=10, stop=_kill_group)
    assert (echo.exit_code, echo.stdout.strip(), echo.truncated) == (3, str(len(data)), False)


def test_store_root_and_copies_off_btrfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTLAB_NSPAWN_ROOT", str(tmp_path / "store"))
    assert store_root() == tmp_path / "store"
    trees = Trees(store_root())
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("a\n")
    os.symlink("/etc/passwd", src / "link")
    trees.copy(src, trees.root / "copy")
    assert (trees.root / "copy" / "etc" / "hostname").read_text() == "a\n"
    assert os.readlink(trees.root / "copy" / "link") == "/etc/passwd"
    trees.remove(trees.root / "copy")
    assert not (trees.root / "copy").exists()
    if not trees.btrfs:
        assert not trees.limit(src, 1024**3)  # no disk bound without btrfs
