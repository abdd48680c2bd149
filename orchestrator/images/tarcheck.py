"""Checking a root file system tarball someone hands us before any engine sees it.

Read as a stream, never extracted on the host: every member's name and link must stay
inside the tree, device nodes only under /dev, and the tree must hold an init system, an
os-release and binaries of this host's architecture. What a check finds is one sentence.
"""

from __future__ import annotations

import platform
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from orchestrator.errors import UsageError
from orchestrator.messages import _

#: more than this many bytes of files is not a lab machine's root file system
MAX_TOTAL = 16 * 1024**3
INITS = ("usr/lib/systemd/systemd", "lib/systemd/systemd", "sbin/init", "usr/sbin/init")
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")
#: ELF e_machine values of the architectures guestlab runs on
ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


class ImageRefused(UsageError):
    """The file is not a root file system guestlab will hand to an engine."""


@dataclass(frozen=True)
class RootfsFacts:
    os_id: str
    os_version: str
    pretty: str
    arch: str
    init: str  # "systemd" or "none"
    size: int  # bytes of file content


def _inside(name: str) -> str | None:
    """`name` normalised relative to the root, or None when it leaves it."""
    if name.startswith("/"):
        return None
    norm = posixpath.normpath(name)
    if norm == ".." or norm.startswith("../"):
        return None
    return "" if norm == "." else norm


def check_member(m: tarfile.TarInfo) -> str:
    rel = _inside(m.name)
    if rel is None:
        raise ImageRefused(
            _("the archive's member {name} lies outside the root").format(name=repr(m.name))
        )
    if (m.ischr() or m.isblk()) and not rel.startswith("dev/"):
        raise ImageRefused(
            _("the archive has a device node outside /dev: {name}").format(name=repr(m.name))
        )
    if m.islnk() and _inside(m.linkname) is None:
        raise ImageRefused(
            _("the hard link {name} points outside the root").format(name=repr(m.name))
        )
    if m.issym() and not m.linkname.startswith("/"):
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), m.linkname))
        if target == ".." or target.startswith("../"):
            raise ImageRefused(
                _("the symbolic link {name} escapes the root").format(name=repr(m.name))
            )
    return rel


def _members(tar: tarfile.TarFile) -> Iterator[tuple[str, tarfile.TarInfo]]:
    try:
        for m in tar:
            yield check_member(m), m
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ImageRefused(
            _("the archive is truncated or corrupt ({error})").format(error=e)
        ) from None


def _follow(index: dict[str, tarfile.TarInfo], rel: str) -> tarfile.TarInfo | None:
    """The regular file `rel` names inside the archive, through at most 10 symlinks."""
    for _try in range(10):
        m = index.get(rel)
        if m is None or not m.issym():
            return m if m is not None and m.isreg() else None
        base = "" if m.linkname.startswith("/") else posixpath.dirname(rel)
        rel = posixpath.normpath(posixpath.join(base, m.linkname.lstrip("/")))
    return None


def os_fields(text: bytes) -> dict[str, str]:
    """The KEY=value lines of an os-release file."""
    fields = {}
    for line in text.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("\"'")
    return fields


def _os_release(read: dict[str, bytes]) -> dict[str, str]:
    for rel in OS_RELEASE:
        if rel in read:
            return os_fields(read[rel])
    raise ImageRefused(_("the tree has no /etc/os-release: not a distribution's root file system"))


def elf_arch(elf: bytes) -> str:
    """The architecture an ELF header names."""
    if elf[:4] != b"\x7fELF" or len(elf) < 20:
        raise ImageRefused(_("/bin/sh in the tree is not an ELF binary"))
    little = elf[5] == 1
    machine = int.from_bytes(elf[18:20], "little" if little else "big")
    return ELF_MACHINES.get(machine, f"elf machine {machine}")


def inspect_rootfs(path: Path) -> RootfsFacts:
    """Check the tarball at `path` (.tar, .tar.gz, .tar.xz) and say what it holds."""
    wanted = {*OS_RELEASE, "bin/sh", "usr/bin/sh", *INITS}
    index, total = _index(path)
    found = {rel: _follow(index, rel) for rel in wanted}
    read = _read(path, {rel: m for rel, m in found.items() if m is not None})
    fields = _os_release(read)
    shell = read.get("bin/sh") or read.get("usr/bin/sh")
    if shell is None:
        raise ImageRefused(_("the tree has no /bin/sh, which every check and setup step runs"))
    arch = elf_arch(shell)
    if arch != platform.machine():
        raise ImageRefused(
            _("the tree's binaries are {arch}; this host runs {machine}").format(
                arch=arch, machine=platform.machine()
            )
        )
    systemd = any(found[r] is not None for r in INITS[:2])
    return facts_of(fields, arch, systemd=systemd, size=total)


def facts_of(fields: dict[str, str], arch: str, *, systemd: bool, size: int) -> RootfsFacts:
    """What guestlab records of a tree from its os-release fields and what it found."""
    return RootfsFacts(
        os_id=fields.get("ID", "unknown"),
        os_version=fields.get("VERSION_ID", ""),
        pretty=fields.get("PRETTY_NAME", fields.get("ID", "unknown")),
        arch=arch,
        init="systemd" if systemd else "none",
        size=size,
    )


def _index(path: Path) -> tuple[dict[str, tarfile.TarInfo], int]:
    """Every member by its path in the tree, checked, and the bytes of file content."""
    total = 0
    index: dict[str, tarfile.TarInfo] = {}
    try:
        with tarfile.open(path, mode="r:*") as tar:
            for rel, m in _members(tar):
                total += m.size if m.isreg() else 0
                if total > MAX_TOTAL:
                    raise ImageRefused(
                        _("the tree holds more than {gib} GiB of files").format(gib=MAX_TOTAL >> 30)
                    )
                index[rel] = m
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ImageRefused(
            _("{name} is not a readable tar archive ({error})").format(name=path.name, error=e)
        ) from None
    return index, total


def _read(path: Path, wanted: dict[str, tarfile.TarInfo]) -> dict[str, bytes]:
    """The first 64 KiB of each wanted member, in a second pass over the stream."""
    names = {m.name: rel for rel, m in wanted.items()}
    out: dict[str, bytes] = {}
    with tarfile.open(path, mode="r:*") as tar:
        for m in tar:
            if m.name in names:
                f: IO[bytes] | None = tar.extractfile(m)
                out[names[m.name]] = f.read(64 * 1024) if f else b""
    # a symlinked name reads as its target's content
    return {rel: out[names[m.name]] for rel, m in wanted.items() if m.name in names}
