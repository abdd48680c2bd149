"""A /dev of its own for a box's chroot: the few nodes package scripts use, none of the host's.

The box's packages are installed in a chroot whose scripts run as root. With the host's
/dev bound in, systemd's postinst applied the box's `static-nodes-permissions` to the
host's /dev/kvm: it chgrp'ed it to the box's kvm gid (104, the host's `input`), and from
then on every libvirt call re-probed QEMU (about 4 s each) and a VM lab's `up` took 150 s
instead of 40 (measured here). A tmpfs with its own device nodes gives the scripts what
they need and nothing they can change on the host.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

#: (name, major, minor, mode): the character devices of a minimal /dev
NODES = (
    ("null", 1, 3, 0o666),
    ("zero", 1, 5, 0o666),
    ("full", 1, 7, 0o666),
    ("random", 1, 8, 0o666),
    ("urandom", 1, 9, 0o666),
    ("tty", 5, 0, 0o666),
)
LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)


def populate(dev: Path) -> None:
    """Make the minimal device nodes and links in `dev` (a fresh tmpfs)."""
    for name, major, minor, mode in NODES:
        path = dev / name
        os.mknod(path, stat.S_IFCHR | mode, os.makedev(major, minor))
        os.chmod(path, mode)  # mknod's mode passes through the umask
    for name, target in LINKS:
        os.symlink(target, dev / name)
    for sub in ("pts", "shm"):
        (dev / sub).mkdir(exist_ok=True)
