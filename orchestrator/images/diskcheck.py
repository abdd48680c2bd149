"""Checking a VM disk (qcow2) someone hands us before Vagrant and libvirt see it.

qemu-img says what the file claims (format, virtual size, a backing file that would make
QEMU open a host path) and whether its metadata holds together; the root file system is
then read without mounting it: the disk as a sparse raw copy on a read-only loop device,
ext4 read by debugfs. What a check finds is one sentence.
"""

from __future__ import annotations

import contextlib
import json
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from orchestrator import paths
from orchestrator.images.tarcheck import (
    INITS,
    ImageRefused,
    RootfsFacts,
    elf_arch,
    facts_of,
    os_fields,
)
from orchestrator.messages import _

#: the largest disk a lab VM may claim: a 50 GB sparse claim would let one VM fill the pool
MAX_VIRTUAL = 32 * 1024**3
SHELLS = ("/usr/bin/dash", "/usr/bin/bash", "/bin/dash", "/bin/bash", "/usr/bin/busybox")


def _run(argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise ImageRefused(
            _("`{program}` is needed to check a disk and is not installed").format(program=argv[0])
        ) from None


def disk_info(path: Path, label: str) -> dict[str, object]:
    """What qemu-img reads in the file's header, refused unless a lone qcow2 of a sane size."""
    res = _run(["qemu-img", "info", "--output=json", "-U", str(path)])
    if res.returncode != 0:
        raise ImageRefused(_("{label} is not a disk image qemu-img can read").format(label=label))
    info = json.loads(res.stdout)
    if info.get("format") != "qcow2":
        raise ImageRefused(
            _("{label} is {format}, not qcow2").format(label=label, format=info.get("format"))
        )
    if info.get("backing-filename") or info.get("full-backing-filename"):
        raise ImageRefused(
            _("{label} names a backing file: it must stand alone").format(label=label)
        )
    size = int(info.get("virtual-size", 0))
    if size > MAX_VIRTUAL:
        raise ImageRefused(
            _("{label} claims a {gib} GiB disk; a lab VM gets at most {max_gib} GiB").format(
                label=label, gib=format(size / 1024**3, ".0f"), max_gib=MAX_VIRTUAL >> 30
            )
        )
    check = _run(["qemu-img", "check", "-U", str(path)], timeout=600)
    if check.returncode not in (0,):  # 2: corrupt, 3: leaks, 1: could not check (truncated)
        raise ImageRefused(
            _("{label} is truncated or corrupt (qemu-img check: exit {returncode})").format(
                label=label, returncode=check.returncode
            )
        )
    return info


def layout(raw: Path) -> list[tuple[int, int]]:
    """(offset, size) in bytes of each partition of the raw disk; the whole disk if none."""
    res = _run(["sfdisk", "--json", str(raw)])
    if res.returncode != 0:  # no partition table: a file system on the whole disk
        return [(0, raw.stat().st_size)]
    table = json.loads(res.stdout)["partitiontable"]
    unit = int(table.get("sectorsize", 512))
    return [(int(p["start"]) * unit, int(p["size"]) * unit) for p in table.get("partitions", [])]


@contextlib.contextmanager
def _partitions(path: Path, label: str) -> Iterator[list[str]]:
    """The disk's partitions as read-only loop devices over byte ranges of a raw copy.

    One loop device per partition, by offset: partition devices of `losetup -P` need
    udev or devtmpfs to appear, which a container host may not have.
    """
    with tempfile.TemporaryDirectory(dir=paths.images_dir(), prefix=".disk.") as work:
        raw = Path(work) / "disk.raw"
        if _run(["qemu-img", "convert", "-O", "raw", "-S", "4k", str(path), str(raw)]).returncode:
            raise ImageRefused(_("{label} cannot be read as a disk").format(label=label))
        devices: list[str] = []
        try:
            for offset, size in layout(raw):
                argv = ["losetup", "--find", "--show", "--read-only", "--offset", str(offset)]
                res = _run([*argv, "--sizelimit", str(size), str(raw)])
                if res.returncode != 0:
                    raise ImageRefused(
                        _("no loop device is free to read the disk (losetup failed)")
                    )
                devices.append(res.stdout.decode().strip())
            yield devices
        finally:
            for dev in devices:
                _run(["losetup", "-d", dev])


def debugfs_cat(dev: str, path: str) -> bytes | None:
    """The file at `path` of the file system on `dev` (a device, or `FILE?offset=N`)."""
    res = _run(["debugfs", "-R", f"cat {path}", dev], timeout=60)
    # debugfs prints its errors to stderr and exits 0: an empty answer is "not there"
    return res.stdout if res.returncode == 0 and res.stdout else None


def inspect_disk(path: Path, label: str | None = None) -> RootfsFacts:
    """Check the qcow2 at `path` (named `label` in messages) and say what its root file
    system holds."""
    label = label or path.name
    info = disk_info(path, label)
    with _partitions(path, label) as devices:
        for dev in devices:
            release = debugfs_cat(dev, "/usr/lib/os-release") or debugfs_cat(dev, "/etc/os-release")
            if release is None:
                continue
            fields = os_fields(release)
            shell = next((b for s in SHELLS if (b := debugfs_cat(dev, s))), None)
            if shell is None:
                raise ImageRefused(_("the disk's root file system has no shell (/bin/sh)"))
            arch = elf_arch(shell[:64])
            if arch != platform.machine():
                raise ImageRefused(
                    _("the disk's binaries are {arch}; this host runs {machine}").format(
                        arch=arch, machine=platform.machine()
                    )
                )
            systemd = any(debugfs_cat(dev, f"/{i}") for i in INITS[:2])
            return facts_of(fields, arch, systemd=systemd, size=int(info.get("actual-size", 0)))
    raise ImageRefused(
        _("{label} has no ext2/3/4 root file system with an os-release").format(label=label)
    )
