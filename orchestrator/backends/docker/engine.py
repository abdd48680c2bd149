"""Names of a lab's Docker resources, and what the engine says of itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.backends.contract import LabRef
from orchestrator.backends.docker import sdk, seccomp
from orchestrator.messages import N_, _

START_FIX = N_("start it: `systemctl start docker`, or `dockerd &` where systemd is not PID 1")
USERNS_FIX = N_(
    "turn on user namespaces: `userns-remap` in /etc/docker/daemon.json "
    "(scripts/setup/docker.sh does it), then restart the engine"
)
if TYPE_CHECKING:
    import docker

#: storage drivers that bound one container's writes (`--storage-opt size=`)
DISK_DRIVERS = frozenset({"btrfs", "zfs"})


def connect() -> docker.DockerClient:
    """A client whose engine answered a ping."""
    client = sdk.docker.from_env(timeout=120)
    client.ping()
    return client


def image_ref(image: str) -> str:
    return f"guestlab/{image}:latest"


def container_name(lab: LabRef, machine: str) -> str:
    return f"gl-{lab.key}-{machine}"


def network_name(lab: LabRef) -> str:
    return f"gl-{lab.key}"


def lab_repo(lab: LabRef) -> str:
    return f"guestlab/lab-{lab.key}"


@dataclass(frozen=True)
class EngineFacts:
    """What the engine's `info` says that guestlab acts on."""

    cgroup_version: str
    userns: bool
    apparmor: bool
    storage_driver: str
    backing_fs: str
    seccomp_profile: bool = False
    data_root: str = ""

    @classmethod
    def read(cls, info: dict[str, Any]) -> EngineFacts:
        options = " ".join(info.get("SecurityOptions") or [])
        status = dict(info.get("DriverStatus") or [])
        return cls(
            cgroup_version=str(info.get("CgroupVersion", "1")),
            userns="name=userns" in options,
            apparmor="name=apparmor" in options,
            storage_driver=str(info.get("Driver", "")),
            backing_fs=str(status.get("Backing Filesystem", "")),
            seccomp_profile=seccomp.installed() is not None,
            data_root=str(info.get("DockerRootDir", "")),
        )

    @property
    def bounds_disk(self) -> bool:
        """Whether the storage driver can bound a container's writes."""
        if self.storage_driver in DISK_DRIVERS:
            return True
        # overlay2 can, on xfs mounted with project quotas (not visible in `info`)
        return self.storage_driver == "overlay2" and self.backing_fs == "xfs"

    def host_root_risk(self) -> str | None:
        if self.userns:
            return None
        return _(
            "this Docker engine runs containers without user namespaces, so root in a"
            " systemd machine (which needs CAP_SYS_ADMIN) is root on this host"
        )

    def __str__(self) -> str:
        """What `guestlab doctor` says of the engine, in the reader's language."""
        userns = (
            _("user namespaces") if self.userns else _("NO user namespaces (root is host root)")
        )
        if not self.bounds_disk:
            disk = _("no disk bound ({driver} on {fs})").format(
                driver=self.storage_driver, fs=self.backing_fs or "?"
            )
        elif self.storage_driver == "btrfs" and not self.seccomp_profile:
            disk = _("disk bound by btrfs, but a nested subvolume escapes it (no seccomp profile)")
        else:
            disk = _("disk bound by {driver}").format(driver=self.storage_driver)
            if self.storage_driver == "btrfs" and self.data_root:
                from orchestrator.backends import btrfs_quota

                quotas = btrfs_quota.mode(Path(self.data_root)) or _("quotas off")
                if quotas == "qgroup" and btrfs_quota.simple_available():
                    # what a restarted dockerd leaves (seen on 2026-12-02): commits 10x slower
                    quotas = _(
                        "qgroup: full accounting, which makes every clone slow; a restarted"
                        " dockerd turns it on, and scripts/setup/docker.sh, run with no lab"
                        " up, turns simple quotas back on"
                    )
                disk += f" ({quotas})"
        return f"{userns}, {disk}"
