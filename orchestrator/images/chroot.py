"""Commands in an image's tree as root of a chroot: the mounts package scripts need and
apt, shared by the box (a VM's disk) and the images derived from a base image's tree."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from orchestrator.backends.contract import Progress
from orchestrator.errors import ProvisioningError, UsageError
from orchestrator.images import chrootdev
from orchestrator.messages import _

#: the host's tools the image builds run, and the Debian package of each
TOOLS = {
    "qemu-img": "qemu-utils",
    "sfdisk": "fdisk",
    "losetup": "mount",
    "partx": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "extlinux": "extlinux",
    "tar": "tar",
}


def sh(
    argv: Sequence[str],
    *,
    input: bytes | None = None,
    env: dict[str, str] | None = None,
    progress: Progress | None = None,
) -> str:
    """Run a command, returning its output; a failure raises with the end of it. With
    `progress`, its lines are read as they come and debootstrap's and apt's own status
    lines (`I: `, `W: `, `E: `) are passed on."""
    try:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError:
        package = TOOLS.get(argv[0], argv[0])
        raise UsageError(
            _("`{argv}` is not installed").format(argv=argv[0]),
            hint=_("install it (Debian: apt-get install -y {argv})").format(argv=package),
        ) from None
    if progress is None:
        raw, _err = proc.communicate(input)
        lines = raw.decode("utf-8", "replace").splitlines(keepends=True)
    else:
        assert proc.stdout is not None and input is None  # nothing to write while reading
        lines = []
        for line in proc.stdout:
            text = line.decode("utf-8", "replace")
            lines.append(text)
            if text.startswith(("I: ", "W: ", "E: ")):
                progress(text[3:].rstrip())
    if proc.wait() != 0:
        tail = "".join(lines[-12:]).strip()
        raise ProvisioningError(
            _("`{command}` failed (exit {returncode}):\n{detail}").format(
                command=" ".join(argv[:3]), returncode=proc.returncode, detail=tail
            )
        )
    return "".join(lines)


def run(root: Path, *argv: str) -> str:
    """`argv` in the tree at `root`, as its root, with a plain environment."""
    env = {
        "DEBIAN_FRONTEND": "noninteractive",
        "LC_ALL": "C.UTF-8",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
    }
    return sh(["chroot", str(root), *argv], env=env)


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


@contextlib.contextmanager
def mounts(root: Path) -> Iterator[None]:
    """/proc, /sys and a /dev of the chroot's own for package scripts (the kernel's above
    all); never the host's /dev, which their scripts would change (chrootdev.py)."""
    done: list[Path] = []
    try:
        for src, sub, args in (
            ("proc", "proc", ["-t", "proc"]),
            ("sysfs", "sys", ["-t", "sysfs"]),
            ("tmpfs", "dev", ["-t", "tmpfs", "-o", "mode=755,nosuid"]),
        ):
            target = root / sub
            target.mkdir(exist_ok=True)
            sh(["mount", *args, src, str(target)])
            done.append(target)
        chrootdev.populate(root / "dev")
        yield
    finally:
        for target in reversed(done):
            subprocess.run(["umount", "-l", str(target)], check=False, capture_output=True)


def apt_install(
    root: Path, suite: str, mirror: str, packages: Sequence[str], progress: Progress
) -> None:
    """Install `packages` (no recommends, as debootstrap does) from `mirror` into the tree,
    inside `mounts`; the tree keeps no package lists or downloads, and its own resolv.conf."""
    # package scripts must not start daemons in the build host's namespace
    write(root / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    resolv = root / "etc/resolv.conf"
    kept = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
    link = os.readlink(resolv) if resolv.is_symlink() else None
    resolv.unlink(missing_ok=True)
    if os.path.exists("/etc/resolv.conf"):
        shutil.copyfile("/etc/resolv.conf", resolv)  # the mirror's name must resolve
    write(root / "etc/apt/sources.list", f"deb {mirror} {suite} main\n")
    try:
        progress(_("apt-get update in the image's chroot"))
        run(root, "apt-get", "update", "-q")
        progress(_("installing {packages}").format(packages=", ".join(packages)))
        run(root, "apt-get", "install", "-y", "-q", "--no-install-recommends", *packages)
        run(root, "apt-get", "clean")
    finally:
        for entry in (root / "var/lib/apt/lists").glob("*"):
            if entry.is_file():
                entry.unlink()
        (root / "usr/sbin/policy-rc.d").unlink(missing_ok=True)
        resolv.unlink(missing_ok=True)
        if link is not None:
            resolv.symlink_to(link)
        elif kept is not None:
            resolv.write_bytes(kept)
