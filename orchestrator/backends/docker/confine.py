"""How a Docker lab machine is confined, stated once for the SDK and for `docker run`.

Root in a machine must have no power over the host. The engine runs every container in a
user namespace (the daemon's `userns-remap`), so root inside is an unprivileged uid
outside. systemd as PID 1 then needs the machine's own cgroup directories handed to that
uid (cgroups.delegate), which the host can only do once the container exists: the
container's first process waits for BOOT_FLAG before it becomes systemd.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.backends.contract import MachineSpec

#: written by the host once the machine's cgroups are delegated; /run is a fresh tmpfs
BOOT_FLAG = "/run/.guestlab-boot"
SYSTEMD = "/lib/systemd/systemd"
HOLD_THEN_BOOT = f"while [ ! -e {BOOT_FLAG} ]; do sleep 0.05; done; exec {SYSTEMD}"


@dataclass(frozen=True)
class Confinement:
    """The options of one machine's container."""

    spec: MachineSpec
    network: str
    labels: dict[str, str]
    #: bytes the machine may write, or None where the storage driver cannot bound it
    disk: int | None
    #: the seccomp profile that keeps the bound (seccomp.py), when the set-up made one
    seccomp: Path | None = None

    @property
    def systemd(self) -> bool:
        return self.spec.init == "systemd"

    @property
    def command(self) -> list[str]:
        if self.systemd:
            return ["/bin/sh", "-c", HOLD_THEN_BOOT]
        return ["sleep", "infinity"]

    def sdk_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `client.containers.run`."""
        s = self.spec
        kwargs: dict[str, Any] = dict(
            command=self.command,
            hostname=s.hostname or s.name,
            labels=self.labels,
            network=self.network,
            mem_limit=s.memory,
            memswap_limit=s.memory,
            nano_cpus=int(s.cpus * 1e9),
            pids_limit=s.pids,
            # a private cgroup namespace on v1 and v2 alike: the host's tree is never
            # mounted in, and the kernel refuses a v1 release_agent to root inside
            cgroupns="private",
            detach=True,
        )
        if self.disk is not None:
            kwargs["storage_opt"] = {"size": str(self.disk)}
        if self.seccomp is not None:
            # the API takes the profile itself; the command line, its file
            kwargs["security_opt"] = [f"seccomp={self.seccomp.read_text()}"]
        if self.systemd:
            kwargs.update(
                cap_add=["SYS_ADMIN"],
                tmpfs={"/run": "", "/run/lock": "", "/tmp": ""},
                environment={"container": "docker"},
                stop_signal="SIGRTMIN+3",
            )
        else:
            kwargs["init"] = True
        return kwargs

    def cli_args(self) -> list[str]:
        """The same as `docker run` options (Vagrant's docker provider's `create_args`;
        Vagrant gives the hostname itself)."""
        s = self.spec
        args = [
            "--network", self.network,
            "--memory", str(s.memory), "--memory-swap", str(s.memory),
            "--cpus", f"{s.cpus:g}", "--pids-limit", str(s.pids), "--cgroupns", "private",
        ]  # fmt: skip
        if self.disk is not None:
            args += ["--storage-opt", f"size={self.disk}"]
        if self.seccomp is not None:
            args += ["--security-opt", f"seccomp={self.seccomp}"]
        for key, value in sorted(self.labels.items()):
            args += ["--label", f"{key}={value}"]
        if not self.systemd:
            return [*args, "--init"]
        return [
            *args,
            "--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock",
            "--tmpfs", "/tmp", "--env", "container=docker", "--stop-signal", "SIGRTMIN+3",
        ]  # fmt: skip
