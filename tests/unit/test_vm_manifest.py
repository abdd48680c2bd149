"""Manifests of VM boxes: read from a tree, from a disk (debugfs), kept beside the box file,
and the one a check of a VM compares with. The real VM is tests/integration/test_cheats_vm.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.backends.contract import ExecResult, LabRef
from orchestrator.backends.vagrant import VagrantBackend
from orchestrator.backends.vagrant.preflight import Preflight
from orchestrator.checks import trusted
from orchestrator.checks.form import Probe, Tampered, sh
from orchestrator.images import boxmanifest, disktree
from orchestrator.images.box import box_path
from orchestrator.images.manifest import Manifest, from_tar, from_tree
from orchestrator.images.rootfs import tarball_path

IMAGE = "debian-12-systemd"
LAB = LabRef("vm-manifest", "ann")
PART_OFFSET = 1024**2
needs_e2fs = pytest.mark.skipif(
    not (shutil.which("mkfs.ext4") and shutil.which("debugfs")), reason="needs e2fsprogs"
)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A root tree with merged /usr, an alternatives chain, a hard link, a long symlink,
    a FIFO where a binary would be, and files no manifest wants."""
    root = tmp_path / "tree"
    for folder in ("usr/bin", "usr/lib/systemd/system", "usr/lib/x86_64-linux-gnu", "etc/alt"):
        (root / folder).mkdir(parents=True)
    (root / "bin").symlink_to("usr/bin")
    (root / "usr/bin/dbus-uuidgen").write_bytes(b"real dbus")
    (root / "usr/bin/mawk").write_bytes(b"mawk")
    os.link(root / "usr/bin/mawk", root / "usr/bin/nawk")
    (root / "usr/bin/awk").symlink_to("/etc/alt/awk")
    (root / "etc/alt/awk").symlink_to("/usr/bin/mawk")
    (root / "usr/bin/far").symlink_to("/" + "x" * 100 + "/far")  # no fast symlink: dumped
    os.mkfifo(root / "usr/bin/fifo")
    (root / "usr/lib/systemd/systemd").write_bytes(b"systemd")
    (root / "usr/lib/systemd/system/ssh.service").write_bytes(b"[Unit]\n")
    (root / "usr/lib/x86_64-linux-gnu/libc.so.6").write_bytes(b"libc")
    (root / "usr/lib/os-release").write_text("ID=debian\n")
    (root / "etc/hostname").write_text("box\n")
    return root


def expect_tree(m: Manifest) -> None:
    assert m.expected("/bin/dbus-uuidgen") == sha(b"real dbus")
    assert m.expected("/usr/bin/awk") == sha(b"mawk") == m.files["/usr/bin/nawk"]
    assert m.expected("/usr/lib/systemd/systemd") == sha(b"systemd")
    assert m.links["/usr/bin/far"] == "/" + "x" * 100 + "/far"
    assert m.libraries == ["/usr/lib/x86_64-linux-gnu/libc.so.6"]
    assert m.expected("/etc/hostname") is None and m.expected("/usr/bin/fifo") is None


def test_a_tree_s_manifest_is_its_tarball_s(tree: Path) -> None:
    walked = from_tree(tree)
    expect_tree(walked)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(tree, arcname=".")
    buf.seek(0)
    assert walked == from_tar(buf)
    assert Manifest.from_json(walked.to_json()) == walked


def disk(tree: Path, where: Path) -> Path:
    """A raw disk with a DOS partition table and the tree as the ext4 file system of its
    first partition (made by mkfs.ext4 -d: no mount, no root)."""
    fs = where / "fs.img"
    subprocess.run(
        ["mkfs.ext4", "-q", "-d", str(tree), str(fs), "16M"], check=True, capture_output=True
    )
    raw = where / "disk.raw"
    with raw.open("wb") as f:
        f.truncate(PART_OFFSET + fs.stat().st_size)
    table = f"label: dos\nstart={PART_OFFSET // 512}, type=83\n"
    subprocess.run(["sfdisk", "-q", str(raw)], input=table.encode(), check=True)
    with raw.open("r+b") as f, fs.open("rb") as src:
        f.seek(PART_OFFSET)
        shutil.copyfileobj(src, f)
    fs.unlink()
    return raw


@needs_e2fs
def test_debugfs_reads_the_same_manifest_from_a_disk(tree: Path, tmp_path: Path) -> None:
    raw = disk(tree, tmp_path)
    read = disktree.from_ext4(f"{raw}?offset={PART_OFFSET}", tmp_path)
    assert read == from_tree(tree)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["commands", "disk.raw", "tree"]
    # a file system debugfs cannot open is no empty image: no manifest at all
    with pytest.raises(disktree.DiskUnreadable, match="debugfs could not"):
        disktree.from_ext4(f"{raw}?offset=512", tmp_path)


def box_file(raw: Path, dest: Path) -> Path:
    """A libvirt box (metadata.json and a qcow2 box.img) of the raw disk."""
    work = raw.parent
    subprocess.run(
        ["qemu-img", "convert", "-O", "qcow2", str(raw), str(work / "box.img")], check=True
    )
    (work / "metadata.json").write_text(json.dumps({"provider": "libvirt", "format": "qcow2"}))
    with tarfile.open(dest, "w") as tar:
        tar.add(work / "metadata.json", "metadata.json")
        tar.add(work / "box.img", "box.img")
    return dest


