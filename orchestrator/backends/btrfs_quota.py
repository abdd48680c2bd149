"""btrfs quota groups that the kernel stopped enforcing, found and rescanned.

Deleting a subvolume whose qgroup still counts bytes marks every qgroup of the file
system inconsistent (kernel 6.x), and the kernel then stops enforcing their limits: a
machine's disk bound would hold only until the first `down`. The Docker and nspawn
backends heal their pool before they bound a new machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

from orchestrator import paths


def heal(path: Path, lock: Callable[[str], AbstractContextManager[object]] | None = None) -> bool:
    """Rescan the qgroups of the btrfs file system holding `path` if the kernel marked them
    inconsistent; whether it did. `lock(uuid)` is held during the rescan (default: a file
    lock per file system); an engine whose deletions must not meet a rescan passes its own."""
    if shutil.which("btrfs") is None or not path.exists():
        return False
    uuid = subprocess.run(
        ["findmnt", "-no", "UUID", "--target", str(path)],
        capture_output=True, text=True, check=False,
    ).stdout.strip()  # fmt: skip
    flag = Path("/sys/fs/btrfs", uuid, "qgroups", "inconsistent")
    if not uuid or not _set(flag):
        return False
    with (lock or _file_lock)(uuid):
        if not _set(flag):
            return False  # another guestlab rescanned meanwhile
        subprocess.run(
            ["btrfs", "quota", "rescan", "-w", str(path)],
            capture_output=True, timeout=600, check=False,
        )  # fmt: skip
    return True


@contextlib.contextmanager
def _file_lock(uuid: str) -> Iterator[None]:
    with open(paths.locks_dir() / f"btrfs-quota-{uuid}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _set(flag: Path) -> bool:
    try:
        return flag.read_text().strip() == "1"
    except OSError:
        return False
