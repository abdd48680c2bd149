"""Commands in a machine, bounded from the host: output size and time.

Nothing inside the machine is trusted to stop a command (root there can replace
`timeout`), so the host reads the exec's multiplexed stream itself, keeps at most
OUTPUT_LIMIT bytes of each stream, and past the deadline or the limit kills the command's
whole process tree through the host's /proc.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import struct
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from orchestrator.backends.contract import OUTPUT_LIMIT, ExecResult

#: how long a killed command may take to be reaped before we stop asking its exit code
REAP_WAIT = 3.0


class Stream:
    """Frames of a hijacked exec connection: (stream number, bytes), with a deadline."""

    def __init__(self, sock: Any, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def _read(self, n: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([self.sock], [], [], left)
        if not ready:
            raise TimeoutError
        if hasattr(self.sock, "recv"):
            return bytes(self.sock.recv(n))
        return bytes(self.sock.read(n) or b"")

    def _exactly(self, n: int) -> bytes | None:
        data = b""
        while len(data) < n:
            chunk = self._read(n - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def frames(self) -> Any:
        while True:
            header = self._exactly(8)
            if header is None:
                return
            stream, size = header[0], struct.unpack(">I", header[4:])[0]
            while size > 0:
                chunk = self._read(min(size, 65536))
                if not chunk:
                    return
                size -= len(chunk)
                yield stream, chunk


def run(
    api: Any,
    container: str,
    argv: Sequence[str],
    *,
    timeout: float,
    limit: int = OUTPUT_LIMIT,
) -> ExecResult:
    """Run argv as root in the container; raises the SDK's errors for a missing machine."""
    exec_id = api.exec_create(container, list(argv), user="root")["Id"]
    sock = api.exec_start(exec_id, socket=True)
    out, err = bytearray(), bytearray()
    timed_out = truncated = False
    try:
        for stream, chunk in Stream(sock, time.monotonic() + timeout).frames():
            buf = err if stream == 2 else out
            room = limit - len(buf)
            buf += chunk[:room]
            if len(chunk) > room:
                truncated = True
                break
    except TimeoutError:
        timed_out = True
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    if timed_out or truncated:
        kill_tree(int(api.exec_inspect(exec_id).get("Pid") or 0))
    code = _exit_code(api, exec_id)
    return ExecResult(
        exit_code=124 if timed_out else (code if code is not None else 137),
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
        timed_out=timed_out,
        truncated=truncated,
    )


def _exit_code(api: Any, exec_id: str) -> int | None:
    deadline = time.monotonic() + REAP_WAIT
    while True:
        info = api.exec_inspect(exec_id)
        if not info.get("Running") or time.monotonic() > deadline:
            code = info.get("ExitCode")
            return int(code) if code is not None and not info.get("Running") else None
        time.sleep(0.02)


def descendants(pid: int, proc: str = "/proc") -> list[int]:
    """`pid` and every process below it, from the host's process table."""
    children: dict[int, list[int]] = {}
    for entry in Path(proc).iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def kill_tree(pid: int) -> None:
    """Stop the process and all below it until none forks any more, then kill them all."""
    if pid <= 1:
        return
    stopped: set[int] = set()
    for _ in range(5):
        fresh = [p for p in descendants(pid) if p not in stopped]
        if not fresh:
            break
        for p in fresh:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGSTOP)
        stopped.update(fresh)
    for p in stopped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(p, signal.SIGKILL)
