"""What a door starts in a machine ends with the door's session: one mechanism for both.

`docker exec` and `lxc exec` leave their process running in the machine when the client
dies (the engine keeps the machine's side of the PTY open), and a VM's sshd may notice a
vanished client late. So every shell or command a door starts runs under `env` with a
random marker in its environment (its children inherit it), and when the session ends,
however it ends, the door hangs up and then kills, from inside the machine, every process
that carries the marker.
"""

from __future__ import annotations

import re
import secrets

#: the environment variable that marks what a door started in a machine
MARK = "GUESTLAB_SESSION"
#: run in the machine as `sh -c END_SCRIPT sh MARKER`: SIGHUP to what carries it, then SIGKILL
END_SCRIPT = (
    f'm="{MARK}=$1"; '
    'found() { grep -lzx -- "$m" /proc/[0-9]*/environ 2>/dev/null | cut -d/ -f3; }; '
    'p=$(found); [ -n "$p" ] || exit 0; kill -HUP $p 2>/dev/null; sleep 1; '
    'p=$(found); [ -z "$p" ] || kill -KILL $p 2>/dev/null; exit 0'
)
TERM_TYPE = re.compile(r"^[A-Za-z0-9._+-]{1,40}$")


def new_marker() -> str:
    return secrets.token_hex(8)


def marked_argv(marker: str, command: str | None, term: str | None) -> list[str]:
    """What runs in the machine: bash (a login shell, or `-c COMMAND`), marked."""
    env = [f"{MARK}={marker}"]
    if term is not None:
        env.append(f"TERM={term if TERM_TYPE.match(term) else 'xterm'}")
    shell = ["/bin/bash", "-c", command] if command is not None else ["/bin/bash", "-l"]
    return ["env", *env, *shell]


def end_argv(marker: str) -> list[str]:
    """The command, run in the machine, that ends what carries `marker`."""
    return ["sh", "-c", END_SCRIPT, "sh", marker]
