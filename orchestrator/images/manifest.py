"""What the binaries of an image hold: a manifest of file hashes, to tell a tampered machine.

Every container backend imports a catalog image from one cached root file system tarball
(`rootfs.tarball_path`), so the manifest is computed once from that tarball, streamed, and
kept beside it; an image built before manifests existed gets one on first use, with no
rebuild. A Vagrant box is its own tree (the tarball plus a kernel and packages): its
manifest is read from that tree (`from_tree`) when the box is built, or from its disk
(boxmanifest.py). A manifest maps each regular file under MANIFEST_DIRS (and the dynamic loader and
libc) to its SHA-256, and keeps the tree's symlinks so that `/bin/ls` (merged /usr) or an
alternatives link resolves to the file it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from orchestrator import paths
from orchestrator.backends.common import build_once, lock_path

MANIFEST_DIRS = (
    "/usr/bin",
    "/usr/sbin",
    "/bin",
    "/sbin",
    "/usr/lib/systemd",
    "/usr/local/bin",
    "/usr/local/sbin",
)
#: the dynamic loader and libc: every machine binary run goes through them
LIBRARY = re.compile(
    r"^/(usr/)?lib(64|32|x32)?(/[^/]+-linux-gnu[^/]*)?/(ld-linux[^/]*\.so[.0-9]*|libc\.so\.6)$"
)
VERSION = 1


@dataclass
class Manifest:
    """Hashes of an image's binaries and libraries, and its symlinks."""

    files: dict[str, str] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)

    def resolve(self, path: str, hops: int = 40) -> str:
        """`path` with every symlink of the image followed, as the image would resolve it."""
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        done = "/"
        while parts and hops > 0:
            here = posixpath.join(done, parts.pop(0))
            target = self.links.get(here)
            if target is None:
                done = here
                continue
            hops -= 1
            base = "/" if target.startswith("/") else done
            parts = [
                p for p in posixpath.normpath(posixpath.join(base, target)).split("/") if p
            ] + parts
            done = "/"
        return done

    def expected(self, path: str) -> str | None:
        """The hash the image has at `path` (symlinks followed), None when it has no file there."""
        return self.files.get(self.resolve(path))

    @property
    def libraries(self) -> list[str]:
        return sorted(p for p in self.files if LIBRARY.match(p))

    def to_json(self) -> str:
        return json.dumps({"version": VERSION, "files": self.files, "links": self.links})

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        if data.get("version") != VERSION:
            raise ValueError("manifest of another version")
        return cls(dict(data["files"]), dict(data["links"]))


def _member_path(name: str) -> str:
    return posixpath.normpath("/" + name.removeprefix("./").lstrip("/"))


def wanted(path: str) -> bool:
    return any(path.startswith(d + "/") for d in MANIFEST_DIRS) or bool(LIBRARY.match(path))


def from_tar(stream: IO[bytes]) -> Manifest:
    """The manifest of a root file system tarball, read once as a stream."""
    out = Manifest()
    with tarfile.open(fileobj=stream, mode="r|*") as tar:
        for member in tar:
            path = _member_path(member.name)
            if member.issym():
                out.links[path] = member.linkname
            elif member.islnk() and wanted(path):  # the content of a file seen before
                digest = out.files.get(_member_path(member.linkname))
                if digest:
                    out.files[path] = digest
            elif member.isreg() and wanted(path):
                f = tar.extractfile(member)
                if f is not None:
                    out.files[path] = sha256_of(f)
    return out


def from_tree(root: Path) -> Manifest:
    """The manifest of a root file system unpacked or mounted at `root`, read in place.

    Like `from_tar`: every symlink of the tree, the hash of every wanted regular file.
    File systems mounted below `root` (a chroot's /proc, /sys, /dev) are not entered.
    """
    out = Manifest()
    device = os.lstat(root).st_dev
    hashed: dict[tuple[int, int], str] = {}  # a hard link's content is hashed once
    folders = ["/"]
    while folders:
        folder = folders.pop()
        with os.scandir(root / folder.lstrip("/")) as entries:
            for entry in entries:
                path = posixpath.join(folder, entry.name)
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    out.links[path] = os.readlink(entry.path)
                elif stat.S_ISDIR(st.st_mode) and st.st_dev == device:
                    folders.append(path)
                elif stat.S_ISREG(st.st_mode) and wanted(path):
                    key = (st.st_dev, st.st_ino)
                    if key not in hashed:
                        with open(entry.path, "rb") as f:
                            hashed[key] = sha256_of(f)
                    out.files[path] = hashed[key]
    return sorted_manifest(out)


def sorted_manifest(manifest: Manifest) -> Manifest:
    """The same manifest with its entries in path order: one tree, one file, whatever the
    order it was read in."""
    return Manifest(dict(sorted(manifest.files.items())), dict(sorted(manifest.links.items())))


def save(manifest: Manifest, path: Path) -> None:
    """Write `manifest` to `path` whole: a reader sees no file or all of it."""
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        partial.write_text(manifest.to_json())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def from_files(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`sha256sum` lines' (hash, path) pairs as a dict path -> hash."""
    return {path: digest for digest, path in entries}


def sha256_of(f: IO[bytes]) -> str:
    """The SHA-256 of what is left to read in `f`, in hex."""
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def source_id(source: Path) -> str:
    """What tells one build of a cached file from the next (a rename keeps it)."""
    st = source.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def for_image(image: str) -> Manifest | None:
    """The manifest of a catalog image, computed from its cached tarball once; None when this
    host keeps no tarball of it (nothing to compare with)."""
    from orchestrator.images.rootfs import tarball_path

    tarball = tarball_path(image)
    if not tarball.exists():
        return None
    cache = paths.images_dir() / f"{image}.manifest.{source_id(tarball)}.json"

    def make() -> None:
        with tarball.open("rb") as f:
            save(from_tar(f), cache)

    build_once(lock_path(f"{image}.manifest", paths.images_dir()), cache.exists, make)
    return Manifest.from_json(cache.read_text())
