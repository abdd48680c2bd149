"""btrfs quotas for the pools that bound each machine's writes.

The pools use *simple quotas* where the kernel has them (6.7 and later): each extent is
charged to the subvolume that wrote it, which is exactly "what a machine writes". Full
qgroup accounting instead walks the back-references of every shared extent at each
transaction: on Docker's pool, with a few images and their layers, one `docker commit`
took 10 s against 0.7 s with simple quotas (measured here). It also marks every qgroup
inconsistent when a subvolume is deleted, and the kernel then stops enforcing limits; where
simple quotas are missing, `heal` rescans such a pool before a machine is bounded.
A dockerd that starts again turns Docker's pool back to full accounting (seen on
2026-12-02); `guestlab doctor` says so, and the set-up script turns simple quotas on again.

`python3 -m orchestrator.backends.btrfs_quota simple PATH` (the set-up scripts) turns
simple quotas on for the file system holding PATH and prints the quota mode in force;
`... mode PATH` only prints it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from uuid import UUID

from orchestrator import paths

# _IOWR(0x94, 40, struct btrfs_ioctl_quota_ctl_args { __u64 cmd, status; })
_QUOTA_CTL = 0xC0109428
_CTL_DISABLE, _CTL_ENABLE_SIMPLE = 2, 4
#: BTRFS_IOC_FS_INFO: _IOR(0x94, 31, struct btrfs_ioctl_fs_info_args), 1024 bytes; fsid at 16
_FS_INFO, _FS_INFO_SIZE = 0x8400941F, 1024
_SIMPLE_FEATURE = Path("/sys/fs/btrfs/features/simple_quota")


def mode(path: Path) -> str | None:
    """The quota mode of the btrfs file system holding `path` (`squota`, `qgroup`), or
    None when quotas are off or it is not btrfs."""
    try:
        return (_sysfs(path) / "qgroups" / "mode").read_text().strip() or None
    except OSError:
        return None


def simple_available() -> bool:
    """Whether this kernel has simple quotas (6.7 and later)."""
    return _SIMPLE_FEATURE.exists()


def use_simple_quotas(path: Path) -> str:
    """Turn on simple quotas for the file system holding `path` (replacing full qgroup
    accounting and the limits it held); the mode now in force. A kernel without simple
    quotas gets full accounting instead."""
    current = mode(path)
    if current == "squota":
        return current
    if not simple_available():
        if current is None:
            subprocess.run(["btrfs", "quota", "enable", str(path)], check=True)
        return mode(path) or "off"
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if current is not None:
            fcntl.ioctl(fd, _QUOTA_CTL, bytearray(struct.pack("QQ", _CTL_DISABLE, 0)))
        fcntl.ioctl(fd, _QUOTA_CTL, bytearray(struct.pack("QQ", _CTL_ENABLE_SIMPLE, 0)))
    finally:
        os.close(fd)
    return mode(path) or "off"


def _sysfs(path: Path) -> Path:
    """/sys/fs/btrfs/<fsid> of the file system holding `path`: one ioctl, not a findmnt
    (this runs on every machine an engine makes)."""
    args = bytearray(_FS_INFO_SIZE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise OSError(f"no btrfs file system holds {path}: {e.strerror}") from None
    try:
        fcntl.ioctl(fd, _FS_INFO, args)
    except OSError:
        raise OSError(f"no btrfs file system holds {path}") from None
    finally:
        os.close(fd)
    return Path("/sys/fs/btrfs", str(UUID(bytes=bytes(args[16:32]))))


def heal(path: Path, lock: Callable[[str], AbstractContextManager[object]] | None = None) -> bool:
    """Rescan the qgroups of the btrfs file system holding `path` if the kernel marked them
    inconsistent; whether it did. `lock(uuid)` is held during the rescan (default: a file
    lock per file system); an engine whose deletions must not meet a rescan passes its own."""
    if shutil.which("btrfs") is None or not path.exists():
        return False
    try:
        fs = _sysfs(path)
    except OSError:
        return False
    uuid, flag = fs.name, fs / "qgroups" / "inconsistent"
    if not _set(flag):
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
    with open(paths.host_locks_dir() / f"guestlab-btrfs-quota-{uuid}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def _set(flag: Path) -> bool:
    try:
        return flag.read_text().strip() == "1"
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """`simple PATH`: turn simple quotas on, print the mode in force; `mode PATH`: print it
    (`off` when quotas are off)."""
    if len(argv) != 2 or argv[0] not in ("simple", "mode"):
        print(
            "usage: python3 -m orchestrator.backends.btrfs_quota simple|mode PATH",
            file=sys.stderr,
        )
        return 2
    path = Path(argv[1])
    print(use_simple_quotas(path) if argv[0] == "simple" else mode(path) or "off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
