"""Host commands attached to this terminal's streams: `shell`'s interactive one, and
`exec` fed from a pipe or a file (`cat f | guestlab exec ID M -- sh -c 'cat > f'`)."""

from __future__ import annotations

import os
import signal
import stat
import subprocess

from orchestrator.errors import GuestlabError
from orchestrator.messages import _

#: argv runs through the machine's own shell: a command the machine lacks then gets the
#: machine's own "not found" and exit 127, never the engine's exec error
IN_MACHINE_SHELL = ("sh", "-c", 'exec "$@"', "sh")


def stdin_is_piped() -> bool:
    """Whether standard input is a pipe or a file (data to pass on), not a terminal or
    /dev/null. Like ssh, `exec` then reads it; `</dev/null` stops that."""
    try:
        mode = os.fstat(0).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def run_interactive(argv: list[str]) -> int:
    """Run argv on this terminal and return its exit status; Ctrl-C belongs to it."""
    previous = signal.signal(signal.SIGINT, lambda *_args: None)  # default again in the child
    try:
        proc = _start(argv)
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
    return code if code >= 0 else 128 - code


def run_streaming(argv: list[str], timeout: float) -> tuple[int, bool]:
    """Run argv with this process's streams, stopped after `timeout` seconds; its exit
    status (124 when stopped) and whether it was stopped."""
    proc = _start(argv)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return 124, True
    return (code if code >= 0 else 128 - code), False


def _start(argv: list[str]) -> subprocess.Popen[bytes]:
    try:
        return subprocess.Popen(argv)
    except FileNotFoundError:
        raise GuestlabError(
            _("`{program}` is needed here and is not installed").format(program=argv[0])
        ) from None
