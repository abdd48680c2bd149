"""The tamper manifest of a Vagrant box (libvirt), kept beside the box file.

A box guestlab builds gets its manifest from its root tree while the tree is still
mounted (box.py hands it to `install`). A box built before manifests existed, or one an
instructor imported, gets it on first use from its disk: box.img out of the box file, a
sparse raw copy of it, and the root file system read by debugfs (disktree.py), never
mounted by the host's kernel. A manifest is named after the box file's size and mtime,
so a rebuilt or re-imported box is never compared with the manifest of the one before.

When the disk cannot be read (no debugfs or qemu-img, no ext2/3/4 root, a disk too odd),
the box has no manifest: its VMs' binaries are not compared, as before manifests
existed, and the reason is logged once per process rather than at every check run.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from orchestrator.backends.common import build_once, lock_path
from orchestrator.images import diskcheck
from orchestrator.images.disktree import DiskUnreadable, from_ext4
from orchestrator.images.manifest import Manifest, save, source_id
from orchestrator.images.tarcheck import ImageRefused

log = logging.getLogger("guestlab.images")
OS_RELEASE = ("/usr/lib/os-release", "/etc/os-release")
CONVERT_TIMEOUT = 900.0
#: boxes (by manifest path) whose manifest could not be made in this process: once said,
#: not tried again at every check run (a try costs a disk conversion)
_unreadable: dict[Path, str] = {}


def cache_path(box: Path, ident: str | None = None) -> Path:
    """Where the manifest of the box file `box` (as it is now, or of build `ident`) lives."""
    return box.with_name(f"{box.name}.manifest.{ident or source_id(box)}.json")


def install(manifest: Manifest, built: Path, box: Path) -> None:
    """Put the box file `built` in place at `box` with its manifest: the manifest first
    (a rename keeps the size and mtime it is named after), so no box is seen without it."""
    save(manifest, cache_path(box, source_id(built)))
    os.replace(built, box)  # atomic: a crash never leaves half a box
    forget(box, keep=cache_path(box))


def forget(box: Path, keep: Path | None = None) -> None:
    """Remove the manifests of earlier builds of `box` (all of them unless `keep`)."""
    for old in box.parent.glob(f"{box.name}.manifest.*.json"):
        if old != keep:
            old.unlink(missing_ok=True)


def for_box(box: Path) -> Manifest | None:
    """The manifest of the box file `box`, made from its disk on first use; None (said
    once) when there is no box file or its disk cannot be read."""
    if not box.exists():
        _say(box, box, "the box file is not in the image store")
        return None
    cache = cache_path(box)
    if cache in _unreadable:
        return None

    def make() -> None:
        with tempfile.TemporaryDirectory(dir=box.parent, prefix=".manifest.") as work:
            save(from_box_file(box, Path(work)), cache)
        forget(box, keep=cache)

    try:
        build_once(lock_path(f"{box.name}.manifest", box.parent), cache.exists, make)
    except (DiskUnreadable, ImageRefused, OSError, tarfile.TarError) as e:
        _say(box, cache, str(e))
        return None
    return Manifest.from_json(cache.read_text())


def _say(box: Path, key: Path, why: str) -> None:
    if key not in _unreadable:
        _unreadable[key] = why
        log.warning(
            "the Vagrant box %s has no tamper manifest (%s): the binaries of its VMs are "
            "not compared with the image",
            box.name,
            why,
        )


def from_box_file(box: Path, work: Path) -> Manifest:
    """The manifest of the root file system on the disk of the box file `box`, read with
    `work` (an empty directory) as scratch space."""
    disk = work / "box.img"
    with tarfile.open(box, mode="r:*") as tar:
        member = next((m for m in tar if m.name.lstrip("./") == "box.img" and m.isreg()), None)
        source = tar.extractfile(member) if member is not None else None
        if source is None:
            raise DiskUnreadable(f"{box.name} holds no box.img")
        with source, disk.open("wb") as out:
            shutil.copyfileobj(source, out)
    raw = work / "disk.raw"
    # the format said, never probed: a raw disk posing as qcow2 is not opened as one
    argv = ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-S", "4k", str(disk), str(raw)]
    try:
        res = subprocess.run(argv, capture_output=True, timeout=CONVERT_TIMEOUT, check=False)
    except FileNotFoundError:
        raise DiskUnreadable("qemu-img (qemu-utils) is not installed") from None
    except subprocess.TimeoutExpired:
        raise DiskUnreadable(f"qemu-img took more than {CONVERT_TIMEOUT:g} s") from None
    if res.returncode != 0:
        raise DiskUnreadable(f"box.img of {box.name} is no qcow2 disk qemu-img can read")
    disk.unlink()
    for offset, _size in diskcheck.layout(raw):
        # debugfs reads the partition in place (`FILE?offset=N`): no loop device
        device = f"{raw.name}?offset={offset}"
        if any(diskcheck.debugfs_cat(f"{raw}?offset={offset}", p) for p in OS_RELEASE):
            return from_ext4(device, work)
    raise DiskUnreadable("its disk has no ext2/3/4 root file system with an os-release")
