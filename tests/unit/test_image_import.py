"""Imported root file systems: what is refused with a sentence, and what is recorded."""

from __future__ import annotations

import io
import platform
import tarfile
from pathlib import Path

import pytest

from orchestrator.errors import UsageError
from orchestrator.images import imported as imp
from orchestrator.images.catalog import lookup
from orchestrator.images.tarcheck import ImageRefused, inspect_rootfs

# e_ident (16 bytes), e_type (2: executable), e_machine (2), then the rest of a header
ELF_X86_64 = (
    b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\0" + (62).to_bytes(2, "little") + b"\0" * 40
)
ELF_AARCH64 = (
    b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\0" + (183).to_bytes(2, "little") + b"\0" * 40
)
OS_RELEASE = b'PRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\nID="rocky"\nVERSION_ID="9.4"\n'


def _file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


def rootfs(
    path: Path, *, shell: bytes = ELF_X86_64, extra=None, os_release=True, mode="w:gz"
) -> Path:
    with tarfile.open(path, mode) as tar:
        for d in ("./etc", "./usr/lib/systemd", "./usr/bin", "./dev"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        if os_release:
            _file(tar, "./usr/lib/os-release", OS_RELEASE)
            _link(tar, "./etc/os-release", "../usr/lib/os-release")
        _file(tar, "./usr/bin/bash", shell, 0o755)
        _link(tar, "./bin", "usr/bin")
        _link(tar, "./usr/bin/sh", "bash")
        _file(tar, "./usr/lib/systemd/systemd", ELF_X86_64, 0o755)
        _link(tar, "./etc/localtime", "/usr/share/zoneinfo/UTC")  # absolute: inside the root
        if extra:
            extra(tar)
    return path


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fixtures are x86_64 binaries")
def test_a_good_tree_is_described(tmp_path: Path) -> None:
    facts = inspect_rootfs(rootfs(tmp_path / "rocky.tar.gz"))
    assert (facts.os_id, facts.os_version, facts.arch, facts.init) == (
        "rocky",
        "9.4",
        "x86_64",
        "systemd",
    )
    assert facts.pretty == "Rocky Linux 9.4 (Blue Onyx)"


def _device(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    tar.addfile(info)


HOSTILE = {
    "a member climbing out": (lambda t: _file(t, "./etc/../../outside", b"x"), "outside the root"),
    "an absolute member": (lambda t: _file(t, "/etc/cron.d/evil", b"x"), "outside the root"),
    "a device node outside /dev": (lambda t: _device(t, "./root/mem"), "device node outside /dev"),
    "a symlink escaping the root": (
        lambda t: _link(t, "./etc/escape", "../../../host"),
        "escapes the root",
    ),
    "a hard link to outside": (
        lambda t: _link(t, "./etc/hard", "../x", tarfile.LNKTYPE),
        "outside the root",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_archives_are_refused_with_a_sentence(tmp_path: Path, case: str) -> None:
    extra, words = HOSTILE[case]
    with pytest.raises(ImageRefused, match=words):
        inspect_rootfs(rootfs(tmp_path / "x.tar", extra=extra, mode="w"))


def test_a_device_node_in_dev_is_fine(tmp_path: Path) -> None:
    inspect_rootfs(rootfs(tmp_path / "x.tar", extra=lambda t: _device(t, "./dev/null")))


def test_a_truncated_archive_is_refused(tmp_path: Path) -> None:
    whole = rootfs(tmp_path / "x.tar", mode="w", extra=lambda t: _file(t, "./big", b"y" * 200_000))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole.read_bytes()[:100_000])
    with pytest.raises(ImageRefused, match=r"truncated or corrupt|not a readable"):
        inspect_rootfs(cut)


def test_what_is_not_a_tree_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive at all" * 100)
    with pytest.raises(ImageRefused, match="not a"):
        inspect_rootfs(junk)
    with pytest.raises(ImageRefused, match="os-release"):
        inspect_rootfs(rootfs(tmp_path / "no-os.tar", os_release=False, mode="w"))


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fixtures are x86_64 binaries")
def test_another_architecture_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageRefused, match="aarch64; this host runs x86_64"):
        inspect_rootfs(rootfs(tmp_path / "arm.tar", shell=ELF_AARCH64, mode="w"))


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the fixtures are x86_64 binaries")
def test_import_records_it_and_lookup_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUESTLAB_IMAGES", str(tmp_path / "images"))
    source = rootfs(tmp_path / "rocky.tar.xz", mode="w:xz")
    record = imp.import_rootfs("rocky-9", source)
    assert record.facts.os_id == "rocky"
    kept = tmp_path / "images" / "rocky-9.rootfs.tar"
    with tarfile.open(kept) as tar:  # a plain tar: every engine reads it without a codec
        assert "./usr/lib/os-release" in tar.getnames()
    img = lookup("rocky-9")
    assert img.imported and img.os_id == "rocky"
    assert imp.forget("rocky-9") and not kept.exists()
    with pytest.raises(UsageError, match="unknown image `rocky-9`"):
        lookup("rocky-9")


@pytest.mark.parametrize("name", ["Bad Name", "debian-12-systemd", "a--b"])
def test_import_refuses_bad_and_built_in_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("GUESTLAB_IMAGES", str(tmp_path / "images"))
    with pytest.raises(UsageError):
        imp.import_rootfs(name, rootfs(tmp_path / "r.tar", mode="w"))
    assert not (tmp_path / "images" / imp.RECORD).exists()


def test_a_refused_import_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUESTLAB_IMAGES", str(tmp_path / "images"))
    bad = rootfs(tmp_path / "bad.tar", mode="w", extra=lambda t: _link(t, "./e", "../../x"))
    with pytest.raises(ImageRefused):
        imp.import_rootfs("evil", bad)
    images = tmp_path / "images"
    assert not images.exists() or not any(p.name.startswith("evil") for p in images.iterdir())
