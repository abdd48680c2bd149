"""Commands in a Vagrant machine over plain ssh, with the output of `vagrant ssh-config`.

`vagrant ssh -c` costs two to three seconds of Ruby per command; plain ssh with the same
settings and one shared connection per machine costs a fraction of one. Commands log in
as root with the key Vagrant made for the machine, once it is copied to root (`sudo` cost
an emulated guest 0.17 of the 0.41 CPU-seconds of each command); until then, or when the
guest refuses root, they go through the box's user and `sudo`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator import paths
from orchestrator.backends.common import PUT_SCRIPT
from orchestrator.backends.contract import ExecResult, LabRef
from orchestrator.backends.vagrant.host import lab_dir
from orchestrator.errors import MachineUnavailable, ProvisioningError
from orchestrator.messages import _

#: commands run under coreutils `timeout` inside; this much longer we stop waiting outside
CLIENT_GRACE = 15.0
# Output goes to files inside and is printed at the end: a background process left holding
# stdout (`daemon &`) would otherwise keep ssh waiting until it exits.
_RUN_SCRIPT = (
    "d=$(mktemp -d) || exit 255; t=$1; shift; "
    'timeout --kill-after=2 "$t" "$@" >"$d/o" 2>"$d/e"; rc=$?; '
    'cat "$d/o"; cat "$d/e" >&2; rm -rf "$d"; exit $rc'
)
#: a trusted static tool the checks copied in (checks/trusted.py): when a command runs one,
#: the wrapper above runs under it too, so that no `sh`, `timeout` or `cat` of the VM's
#: carries its output (a replaced `cat` there could forge every probe's result)
_TRUSTED_TOOL = re.compile(r"^/\.guestlab-[0-9a-f]{16}/busybox$")
_RUN_SCRIPT_BUSYBOX = _RUN_SCRIPT.replace("--kill-after=2", "-k 2")
#: run by the box's user through sudo: its own key (the one Vagrant put in) becomes root's
_ROOT_KEY_SCRIPT = 'install -d -m 700 /root/.ssh && install -m 600 "$1" /root/.ssh/authorized_keys'
ROOT, SUDO = "root", "sudo"


@dataclass(frozen=True)
class Ssh:
    """One machine of a lab, reached as `vagrant ssh-config` says, as root (ROOT) or as the
    box's user through sudo (SUDO)."""

    lab: LabRef
    machine: str

    @property
    def config(self) -> Path:
        """The cached `vagrant ssh-config MACHINE`, in the lab's directory."""
        return lab_dir(self.lab) / "ssh" / f"{self.machine}.config"

    @property
    def _login_file(self) -> Path:
        """How commands reach root (ROOT or SUDO), settled once per cached ssh-config."""
        return self.config.with_suffix(".login")

    def save_config(self, text: str) -> None:
        paths.ensure(self.config.parent)
        self.config.write_text(text)

    def _control_path(self, login: str) -> str:
        # sockets must stay short (108 bytes): a hash under guestlab's home, not the lab dir
        name = f"{self.lab.key}\0{self.machine}\0{login}"
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        return str(paths.ensure(paths.home() / "ssh") / digest)

    def _base(self, login: str = SUDO) -> list[str]:
        user = ["-l", "root"] if login == ROOT else []
        return [
            "ssh", "-F", str(self.config), *user,
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", f"ControlPath={self._control_path(login)}",
        ]  # fmt: skip

    def _master(self, login: str) -> None:
        """One shared connection per machine and login, started apart so it holds none of
        our pipes. A live one answers on its socket: asked in-process, not with `ssh -O`."""
        control = self._control_path(login)
        with socket.socket(socket.AF_UNIX) as sock, contextlib.suppress(OSError):
            sock.connect(control)
            return
        with contextlib.suppress(OSError):
            os.unlink(control)  # stale, or ssh would quietly connect anew for every command
        # a failure shows in the command that follows, which connects by itself
        subprocess.run(
            [*self._base(login), "-o", "ControlMaster=yes", "-o", "ControlPersist=300",
             "-f", "-N", self.machine],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=40, check=False,
        )  # fmt: skip

    def _stop_master(self, login: str) -> None:
        if self.config.exists():  # ssh reads it even to tell its master to exit
            subprocess.run(
                [*self._base(login), "-O", "exit", self.machine],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
        with contextlib.suppress(OSError):
            os.unlink(self._control_path(login))

    def close(self) -> None:
        """End the shared connections; the next command logs in again."""
        for login in (ROOT, SUDO):
            self._stop_master(login)

    def forget(self) -> None:
        """Drop the shared connections, the cached ssh-config and the login (a VM
        restarted, went back to a snapshot, or went)."""
        self.close()
        self.config.unlink(missing_ok=True)
        self._login_file.unlink(missing_ok=True)

    def login(self) -> str:
        """ROOT once root's key is in and root got in; SUDO before, or when it cannot."""
        try:
            return self._login_file.read_text().strip()
        except OSError:
            return SUDO

    def settle_login(self) -> None:
        """Give root the box user's key, and keep ROOT when root then gets in; SUDO when
        the guest refuses (a student may forbid root's ssh login in their machine). Asked
        of a guest that has booted: one still booting or going down is left unsettled."""
        if self._login_file.exists():
            return
        remote = shlex.join(["sudo", "-n", "--", "sh", "-c", _ROOT_KEY_SCRIPT, "sh"])
        try:
            copied = self._plain(SUDO, remote + ' "$HOME/.ssh/authorized_keys"')
            way, answer = SUDO, copied
            if copied.returncode == 0:
                self._master(ROOT)
                answer = self._plain(ROOT, "true")
                way = ROOT if answer.returncode == 0 else SUDO
        except subprocess.TimeoutExpired:
            return
        err = answer.stderr.decode("utf-8", "replace")
        if answer.returncode == 255 and "Permission denied" not in err:
            return  # ssh's own failure (sshd restarting, the guest going down): unsettled
        self._login_file.write_text(way)
        if way == ROOT:
            self._stop_master(SUDO)  # its guest-side session is no longer needed

    def _plain(self, login: str, remote: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [*self._base(login), self.machine, remote],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60, check=False,
        )  # fmt: skip

    def run(self, argv: Sequence[str], *, timeout: float, stdin: bytes | None = None) -> ExecResult:
        """Run argv as root; MachineUnavailable when ssh itself cannot get through."""
        limit = max(timeout, 0.1)
        shell = ["sh", "-c", _RUN_SCRIPT]
        if argv and _TRUSTED_TOOL.match(argv[0]):
            shell = [argv[0], "sh", "-c", _RUN_SCRIPT_BUSYBOX]
        login = self.login()
        remote = shlex.join([*_through(login), *shell, "sh", f"{limit:.3f}", *argv])
        self._master(login)
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [*self._base(login), self.machine, remote],
                input=stdin if stdin is not None else b"",
                capture_output=True,
                timeout=limit + CLIENT_GRACE,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return ExecResult(
                124,
                "",
                _("no answer from {machine} in {limit} s").format(
                    machine=self.machine, limit=format(limit, "g")
                ),
                timed_out=True,
            )
        out = proc.stdout.decode("utf-8", "replace")
        err = proc.stderr.decode("utf-8", "replace")
        code = proc.returncode
        if code == 255 and login == ROOT and "Permission denied (publickey" in err:
            # root's login was taken away in the guest (its key, or sshd's settings): the
            # box's user and sudo from now on, as for a guest that never let root in
            self._login_file.write_text(SUDO)
            return self.run(argv, timeout=timeout, stdin=stdin)
        if code == 255 and _ssh_failed(err):
            raise MachineUnavailable(
                _("machine `{machine}` of lab `{key}` does not answer over SSH: {error}").format(
                    machine=self.machine, key=self.lab.key, error=err.strip()[-200:]
                )
            )
        timed_out = code in (124, 137, 143) and time.monotonic() - started >= limit * 0.95
        return ExecResult(code, out, err, timed_out=timed_out)

    def put_file(self, dest: str, data: bytes, mode: int) -> None:
        res = self.run(["sh", "-c", PUT_SCRIPT, "sh", dest, f"{mode:o}"], timeout=60, stdin=data)
        if not res.ok:
            raise ProvisioningError(
                _("cannot write {dest} in {machine}: {stderr}").format(
                    dest=dest, machine=self.machine, stderr=res.stderr.strip()
                )
            )

    def shell_argv(self) -> list[str]:
        if not self.config.exists():
            # before the first command guestlab has no ssh-config: Vagrant finds the way
            cd = shlex.quote(str(lab_dir(self.lab)))
            return ["sh", "-c", f"cd {cd} && vagrant ssh {shlex.quote(self.machine)} -c 'sudo -i'"]
        # a guest that reboots may take its network down before sshd's sessions end: the
        # keep-alives end the shell then, where TCP alone would hang it for hours
        return [
            "ssh", "-F", str(self.config), "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3", "-t", self.machine, "sudo", "-i",
        ]  # fmt: skip

    def attach_argv(self, argv: Sequence[str], *, tty: bool) -> list[str]:
        """ssh running argv as root: `-tt` gives it a terminal, `-T` keeps the streams apart."""
        login = self.login()
        remote = shlex.join([*_through(login), *argv])
        return [*self._base(login), "-tt" if tty else "-T", self.machine, remote]


def _through(login: str) -> list[str]:
    """What a command is prefixed with to run as root once logged in as `login`."""
    return ["sudo", "-n", "--"] if login == SUDO else []


def _ssh_failed(stderr: str) -> bool:
    """Whether exit 255 came from ssh itself (no connection) rather than the command."""
    needles = (
        "ssh: connect to host", "Connection refused", "Connection timed out",
        "Connection closed", "No route to host", "Could not resolve hostname",
        "Permission denied (publickey", "Connection reset", "kex_exchange_identification",
        "Host is down", "Broken pipe",
    )  # fmt: skip
    return any(n in stderr for n in needles)
