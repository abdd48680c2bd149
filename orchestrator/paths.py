"""Where guestlab keeps its files on the host."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def home() -> Path:
    """$GUESTLAB_HOME, else the XDG state directory."""
    explicit = os.environ.get("GUESTLAB_HOME")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "guestlab"


def store_id() -> str:
    """Short id of this state store; resources carry it so `gc` never touches another's."""
    return hashlib.sha256(str(home().resolve()).encode()).hexdigest()[:12]


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def images_dir() -> Path:
    """$GUESTLAB_IMAGES, else <home>/images: tests share the built images this way."""
    explicit = os.environ.get("GUESTLAB_IMAGES")
    return ensure(Path(explicit) if explicit else home() / "images")


def locks_dir() -> Path:
    return ensure(home() / "locks")


def host_locks_dir() -> Path:
    """Locks for what every guestlab on this host shares, whatever its GUESTLAB_HOME:
    the firewall, libvirt's networks, Vagrant's boxes, LXD, a btrfs filesystem's quotas."""
    for base in (Path("/run/lock"), Path(tempfile.gettempdir())):
        if base.is_dir() and os.access(base, os.W_OK):
            return base
    return locks_dir()


def labs_dir() -> Path:
    return ensure(home() / "labs")
