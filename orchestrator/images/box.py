"""Build a bootable Vagrant box (libvirt, qcow2) from a catalog image's rootfs tarball.

No box hub is needed: the disk is made here from Debian packages. The cached rootfs
tarball is unpacked onto a fresh ext4 partition, a cloud kernel, openssh-server and sudo
are installed in a chroot, and syslinux makes the disk bootable. Every VM made from the
box gets its own machine ID and SSH host keys on first boot: none are baked in.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from orchestrator import paths
from orchestrator.backends.common import build_once, lock_path
from orchestrator.backends.contract import Progress, no_progress
from orchestrator.errors import ProvisioningError, UsageError
from orchestrator.images import chroot
from orchestrator.images.box_guest import configure, install_packages
from orchestrator.images.boxmanifest import install
from orchestrator.images.catalog import ImageDef, lookup
from orchestrator.images.chroot import TOOLS, sh
from orchestrator.images.manifest import Manifest, from_tree
from orchestrator.images.mirror import choose_mirror
from orchestrator.images.rootfs import ensure_tarball
from orchestrator.messages import _

#: virtual size of the box's disk, in GiB (sparse: the qcow2 holds only what is written)
DISK_GIB = 4
PART_START = 2048  # sectors: the usual 1 MiB alignment, room for the MBR and nothing else
MBR_CANDIDATES = ("/usr/lib/syslinux/mbr/mbr.bin", "/usr/share/syslinux/mbr.bin")
#: where Vagrant ships its insecure key pair: Debian's package, then HashiCorp's installer
INSECURE_KEY_GLOBS = (
    "/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
    "/usr/lib/ruby/vendor_ruby/vagrant*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub",
    "/opt/vagrant/embedded/gems/*/gems/vagrant-*/keys/vagrant.pub",
)


#: raised whenever the box recipe changes, so that hosts with an older box build this one
BOX_REVISION = 4


def box_name(image: str) -> str:
    """The name Vagrant knows the box by (its recipe's revision included)."""
    return f"guestlab/{image}-r{BOX_REVISION}"


def box_path(image: str) -> Path:
    """Where the built box file is cached (shared with CI through $GUESTLAB_IMAGES)."""
    return paths.images_dir() / f"{image}.r{BOX_REVISION}.libvirt.box"


def insecure_public_key() -> Path:
    """Vagrant's well-known insecure public key, from the installed vagrant package."""
    for pattern in INSECURE_KEY_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return Path(found[-1])
    raise UsageError(
        _("cannot find Vagrant's insecure public key (keys/vagrant.pub of the vagrant package)"),
        hint=_("install Vagrant: apt-get install -y vagrant"),
    )


def _mbr() -> Path:
    for candidate in MBR_CANDIDATES:
        if os.path.exists(candidate):
            return Path(candidate)
    raise UsageError(_("syslinux's mbr.bin is missing"), hint="apt-get install -y syslinux-common")


@contextlib.contextmanager
def _loop_partition(raw: Path) -> Iterator[str]:
    """The block device of the raw disk's first partition, detached afterwards.

    `losetup -P` makes the partition device appear where udev or devtmpfs run; in
    containers it may not, so `partx -a` is tried, then a second loop device over the
    partition's byte range, which needs neither.
    """
    attached: list[str] = []
    try:
        disk = sh(["losetup", "--find", "--show", "--partscan", str(raw)]).strip()
        attached.append(disk)
        part = f"{disk}p1"
        if not _appears(part):
            with contextlib.suppress(ProvisioningError):
                sh(["partx", "-a", disk])
        if not _appears(part):
            size = raw.stat().st_size - PART_START * 512
            part = sh(
                [
                    "losetup",
                    "--find",
                    "--show",
                    "--offset",
                    str(PART_START * 512),
                    "--sizelimit",
                    str(size),
                    str(raw),
                ]
            ).strip()
            attached.append(part)
        yield part
    finally:
        for dev in reversed(attached):
            subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def _appears(dev: str, wait: float = 2.0) -> bool:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if os.path.exists(dev):
            return True
        time.sleep(0.1)
    return os.path.exists(dev)


@contextlib.contextmanager
def _mounted(dev: str, where: Path) -> Iterator[Path]:
    sh(["mount", dev, str(where)])
    try:
        yield where
    finally:
        subprocess.run(["umount", "-R", str(where)], check=False, capture_output=True)


def _fill_disk(
    raw: Path,
    mnt: Path,
    image: ImageDef,
    tarball: Path,
    mirror: str,
    pubkey: bytes,
    progress: Progress,
) -> Manifest:
    """Make the root file system on the raw disk's partition and install the box in it;
    the manifest of its binaries, read while the tree is mounted."""
    mnt.mkdir()
    with _loop_partition(raw) as part:
        # syslinux 6.04 cannot read ext4 with 64-bit block numbers
        sh(["mkfs.ext4", "-q", "-O", "^64bit", "-L", "root", part])
        uuid = sh(["blkid", "-s", "UUID", "-o", "value", part]).strip()
        with _mounted(part, mnt) as root:
            progress(_("unpacking {name} onto the box's disk").format(name=tarball.name))
            sh(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-xpf", str(tarball)])
            with chroot.mounts(root):
                install_packages(root, image, mirror, progress)
                configure(root, pubkey, uuid)
            progress(_("installing the extlinux boot loader"))
            sh(["extlinux", "--install", str(root / "boot/extlinux")])
            # what tamper checks compare a VM's binaries with: the tree as it boots
            progress(_("hashing the box's binaries (its tamper manifest)"))
            manifest = from_tree(root)
            # blocks of deleted files (apt's downloads) would otherwise end up in the
            # qcow2: discarding them punches holes in the raw file
            sh(["fstrim", str(root)])
    return manifest


def build_box(image: ImageDef, tarball: Path, dest: Path, mirror: str, progress: Progress) -> None:
    """Make the box file `dest` from the rootfs tarball of `image`."""
    if os.geteuid() != 0:
        raise UsageError(_("building a Vagrant box needs root (loop devices, chroot)"))
    if platform.machine() not in ("x86_64", "amd64"):
        raise UsageError(
            _("boxes are built for x86_64 hosts only (this is {machine})").format(
                machine=platform.machine()
            )
        )
    for tool, package in TOOLS.items():
        if shutil.which(tool) is None:
            raise UsageError(
                _("`{tool}` is not installed").format(tool=tool),
                hint=f"apt-get install -y {package}",
            )
    pubkey = insecure_public_key().read_bytes()
    mbr = _mbr().read_bytes()[:440]
    work = Path(tempfile.mkdtemp(prefix=f"{image.name}.box.", dir=paths.images_dir()))
    try:
        raw = work / "disk.raw"
        with open(raw, "wb") as f:
            f.truncate(DISK_GIB * 1024**3)
        sh(
            ["sfdisk", "--quiet", str(raw)],
            input=f"label: dos\nstart={PART_START}, type=83, bootable\n".encode(),
        )
        with open(raw, "r+b") as f:
            f.write(mbr)  # the boot code only: the partition table after byte 440 stays
        manifest = _fill_disk(raw, work / "mnt", image, tarball, mirror, pubkey, progress)
        progress(_("converting the disk to qcow2"))
        # compressed clusters cost little to read (QEMU inflates them on the host) and
        # make the box a third of the size; a VM's writes go to its own overlay
        sh(["qemu-img", "convert", "-c", "-O", "qcow2", str(raw), str(work / "box.img")])
        raw.unlink()
        meta = {"provider": "libvirt", "format": "qcow2", "virtual_size": DISK_GIB}
        (work / "metadata.json").write_text(json.dumps(meta) + "\n")
        partial = work / "box.tar"
        sh(["tar", "-C", str(work), "-cf", str(partial), "metadata.json", "box.img"])
        install(manifest, partial, dest)  # the box, and beside it what its binaries are
    finally:
        shutil.rmtree(work, ignore_errors=True)


def ensure_box_file(
    name: str,
    *,
    mirror: str | None = None,
    progress: Progress = no_progress,
    rebuild: bool = False,
) -> Path:
    """The cached box file of a catalog image, built first when missing."""
    image = lookup(name)
    target = box_path(name)

    def build() -> None:
        if image.imported:  # an imported box is its file; a rootfs has no kernel to boot
            what = "box file" if image.vm_disk else "kernel: import a .box or qcow2 for VMs"
            raise UsageError(
                _("the imported image `{name}` has no {what}").format(name=name, what=what),
                hint=f"guestlab image import {name} FILE",
            )
        url = choose_mirror(mirror)
        tarball = ensure_tarball(name, mirror=url, progress=progress)
        progress(_("building the Vagrant box {name}").format(name=box_name(name)))
        build_box(image, tarball, target, url, progress)

    # the lock lives beside the box: $GUESTLAB_IMAGES is shared by state stores, and two
    # stores building one box would each spend minutes on it
    lock = lock_path(f"box-{name}", paths.images_dir())
    build_once(lock, lambda: target.exists() and not rebuild, build)
    return target
