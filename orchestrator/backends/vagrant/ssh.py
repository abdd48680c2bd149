"""Commands in a Vagrant machine over plain ssh, with the output of `vagrant ssh-config`.

`vagrant ssh -c` costs two to three seconds of Ruby per command; plain ssh with the same
settings and one shared connection per machine costs a fraction of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
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


@dataclass(frozen=True)
class Ssh:
    """One machine of a lab, reached as `vagrant ssh-config` says, root through sudo."""

    lab: LabRef
    machine: str

    @property
    def config(self) -> Path:
        """The cached `vagrant ssh-config MACHINE`, in the lab's directory."""
        return lab_dir(self.lab) / "ssh" / f"{self.machine}.config"

    def save_config(self, text: str) -> None:
        paths.ensure(self.config.parent)
        self.config.write_text(text)

    @property
    def _control_path(self) -> str:
        # sockets must stay short (108 bytes): a hash under guestlab's home, not the lab dir
        digest = hashlib.sha256(f"{self.lab.key}\0{self.machine}".encode()).hexdigest()[:16]
        return str(paths.ensure(paths.home() / "ssh") / digest)

    def _base(self) -> list[str]:
        return [
            "ssh", "-F", str(self.config),
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "LogLevel=ERROR",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", f"ControlPath={self._control_path}",
        ]  # fmt: skip

    def _master(self) -> None:
        """One shared connection per machine, started apart so it holds none of our pipes."""
        base = self._base()
        check = subprocess.run(
            [*base, "-O", "check", self.machine], capture_output=True, timeout=10, check=False
        )
        if check.returncode == 0:
            return
        # a failure shows in the command that follows, which connects by itself
        subprocess.run(
            [*base, "-o", "ControlMaster=yes", "-o", "ControlPersist=300", "-f", "-N",
             self.machine],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            timeout=40, check=False,
        )  # fmt: skip

    def forget(self) -> None:
        """Drop the cached ssh-config and the shared connection (a VM restarted, or went)."""
        if self.config.exists():
            subprocess.run(
                [*self._base(), "-O", "exit", self.machine],
                capture_output=True, timeout=10, check=False,
            )  # fmt: skip
            self.config.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            os.unlink(self._control_path)

    def run(self, argv: Sequence[str], *, timeout: float, stdin: bytes | None = None) -> ExecResult:
        """Run argv as root; MachineUnavailable when ssh itself cannot get through."""
        limit = max(timeout, 0.1)
        shell = ["sh", "-c", _RUN_SCRIPT]
        if argv and _TRUSTED_TOOL.match(argv[0]):
            shell = [argv[0], "sh", "-c", _RUN_SCRIPT_BUSYBOX]
        remote = shlex.join(["sudo", "-n", "--", *shell, "sh", f"{limit:.3f}", *argv])
        self._master()
        started = time.monotonic()
        try:
            proc = subprocess.run(
                [*self._base(), self.machine, remote],
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
        remote = shlex.join(["sudo", "-n", "--", *argv])
        return [*self._base(), "-tt" if tty else "-T", self.machine, remote]


def _ssh_failed(stderr: str) -> bool:
    """Whether exit 255 came from ssh itself (no connection) rather than the command."""
    needles = (
        "ssh: connect to host", "Connection refused", "Connection timed out",
        "Connection closed", "No route to host", "Could not resolve hostname",
        "Permission denied (publickey", "Connection reset", "kex_exchange_identification",
        "Host is down", "Broken pipe",
    )  # fmt: skip
    return any(n in stderr for n in needles)