@pytest.fixture
def images(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    monkeypatch.setenv("GUESTLAB_IMAGES", str(folder))
    return folder


@needs_e2fs
@pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-utils")
def test_a_box_built_before_manifests_gets_one_from_its_disk_once(
    tree: Path, tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    box = box_file(disk(tree, work), box_path(IMAGE))
    got = boxmanifest.for_box(box)
    assert got == from_tree(tree)
    assert boxmanifest.cache_path(box).exists()
    assert not list(images.glob(".manifest.*"))  # the raw copy is gone

    def unread(*_a: object) -> Manifest:
        raise AssertionError("the kept manifest is read, the disk is not")

    monkeypatch.setattr(boxmanifest, "from_box_file", unread)
    assert boxmanifest.for_box(box) == got


def test_a_box_whose_disk_cannot_be_read_has_no_manifest_said_once(
    images: Path, caplog: pytest.LogCaptureFixture
) -> None:
    box = box_path(IMAGE)
    with tarfile.open(box, "w") as tar:
        info = tarfile.TarInfo("metadata.json")
        tar.addfile(info, io.BytesIO(b""))
    with caplog.at_level(logging.WARNING, logger="guestlab.images"):
        assert boxmanifest.for_box(box) is None
        assert boxmanifest.for_box(box) is None
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "holds no box.img" in said[0] and box.name in said[0]
    assert not boxmanifest.cache_path(box).exists()


def test_a_built_box_is_put_in_place_with_its_manifest(images: Path, tree: Path) -> None:
    box = box_path(IMAGE)
    box.write_bytes(b"the box before")
    stale = boxmanifest.cache_path(box)
    stale.write_text(Manifest().to_json())
    built = images / "box.tar"
    built.write_bytes(b"not a box a disk could be read from")
    boxmanifest.install(from_tree(tree), built, box)
    assert box.read_bytes().startswith(b"not a box") and not built.exists()
    assert not stale.exists()
    assert boxmanifest.for_box(box) == from_tree(tree)  # kept: the disk is never read


@dataclass(frozen=True)
class Spec:
    image: str


@dataclass
class Lab:
    """A lab as checks see it: the machine's spec, and the backend that holds it."""

    backend: object

    def spec(self, name: str) -> Spec:
        return Spec(IMAGE)

    def backend_for(self, name: str) -> object:
        return self.backend


def tarball(tree: Path) -> Manifest:
    with tarfile.open(tarball_path(IMAGE), "w") as tar:
        tar.add(tree / "usr/bin/mawk", "./usr/bin/dbus-uuidgen")  # not the box's
    with tarball_path(IMAGE).open("rb") as f:
        return from_tar(f)


@pytest.mark.parametrize("provider", ["libvirt", "docker", "virtualbox"])
def test_a_vagrant_machine_is_compared_with_what_its_provider_starts_from(
    provider: str, images: Path, tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Preflight, "provider", lambda _self: provider)
    box = box_path(IMAGE)
    built = images / "built.box"
    built.write_bytes(b"a box")
    boxmanifest.install(from_tree(tree), built, box)
    from_tarball = tarball(tree)
    backend = VagrantBackend()
    got = trusted.manifest_of(Lab(backend), backend, "vm")
    want = {"libvirt": from_tree(tree), "docker": from_tarball, "virtualbox": None}
    assert got == want[provider]


def test_a_vm_backend_that_says_nothing_of_its_images_is_not_compared(
    images: Path, tree: Path
) -> None:
    tarball(tree)

    class Machines:
        capabilities = frozenset({"vm"})

    assert trusted.manifest_of(Lab(Machines()), Machines(), "vm") is None
    Machines.capabilities = frozenset({"systemd"})  # a container: the tarball's
    assert trusted.manifest_of(Lab(Machines()), Machines(), "vm") is not None


@dataclass
class HostVM:
    """A VM backend whose 'machine' is this host: the batch runs here, for real, and the
    box's manifest is whatever the test says the image holds."""

    image: Manifest
    capabilities = frozenset({"systemd", "vm"})

    def image_manifest(self, image: str) -> Manifest:
        return self.image

    def exec(self, lab: LabRef, machine: str, argv: Sequence[str], *, timeout: float) -> ExecResult:
        res = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
        return ExecResult(res.returncode, res.stdout, res.stderr)


@pytest.mark.skipif(not os.path.isfile("/usr/bin/apt-get"), reason="needs a Debian host")
def test_a_vm_binary_that_is_not_the_box_s_fails_its_check() -> None:
    real = Path("/usr/bin/apt-get").read_bytes()
    probe = [(Probe("vm", sh("apt-get --version >/dev/null")), 10.0)]
    box = Manifest({"/usr/bin/apt-get": sha(real)})
    (passed,) = trusted.run_machine(Lab(HostVM(box)), LAB, "vm", probe)
    assert isinstance(passed, ExecResult) and passed.ok
    changed = Manifest({"/usr/bin/apt-get": sha(b"the box's apt-get")})
    (failed,) = trusted.run_machine(Lab(HostVM(changed)), LAB, "vm", probe)
    assert failed == Tampered("tampered: /usr/bin/apt-get differs from the image")
