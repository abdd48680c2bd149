"""Build a catalog image's root filesystem and keep it as a tarball.

Every backend imports from the same cached tarball, so the slow part happens once per host.
A base image is debootstrapped; an image derived from one is the base's tree with its own
packages added by apt in a chroot, so a release's images share one debootstrap (each took
about a minute of both cores here, package scripts most of it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from orchestrator import paths
from orchestrator.backends.common import build_once, lock_path
from orchestrator.backends.contract import Progress, no_progress
from orchestrator.errors import UsageError
from orchestrator.images import chroot
from orchestrator.images.catalog import ImageDef, lookup
from orchestrator.images.mirror import choose_mirror
from orchestrator.messages import _


def tarball_path(name: str) -> Path:
    return paths.images_dir() / f"{name}.rootfs.tar"


def _customise(root: Path) -> None:
    """Trim the tree: no package caches, no stale apt lists (they only grow the image)."""
    for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
        d = root / sub
        if d.is_dir():
            for entry in d.iterdir():
                if entry.is_file():
                    entry.unlink()
    (root / "etc" / "hostname").write_text("localhost\n")


def build_rootfs(image: ImageDef, dest: Path, mirror: str, progress: Progress) -> None:
    """debootstrap `image` into the empty directory `dest`."""
    if os.geteuid() != 0:
        raise UsageError(
            _("building an image needs root (debootstrap)"), hint=_("run it with sudo")
        )
    argv = [
        "debootstrap",
        f"--variant={image.variant}",
        f"--include={','.join(image.packages)}",
        image.suite,
        str(dest),
        mirror,
    ]
    progress(_("debootstrap {suite} from {mirror}").format(suite=image.suite, mirror=mirror))
    chroot.sh(argv, progress=progress)
    _customise(dest)


def derive_rootfs(
    image: ImageDef, base: ImageDef, base_tarball: Path, dest: Path, mirror: str, progress: Progress
) -> None:
    """Unpack the base's tree into the empty directory `dest`, then add the image's own
    packages (those its base has not) with apt in a chroot."""
    if os.geteuid() != 0:
        raise UsageError(_("building an image needs root (chroot)"), hint=_("run it with sudo"))
    progress(_("unpacking {name}").format(name=base_tarball.name))
    chroot.sh(
        ["tar", "--numeric-owner", "--xattrs", "-C", str(dest), "-xpf", str(base_tarball)],
        progress=progress,
    )
    extra = [p for p in image.packages if p not in base.packages]
    if extra:
        with chroot.mounts(dest):
            chroot.apt_install(dest, image.suite, mirror, extra, progress)
    _customise(dest)


def ensure_tarball(
    name: str,
    *,
    mirror: str | None = None,
    progress: Progress = no_progress,
    rebuild: bool = False,
) -> Path:
    """The cached rootfs tarball of a catalog image, built first when missing."""
    image = lookup(name)
    target = tarball_path(name)
    if image.vm_disk:
        raise UsageError(
            _("`{name}` is an imported VM disk: it serves the vagrant backend").format(name=name),
            hint=_("run the scenario with --backend vagrant, or import a root file system"),
        )

    def build() -> None:
        if image.imported:  # nothing to build it from: its tarball was removed by hand
            raise UsageError(
                _("the imported image `{name}` has lost its tarball {target}").format(
                    name=name, target=target
                ),
                hint=_("import it again: guestlab image import {name} FILE").format(name=name),
            )
        url = choose_mirror(mirror)
        work = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=paths.images_dir()))
        try:
            root = work / "rootfs"
            root.mkdir()
            if image.base:
                base = lookup(image.base)
                tarball = ensure_tarball(base.name, mirror=url, progress=progress)
                derive_rootfs(image, base, tarball, root, url, progress)
            else:
                build_rootfs(image, root, url, progress)
            progress(_("packing the root filesystem"))
            partial = work / "rootfs.tar"
            chroot.sh(
                ["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-cf", str(partial), "."],
                progress=progress,
            )
            os.replace(partial, target)  # atomic: a crash never leaves half a tarball
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # the lock lives beside the tarball: $GUESTLAB_IMAGES is shared by state stores
    build_once(lock_path(name, paths.images_dir()), lambda: target.exists() and not rebuild, build)
    return target
