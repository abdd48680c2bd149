"""The shell inside the machine ends with its terminal.

`docker exec -it` and `lxc exec` leave the in-machine shell running when their client
dies: the engine keeps the machine's side of the PTY open, so the shell never sees a
hang-up. The terminal therefore marks the shell it starts with an environment variable
(its children inherit it) and, once the client is gone, hangs up and then kills every
process in the machine that carries the mark. nspawn's helper runs in the host process
group that PtyProcess.close() ends, and a VM's sshd hangs up its session itself.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

MARK = "GUESTLAB_WEB_SHELL"

#: every process whose environment holds the mark: HUP, a moment, then KILL
END_SCRIPT = """
found() {
  for d in /proc/[0-9]*; do
    tr '\\0' '\\n' < "$d/environ" 2>/dev/null | grep -qx "$1" && echo "${d#/proc/}"
  done
}
pids=$(found "$1"); [ -n "$pids" ] || exit 0
kill -HUP $pids 2>/dev/null; sleep 1
pids=$(found "$1"); [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
exit 0
"""


def tagged_argv(argv: list[str]) -> tuple[list[str], str]:
    """The engine's shell command with a mark in the shell's environment, and the mark
    ("" where the engine needs none)."""
    tag = secrets.token_hex(8)
    if argv[:2] == ["docker", "exec"]:
        return [*argv[:2], "-e", f"{MARK}={tag}", *argv[2:]], tag
    if argv[:2] == ["lxc", "exec"] and "--" in argv:
        cut = argv.index("--")
        return [*argv[:cut], "--env", f"{MARK}={tag}", *argv[cut:]], tag
    return argv, ""


def end_shell(lab: Any, machine: str, tag: str) -> None:
    """Hang up what the terminal left in the machine; a machine that is gone has nothing."""
    backend = lab.backend_for(machine)
    with contextlib.suppress(Exception):  # stopped or removed machine: nothing is left
        backend.exec(lab.ref, machine, ["sh", "-c", END_SCRIPT, "sh", f"{MARK}={tag}"], timeout=15)
