"""Running commands in an nspawn machine from the host: confined, bounded and killable.

A command enters through enter.py (run as its own process): the machine's user
namespace and every other namespace of its init, the init's capability bounding set, and
the seccomp filters systemd-nspawn gave the init. Each command runs in cgroups of its own,
below the machine's limit cgroups, so that the host can find and kill everything it
started, whatever the command does inside (a `timeout` replaced by a student included),
and its output is read up to OUTPUT_LIMIT per stream.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from orchestrator.backends.base import OUTPUT_LIMIT, ExecResult
from orchestrator.backends.nspawn.host import proc_stat, remove_cgroups, wait_group_gone
from orchestrator.backends.nspawn.seccomp import volume_ioctl_filter

ENTER = Path(__file__).with_name("enter.py")
LAUNCH = Path(__file__).with_name("seccomp.py")
#: the interpreter runs the entering script isolated: no site, no PYTHON* variables
PYTHON = [sys.executable, "-I", "-S"]
_CHUNK = 65536


def bounding_set(pid: int) -> str:
    """The capability bounding set of a process, as the hex digits of /proc/PID/status."""
    return parse_bounding(Path(f"/proc/{pid}/status").read_text())


def parse_bounding(status: str) -> str:
    for line in status.splitlines():
        if line.startswith("CapBnd:"):
            value = line.split(":", 1)[1].strip()
            int(value, 16)  # a malformed field fails here, not in the machine
            return value
    raise ValueError("no CapBnd line in the process status")


def enter_argv(
    init: int,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    seccomp: Path | None,
    cgroups: Sequence[str] = (),
) -> list[str]:
    """The host command that runs argv in the machine whose init is `init`, confined."""
    cmd = [*PYTHON, str(ENTER), "--pid", str(init), "--bounding", bounding_set(init)]
    if seccomp is not None:
        cmd += ["--seccomp", str(seccomp)]
    for d in cgroups:
        cmd += ["--cgroup", d]
    for key, value in env.items():
        cmd += ["--env", f"{key}={value}"]
    return [*cmd, "--", *argv]


def launch_argv(argv: Sequence[str]) -> list[str]:
    """The host command that runs argv (systemd-nspawn) under guestlab's seccomp filter of
    btrfs volume ioctls, which every process of the machine inherits.

    UnsupportedMachine on an architecture the filter does not know; FileNotFoundError when
    argv[0] is not installed.
    """
    volume_ioctl_filter(os.uname().machine)  # refuse here, in one sentence, not in a log
    program = shutil.which(argv[0])
    if program is None:
        raise FileNotFoundError(f"{argv[0]} is not installed")
    return [*PYTHON, str(LAUNCH), "--", os.path.abspath(program), *argv[1:]]


def seccomp_of(init: int, store: Path) -> Path | None:
    """The file of the seccomp filters of `init` (dumped once per boot), None if unreadable.

    The file records which init it was taken from; another init (the machine restarted)
    means another dump. A lock keeps two commands from ptrace-attaching at once.
    """
    stamp = store.with_name(store.name + ".pid")
    with open(store.with_name(store.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with contextlib.suppress(OSError, ValueError):
            if int(stamp.read_text()) == init and store.is_file():
                return store
        done = subprocess.run(
            [*PYTHON, str(ENTER), "--dump-seccomp", str(init), str(store)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        if done.returncode != 0:
            return None
        stamp.write_text(str(init))
        return store


def exec_cgroups(parents: Sequence[str]) -> list[str]:
    """A fresh cgroup below each of the machine's limit cgroups, for one command."""
    name = f"exec-{uuid.uuid4().hex[:12]}"
    made = []
    for parent in parents:
        d = Path(parent, name)
        with contextlib.suppress(OSError):
            d.mkdir()
            made.append(str(d))
    return made


def kill_cgroups(dirs: Sequence[str]) -> None:
    """Kill every process of the cgroups (frozen first where a freezer is, so that none
    forks while being killed), then remove the cgroups."""
    freezer = next((Path(d) for d in dirs if Path(d, "freezer.state").exists()), None)
    for _ in range(200):
        pids: set[int] = set()
        for d in dirs:
            for dirpath, _dirs, _files in os.walk(d):
                with contextlib.suppress(OSError):
                    pids.update(int(p) for p in Path(dirpath, "cgroup.procs").read_text().split())
        pids = {p for p in pids if (proc_stat(p) or ("Z", 0))[0] != "Z"}
        if not pids:
            break
        if freezer is not None:
            with contextlib.suppress(OSError):
                (freezer / "freezer.state").write_text("FROZEN")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if freezer is not None:
            with contextlib.suppress(OSError):
                (freezer / "freezer.state").write_text("THAWED")
        time.sleep(0.02)
    remove_cgroups(dirs)


def run_bounded(
    argv: list[str],
    *,
    stdin: bytes | None,
    timeout: float,
    stop: Callable[[subprocess.Popen[bytes]], None],
) -> ExecResult:
    """Run a host command, keeping at most OUTPUT_LIMIT bytes of each stream.

    On timeout, or when a stream overflows, `stop(proc)` kills the command and all it
    started; the result says which happened.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={},
        start_new_session=True,  # its own process group
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    bufs = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in bufs:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    pending = memoryview(stdin or b"")
    if proc.stdin is not None:
        if pending:
            os.set_blocking(proc.stdin.fileno(), False)
            sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
        else:
            proc.stdin.close()
    deadline = time.monotonic() + timeout
    timed_out = truncated = False
    try:
        while sel.get_map() and not truncated:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            for key, _events in sel.select(left):
                fd = int(key.fd)
                if fd not in bufs:  # stdin
                    try:
                        pending = pending[os.write(fd, pending[:_CHUNK]) :]
                    except BrokenPipeError:
                        pending = pending[:0]
                    except BlockingIOError:
                        continue
                    if not pending:
                        sel.unregister(fd)
                        assert proc.stdin is not None
                        proc.stdin.close()
                    continue
                try:
                    chunk = os.read(fd, _CHUNK)
                except BlockingIOError:
                    continue
                if not chunk:
                    sel.unregister(fd)
                    continue
                buf = bufs[fd]
                room = OUTPUT_LIMIT - len(buf)
                buf += chunk[:room]
                truncated = truncated or len(chunk) > room
        if timed_out or truncated:
            stop(proc)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop(proc)
            code = proc.wait()
    finally:
        sel.close()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
    if timed_out:
        return ExecResult(124, _text(out), _text(err), timed_out=True, truncated=truncated)
    return ExecResult(
        code if code >= 0 else 128 - code, _text(out), _text(err), truncated=truncated
    )


def stopper(cgroups: Sequence[str]) -> Callable[[subprocess.Popen[bytes]], None]:
    """What stops one command: its process group, and everything in its cgroups."""

    def stop(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)  # reaped here, so that its status is kept
        kill_cgroups(cgroups)
        # killed, the command lingers until the machine's init reaps it: wait, so that a
        # stopped command is really gone when exec returns
        wait_group_gone(proc.pid, limit=5.0)

    return stop


def _text(raw: bytes | bytearray) -> str:
    return bytes(raw).decode(errors="replace")
