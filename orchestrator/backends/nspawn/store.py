"""Where the nspawn backend keeps root filesystems, and how it copies them.

On btrfs (the set-up script makes a pool: a sparse loop file mounted at
``/var/lib/guestlab/nspawn``) every base image is a read-only subvolume and every machine,
clone and snapshot a subvolume snapshot: a tenth of a second, whatever the tree's size, and
each machine's own writes are bounded by a qgroup limit. Elsewhere trees are copied with
``cp -a --reflink=auto`` and nothing bounds a machine's writes.

Several state stores may share one root (every test session has a GUESTLAB_HOME of its
own): base images are shared, machines live under ``machines/<store id>/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from orchestrator import paths
from orchestrator.backends import btrfs_quota
from orchestrator.backends.common import build_once, file_lock, lock_path
from orchestrator.backends.contract import Progress
from orchestrator.errors import ProvisioningError, UsageError
from orchestrator.images import rootfs as rootfs_images
from orchestrator.images.catalog import lookup
from orchestrator.messages import _

#: the pool the set-up script (scripts/setup/nspawn.sh) makes and mounts
POOL_DIR = Path("/var/lib/guestlab/nspawn")
POOL_FILE = Path("/var/lib/guestlab/nspawn.btrfs")
BTRFS_SUPER_MAGIC = 0x9123683E
TAR_X = ["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf"]
_SUBVOLUME_INODE = 256  # the root directory of every btrfs subvolume has this inode number


def store_root() -> Path:
    """$GUESTLAB_NSPAWN_ROOT, else the btrfs pool (mounted again after a reboot), else
    $GUESTLAB_HOME/nspawn."""
    explicit = os.environ.get("GUESTLAB_NSPAWN_ROOT")
    if explicit:
        return Path(explicit)
    if mount_point_fstype(POOL_DIR) == "btrfs":
        return POOL_DIR
    if POOL_FILE.is_file() and os.geteuid() == 0:
        POOL_DIR.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-o", "loop,noatime", str(POOL_FILE), str(POOL_DIR)],
            capture_output=True,
            check=False,
        )
        if done.returncode == 0:
            return POOL_DIR
    return paths.home() / "nspawn"


def mount_point_fstype(path: Path) -> str | None:
    """The file system type mounted exactly at `path`, None when nothing is."""
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
        target = str(path)
        found = None
        for line in f:
            pre, _, post = line.partition(" - ")
            fields = pre.split()
            if len(fields) > 4 and fields[4].replace("\\040", " ") == target:
                found = post.split()[0]  # the last mount at a point is the visible one
        return found
    return None


def is_btrfs(path: Path) -> bool:
    """Whether `path` (or its nearest existing parent) lives on btrfs."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    out = subprocess.run(
        ["stat", "-f", "-c", "%t", str(probe)], capture_output=True, text=True, check=False
    )
    return out.returncode == 0 and int(out.stdout.strip() or "0", 16) == BTRFS_SUPER_MAGIC


