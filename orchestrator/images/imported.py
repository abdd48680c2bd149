"""Images an instructor brings, checked, kept beside the built ones, and recorded so that
scenarios name them like catalog images.

A root file system tarball serves the container backends (docker, lxd, nspawn): each
engine takes it from the kept tarball the first time a lab asks, as it takes a built
image. A Vagrant box (libvirt) or a bare qcow2 disk becomes a box file that the vagrant
backend adds under guestlab's name for it. The record lives in the image store
($GUESTLAB_IMAGES), so every state store that shares the images sees the same catalog.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from orchestrator import paths
from orchestrator.backends.common import file_lock, lock_path
from orchestrator.backends.contract import Progress, no_progress
from orchestrator.errors import UsageError
from orchestrator.images.catalog import ImageDef
from orchestrator.images.tarcheck import ImageRefused, RootfsFacts, check_member, inspect_rootfs
from orchestrator.messages import _

NAME = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
RECORD = "imported.json"


@dataclass(frozen=True)
class Imported:
    name: str
    kind: str  # "rootfs" (serves docker, lxd, nspawn) or "box" (a VM disk: vagrant)
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
            vm_disk=self.kind == "box",
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
        raise UsageError(
            _("the image record {record} cannot be read ({error})").format(
                record=_record_path(), error=e
            )
        ) from None
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
    from orchestrator.images.rootfs import tarball_path

    _check_name(name, source)
    progress(_("checking {name}").format(name=source.name))
    facts = inspect_rootfs(source)
    progress(
        _("{pretty} ({arch}, init {init}): keeping it as {name}").format(
            pretty=facts.pretty, arch=facts.arch, init=facts.init, name=name
        )
    )
    target = tarball_path(name)
    with file_lock(lock_path(name, paths.images_dir())):
        partial = target.with_suffix(f".{os.getpid()}.partial")
        try:
            _repack(source, partial)
            os.replace(partial, target)  # engines compare the tarball: a new one replaces
        finally:
            partial.unlink(missing_ok=True)
        return _record(name, "rootfs", source, facts)


def _check_name(name: str, source: Path) -> None:
    from orchestrator.images.catalog import CATALOG

    if not NAME.match(name) or len(name) > 40:
        raise UsageError(
            _("`{name}` is not an image name").format(name=name),
            hint=_("e.g. rocky-9 or my-debian-11"),
        )
    if name in CATALOG:
        raise UsageError(
            _("`{name}` is a catalog image").format(name=name), hint=_("import under another name")
        )
    if not source.is_file():
        raise UsageError(_("no such file: {source}").format(source=source))


def _record(name: str, kind: str, source: Path, facts: RootfsFacts) -> Imported:
    with file_lock(lock_path("imported-record", paths.images_dir())):
        records = imported()
        records[name] = Imported(name, kind, str(source.resolve()), time.time(), facts)
        _write(records)
    return records[name]


def kind_of(source: Path) -> str:
    """ "qcow2", "box" (a tar holding metadata.json and box.img) or "rootfs", by content."""
    with open(source, "rb") as f:
        if f.read(4) == b"QFI\xfb":
            return "qcow2"
    try:
        with tarfile.open(source, mode="r:*") as tar:
            for n, member in enumerate(tar):
                if member.name.lstrip("./") in ("metadata.json", "box.img"):
                    return "box"
                if n > 8:  # a box holds a handful of members; a root file system, thousands
                    break
    except (tarfile.TarError, OSError, EOFError):
        return "rootfs"  # inspect_rootfs says what is wrong with it
    return "rootfs"


def import_disk(name: str, source: Path, progress: Progress = no_progress) -> Imported:
    """Check a Vagrant .box (libvirt) or a qcow2 disk and keep it as NAME's box file."""
    from orchestrator.images.box import box_path
    from orchestrator.images.diskcheck import inspect_disk

    _check_name(name, source)
    with tempfile.TemporaryDirectory(dir=paths.images_dir(), prefix=f".{name}.") as work:
        disk = Path(work) / "box.img"
        progress(_("checking the disk of {name}").format(name=source.name))
        if kind_of(source) == "box":
            _unpack_box(source, disk)
            facts = inspect_disk(disk, f"the disk in {source.name}")
        else:
            facts = inspect_disk(source)  # before copying: a refused file costs nothing
            shutil.copyfile(source, disk)
        progress(
            _("{pretty} ({arch}, init {init}): keeping it as {name}").format(
                pretty=facts.pretty, arch=facts.arch, init=facts.init, name=name
            )
        )
        info = json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", str(disk)], capture_output=True, check=True
            ).stdout
        )
        meta = {"provider": "libvirt", "format": "qcow2",
                "virtual_size": -(-int(info["virtual-size"]) // 1024**3)}  # fmt: skip
        (Path(work) / "metadata.json").write_text(json.dumps(meta) + "\n")
        partial = Path(work) / "box.tar"
        with tarfile.open(partial, "w") as tar:
            tar.add(Path(work) / "metadata.json", "metadata.json")
            tar.add(disk, "box.img")
        with file_lock(lock_path(name, paths.images_dir())):
            os.replace(partial, box_path(name))
            return _record(name, "box", source, facts)


def _unpack_box(source: Path, disk: Path) -> None:
    """box.img of a libvirt box, after its metadata says it is one."""
    with tarfile.open(source, mode="r:*") as tar:
        found = {}
        for member in tar:
            check_member(member)
            rel = member.name.lstrip("./")
            if rel in ("metadata.json", "box.img") and member.isreg():
                found[rel] = member
                if rel == "metadata.json":
                    f = tar.extractfile(member)
                    meta = json.loads(f.read(64 * 1024) if f else b"{}")
                    if meta.get("provider") != "libvirt":
                        raise ImageRefused(
                            _("{name} is a box for {provider}, not libvirt").format(
                                name=source.name, provider=meta.get("provider")
                            )
                        )
                else:
                    f = tar.extractfile(member)
                    with open(disk, "wb") as out:
                        shutil.copyfileobj(f, out)  # type: ignore[arg-type]
        if set(found) != {"metadata.json", "box.img"}:
            raise ImageRefused(
                _("{name} is not a libvirt box (metadata.json and box.img)").format(
                    name=source.name
                )
            )


def _repack(source: Path, dest: Path) -> None:
    """The checked members of `source` as a plain tar: engines read it without a codec."""
    with tarfile.open(source, mode="r:*") as src, tarfile.open(dest, mode="w") as out:
        for member in src:
            check_member(member)  # the stream is read again: check what is written
            out.addfile(member, src.extractfile(member) if member.isreg() else None)


def forget(name: str) -> bool:
    """Remove an imported image's file and record; False when it was not imported."""
    from orchestrator.images import boxmanifest
    from orchestrator.images.box import box_path
    from orchestrator.images.rootfs import tarball_path

    with file_lock(lock_path("imported-record", paths.images_dir())):
        records = imported()
        if records.pop(name, None) is None:
            return False
        tarball_path(name).unlink(missing_ok=True)
        box_path(name).unlink(missing_ok=True)
        boxmanifest.forget(box_path(name))  # a box imported again gets a manifest of its own
        _write(records)
    return True
