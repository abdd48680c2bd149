"""Images an instructor brings: a root file system tarball, checked, kept beside the built
ones, and recorded so that scenarios name it like a catalog image.

The record lives in the image store ($GUESTLAB_IMAGES), next to the tarballs, so every
state store that shares the images sees the same catalog. An imported rootfs serves the
container backends (docker, lxd, nspawn): each engine takes it from the tarball the first
time a lab asks, exactly as it takes a built image.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator import paths
from orchestrator.backends.common import file_lock, lock_path
from orchestrator.backends.contract import Progress, no_progress
from orchestrator.errors import UsageError
from orchestrator.images.catalog import ImageDef
from orchestrator.images.tarcheck import RootfsFacts, check_member, inspect_rootfs

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RECORD = "imported.json"


@dataclass(frozen=True)
class Imported:
    name: str
    kind: str  # "rootfs"
    source: str  # the file it came from
    imported: float
    facts: RootfsFacts

    def definition(self) -> ImageDef:
        """The image as scenarios and engines see it: no recipe, its tarball only."""
        facts = self.facts
        return ImageDef(
            name=self.name,
            description=f"{facts.pretty} ({facts.arch}, imported from {Path(self.source).name})",
            suite=facts.os_version,
            packages=(),
            os_id=facts.os_id,
            imported=True,
        )


def _record_path() -> Path:
    return paths.images_dir() / RECORD


def imported() -> dict[str, Imported]:
    """Every imported image, by name."""
    try:
        data = json.loads(_record_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UsageError(f"the image record {_record_path()} cannot be read ({e})") from None
    return {
        name: Imported(name, d["kind"], d["source"], d["imported"], RootfsFacts(**d["facts"]))
        for name, d in data.items()
    }


def _write(records: dict[str, Imported]) -> None:
    path = _record_path()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({n: asdict(r) for n, r in sorted(records.items())}, indent=2))
    os.replace(tmp, path)  # a reader sees the old record or the new one, never half


def import_rootfs(name: str, source: Path, progress: Progress = no_progress) -> Imported:
    """Check `source`, keep it as NAME's plain tarball, and record it."""
    from orchestrator.images.catalog import CATALOG
    from orchestrator.images.rootfs import tarball_path

    if not NAME.match(name) or len(name) > 40:
        raise UsageError(f"`{name}` is not an image name", hint="e.g. rocky-9 or my-debian-11")
    if name in CATALOG:
        raise UsageError(f"`{name}` is a catalog image", hint="import under another name")
    if not source.is_file():
        raise UsageError(f"no such file: {source}")
    progress(f"checking {source.name}")
    facts = inspect_rootfs(source)
    progress(f"{facts.pretty} ({facts.arch}, init {facts.init}): keeping it as {name}")
    target = tarball_path(name)
    with file_lock(lock_path(name, paths.images_dir())):
        partial = target.with_suffix(f".{os.getpid()}.partial")
        try:
            _repack(source, partial)
            os.replace(partial, target)  # engines compare the tarball: a new one replaces
        finally:
            partial.unlink(missing_ok=True)
        with file_lock(lock_path("imported-record", paths.images_dir())):
            records = imported()
            records[name] = Imported(name, "rootfs", str(source.resolve()), time.time(), facts)
            _write(records)
    return records[name]


def _repack(source: Path, dest: Path) -> None:
    """The checked members of `source` as a plain tar: engines read it without a codec."""
    with tarfile.open(source, mode="r:*") as src, tarfile.open(dest, mode="w") as out:
        for member in src:
            check_member(member)  # the stream is read again: check what is written
            out.addfile(member, src.extractfile(member) if member.isreg() else None)


def forget(name: str) -> bool:
    """Remove an imported image's tarball and record; False when it was not imported."""
    from orchestrator.images.rootfs import tarball_path

    with file_lock(lock_path("imported-record", paths.images_dir())):
        records = imported()
        if records.pop(name, None) is None:
            return False
        tarball_path(name).unlink(missing_ok=True)
        _write(records)
    return True