class Trees:
    """Root filesystems under one directory: btrfs subvolumes where it can, copies elsewhere."""

    def __init__(self, root: Path) -> None:
        self.root = paths.ensure(root)
        self.btrfs = is_btrfs(root)
        self._quota: bool | None = None

    @property
    def kind(self) -> str:
        return "btrfs snapshots" if self.btrfs else "copies"

    def new_base(self, path: Path) -> None:
        """An empty directory to extract a base image into (a subvolume on btrfs)."""
        if self.btrfs:
            run(["btrfs", "-q", "subvolume", "create", str(path)], what=f"creating {path}")
        else:
            path.mkdir()

    def seal(self, path: Path) -> None:
        """Make a base image or snapshot read-only (btrfs only: copies stay writable)."""
        if self.btrfs:
            run(["btrfs", "property", "set", "-ts", str(path), "ro", "true"], what="sealing")

    def copy(self, src: Path, dest: Path, *, readonly: bool = False) -> None:
        """`dest` as a copy of the tree `src`: a snapshot on btrfs, else `cp -a`."""
        if self.btrfs and is_subvolume(src):
            cmd = ["btrfs", "-q", "subvolume", "snapshot", *(["-r"] if readonly else [])]
            run([*cmd, str(src), str(dest)], what=f"snapshotting {src}")
            return
        work = dest.with_name(dest.name + ".partial")
        if work.exists():
            self.remove(work)
        run(["cp", "-a", "--reflink=auto", "--", str(src), str(work)], what=f"copying {src}")
        os.replace(work, dest)

    def remove(self, path: Path) -> None:
        """Remove a tree: subvolumes (with any a student made inside) or plain files."""
        if not path.exists() and not path.is_symlink():
            return
        if self.btrfs and is_subvolume(path):
            delete = ["btrfs", "-q", "subvolume", "delete", str(path)]
            if subprocess.run(delete, capture_output=True, check=False).returncode == 0:
                return
            for sub in nested_subvolumes(path):
                self.remove(sub)
            run(delete, what=f"deleting subvolume {path}")
            return
        remove_tree(path)

    def limit(self, path: Path, size: int) -> bool:
        """Bound what the subvolume `path` may hold beyond what it shares (its own writes)."""
        if not self.btrfs or not is_subvolume(path) or not self.quota():
            return False
        btrfs_quota.heal(self.root)  # limits of an inconsistent pool are not enforced
        done = subprocess.run(
            ["btrfs", "qgroup", "limit", "-e", str(size), str(path)],
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def quota(self) -> bool:
        """Whether qgroups are on in the root's file system (turned on when they are not)."""
        if self._quota is None:
            show = ["btrfs", "qgroup", "show", str(self.root)]
            ok = subprocess.run(show, capture_output=True, check=False).returncode == 0
            if not ok:
                enable = ["btrfs", "quota", "enable", str(self.root)]
                ok = subprocess.run(enable, capture_output=True, check=False).returncode == 0
            self._quota = ok
        return self._quota


def base_tree(trees: Trees, image: str, progress: Progress, *, build: bool) -> Path:
    """The extracted base tree of `image`, extracting (and building) it when missing."""
    lookup(image)  # unknown names fail here with the catalog listed
    images = paths.ensure(trees.root / "images")
    tree = images / image
    stamp = images / f"{image}.source.json"
    tarball = rootfs_images.tarball_path(image)

    def present() -> bool:  # a newer tarball than the tree's makes a new tree
        return tree.is_dir() and (not tarball.exists() or _tar_id(tarball) == read_json(stamp))

    def extract() -> None:
        nonlocal tarball
        if not tarball.exists():
            if not build:
                raise UsageError(
                    _("image `{image}` is not built for the nspawn backend").format(image=image),
                    hint=_("build it with `guestlab image build {image} --backend nspawn`").format(
                        image=image
                    ),
                )
            tarball = rootfs_images.ensure_tarball(image, progress=progress)
        progress(_("extracting {image} for systemd-nspawn").format(image=image))
        work = images / f".{image}.{uuid.uuid4().hex[:8]}"
        try:
            trees.new_base(work)
            run(
                [*TAR_X, str(tarball), "-C", str(work)],
                what=f"extracting {tarball.name}",
            )
            trees.seal(work)
            if tree.exists():  # a newer tarball replaces the old tree
                old = images / f".{image}.old"
                os.replace(tree, old)
                trees.remove(old)
            os.replace(work, tree)  # atomic: a crash never leaves half a tree
            write_json(stamp, _tar_id(tarball))
        finally:
            if work.exists():
                trees.remove(work)

    build_once(lock_path(image, images), present, extract)  # two guestlab processes extract once
    return tree


def _tar_id(tarball: Path) -> dict[str, int]:
    st = tarball.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def is_subvolume(path: Path) -> bool:
    """Whether `path` itself (not a link to it) is the root of a btrfs subvolume."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return st.st_ino == _SUBVOLUME_INODE and os.path.isdir(path) and not os.path.islink(path)


def nested_subvolumes(path: Path) -> list[Path]:
    """Subvolumes below `path` (not `path` itself), the outermost ones: a student may make
    one in a machine, and btrfs will not delete a subvolume that still holds another."""
    if not is_subvolume(path):
        return []
    found: list[Path] = []
    top = os.lstat(path).st_dev
    for dirpath, dirs, _files in os.walk(path):
        keep = []
        for d in dirs:
            full = Path(dirpath, d)
            with contextlib.suppress(OSError):
                st = os.lstat(full)
                if st.st_dev != top and st.st_ino == _SUBVOLUME_INODE:
                    found.append(full)
                    continue
                if st.st_dev == top:
                    keep.append(d)
        dirs[:] = keep
    return found


def _writers_into(path: Path) -> list[int]:
    """Copies still writing under `path`: a `cp` or `tar` whose guestlab was killed -9."""
    prefix = str(path)
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = entry.joinpath("cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        tool = Path(argv[0]).name if argv and argv[0] else ""
        if tool in ("cp", "tar") and any(a.startswith(prefix) for a in argv[1:]):
            found.append(int(entry.name))
    return found


def remove_base_tree(trees: Trees, image: str) -> bool:
    """Remove the extracted base tree of `image` (machines are snapshots: they keep theirs)."""
    images = trees.root / "images"
    tree = images / image
    with file_lock(lock_path(image, paths.ensure(images))):
        found = tree.exists()
        trees.remove(tree)
        (images / f"{image}.source.json").unlink(missing_ok=True)
    return found


def remove_tree(path: Path) -> None:
    """rm -rf that never crosses into another file system (say a bind mount left behind).

    An orphaned copy would go on filling the tree while rm empties it, so it is stopped
    first, and rm is tried again while the last of its writes land.
    """
    if not path.exists() and not path.is_symlink():
        return
    for pid in _writers_into(path):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    for attempt in range(5):
        try:
            run(["rm", "-rf", "--one-file-system", "--", str(path)], what=f"removing {path}")
            return
        except ProvisioningError:
            if attempt == 4:
                raise
            time.sleep(0.5)


def run(argv: list[str], *, what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False)
    if proc.returncode != 0:
        raise ProvisioningError(
            _("{what} failed (exit {returncode}): {stderr}").format(
                what=what, returncode=proc.returncode, stderr=proc.stderr.strip()
            )
        )


def read_json(path: Path) -> Any:
    """The JSON in a file, None when the file is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None


def write_json(path: Path, data: Any) -> None:
    """Write JSON to a file atomically (a temporary file, then a rename)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)  # a reader never sees half a file
