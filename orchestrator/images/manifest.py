"""What the binaries of an image hold: a manifest of file hashes, to tell a tampered machine.

Every container backend imports a catalog image from one cached root file system tarball
(`rootfs.tarball_path`), so the manifest is computed once from that tarball, streamed, and
kept beside it; an image built before manifests existed gets one on first use, with no
rebuild. A manifest maps each regular file under MANIFEST_DIRS (and the dynamic loader and
libc) to its SHA-256, and keeps the tree's symlinks so that `/bin/ls` (merged /usr) or an
alternatives link resolves to the file it runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
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
                    out.files[path] = _sha256(f)
    return out


def from_files(entries: Iterable[tuple[str, str]]) -> dict[str, str]:
    """`sha256sum` lines' (hash, path) pairs as a dict path -> hash."""
    return {path: digest for digest, path in entries}


def _sha256(f: IO[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
    return h.hexdigest()


def _source_id(tarball: Path) -> str:
    st = tarball.stat()
    return f"{st.st_size}-{st.st_mtime_ns}"


def for_image(image: str) -> Manifest | None:
    """The manifest of a catalog image, computed from its cached tarball once; None when this
    host keeps no tarball of it (nothing to compare with)."""
    from orchestrator.images.rootfs import tarball_path

    tarball = tarball_path(image)
    if not tarball.exists():
        return None
    cache = paths.images_dir() / f"{image}.manifest.{_source_id(tarball)}.json"

    def make() -> None:
        with tarball.open("rb") as f:
            manifest = from_tar(f)
        partial = cache.with_suffix(".partial")
        partial.write_text(manifest.to_json())
        os.replace(partial, cache)

    build_once(lock_path(f"{image}.manifest", paths.images_dir()), cache.exists, make)
    return Manifest.from_json(cache.read_text())
