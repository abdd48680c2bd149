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
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from orchestrator.backends.common import file_lock
from orchestrator.backends.contract import OUTPUT_LIMIT, ExecResult
from orchestrator.backends.nspawn.cgroups import exec_cgroups, kill_cgroups, remove_cgroups
from orchestrator.backends.nspawn.host import wait_group_gone
from orchestrator.backends.nspawn.seccomp import volume_ioctl_filter

ENTER = Path(__file__).with_name("enter.py")
LAUNCH = Path(__file__).with_name("seccomp.py")
#: the environment every command run in a machine gets (nothing of the host's)
CONTAINER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "USER": "root",
    "LOGNAME": "root",
    "LANG": "C.UTF-8",
}
#: the interpreter runs the entering script isolated: no site, no PYTHON* variables
PYTHON = [sys.executable, "-I", "-S"]
_CHUNK = 65536


def bounding_set(pid: int) -> str:
    """The capability bounding set of a process, as the hex digits of /proc/PID/status."""
    return parse_bounding(Path(f"/proc/{pid}/status").read_text())


def parse_bounding(status: str) -> str:
    """The CapBnd hex digits of a /proc/PID/status text (ValueError when missing or bad)."""
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


def run_in_machine(
    mdir: Path,
    meta: dict[str, Any],
    init: int,
    argv: list[str],
    timeout: float,
    stdin: bytes | None = None,
) -> ExecResult:
    """Run argv in the machine, confined, in cgroups of its own; bounded in time and output."""
    cgroups = exec_cgroups(meta.get("exec_cgroups", []))
    cmd = enter_argv(
        init,
        argv,
        env=CONTAINER_ENV,
        seccomp=seccomp_of(init, mdir / "seccomp.bpf"),
        cgroups=cgroups,
    )
    try:
        return run_bounded(cmd, stdin=stdin, timeout=timeout, stop=stopper(cgroups))
    finally:
        remove_cgroups(cgroups)  # only empty ones go: what the command left runs on


def login_shell_argv(mdir: Path, meta: dict[str, Any], init: int) -> list[str]:
    """The host command that opens a root login shell in the machine, confined."""
    return attach_argv(mdir, meta, init, ["/bin/bash", "-l"])


def attach_argv(mdir: Path, meta: dict[str, Any], init: int, argv: Sequence[str]) -> list[str]:
    """The host command that runs argv in the machine, confined, on the caller's streams."""
    env = {**CONTAINER_ENV, "TERM": os.environ.get("TERM", "xterm")}
    seccomp = seccomp_of(init, mdir / "seccomp.bpf")
    return enter_argv(init, argv, env=env, seccomp=seccomp, cgroups=meta.get("exec_cgroups", []))


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
    with file_lock(store.with_name(store.name + ".lock")):
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


class Pipes:
    """The pipes of one host command: at most OUTPUT_LIMIT bytes kept of each output
    stream, and its input (if any) written as the command reads it."""

    def __init__(self, proc: subprocess.Popen[bytes], stdin: bytes | None) -> None:
        assert proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.out, self.err = bytearray(), bytearray()
        self.bufs = {proc.stdout.fileno(): self.out, proc.stderr.fileno(): self.err}
        self.truncated = False
        self.sel = selectors.DefaultSelector()
        for fd in self.bufs:
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ)
        self.pending = memoryview(stdin or b"")
        if proc.stdin is not None:
            if self.pending:
                os.set_blocking(proc.stdin.fileno(), False)
                self.sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE)
            else:
                proc.stdin.close()

    def pump(self, deadline: float) -> bool:
        """Move bytes until every pipe is done, a stream overflows, or the deadline
        (time.monotonic()) passes; whether it passed."""
        while self.sel.get_map() and not self.truncated:
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            for key, _events in self.sel.select(left):
                fd = int(key.fd)
                if fd in self.bufs:
                    self.read(fd)
                else:
                    self.write(fd)
        return False

    def write(self, fd: int) -> None:
        """Write what the command's stdin takes; close it once all is written."""
        try:
            self.pending = self.pending[os.write(fd, self.pending[:_CHUNK]) :]
        except BrokenPipeError:
            self.pending = self.pending[:0]
        except BlockingIOError:
            return
        if not self.pending:
            self.sel.unregister(fd)
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def read(self, fd: int) -> None:
        """Keep what an output stream has, up to OUTPUT_LIMIT; note an overflow."""
        try:
            chunk = os.read(fd, _CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            self.sel.unregister(fd)
            return
        buf = self.bufs[fd]
        room = OUTPUT_LIMIT - len(buf)
        buf += chunk[:room]
        self.truncated = self.truncated or len(chunk) > room

    def close(self) -> None:
        """Close the selector and every pipe."""
        self.sel.close()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()


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
    pipes = Pipes(proc, stdin)
    try:
        timed_out = pipes.pump(time.monotonic() + timeout)
        if timed_out or pipes.truncated:
            stop(proc)
        try:
            code = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop(proc)
            code = proc.wait()
    finally:
        pipes.close()
    out, err, truncated = _text(pipes.out), _text(pipes.err), pipes.truncated
    if timed_out:
        return ExecResult(124, out, err, timed_out=True, truncated=truncated)
    return ExecResult(code if code >= 0 else 128 - code, out, err, truncated=truncated)


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
