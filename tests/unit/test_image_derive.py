"""Images derived from a base image's tree: one debootstrap per release, each image's own
packages added with apt in a chroot (the chroot and apt themselves run in the set-up)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest

from orchestrator.images import chroot, rootfs
from orchestrator.images.catalog import CATALOG, DEFAULT_IMAGE


def test_every_derived_image_starts_from_a_debootstrapped_image_of_its_release() -> None:
    derived = {name: image for name, image in CATALOG.items() if image.base}
    assert set(derived) >= {"debian-12-lab", "debian-12-cloud", "debian-12-docker"}
    for image in derived.values():
        base = CATALOG[image.base or ""]
        assert base.base is None and base.suite == image.suite, image.name
        assert set(base.packages) < set(image.packages), image.name  # it only adds
    assert CATALOG[DEFAULT_IMAGE].base is None


def test_a_derived_tree_is_the_base_s_with_only_the_missing_packages_added(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)  # the tree is this user's: tar needs no root
    base_tree = tmp_path / "base"
    (base_tree / "etc").mkdir(parents=True)
    (base_tree / "etc/os-release").write_text("ID=debian\n")
    (base_tree / "var/lib/apt/lists").mkdir(parents=True)
    (base_tree / "var/lib/apt/lists/stale_Packages").write_text("old")
    tarball = tmp_path / "base.rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(base_tree, arcname=".")
    installed: list[tuple[str, list[str]]] = []
    mounted: list[Path] = []

    class Mounts:
        def __init__(self, root: Path) -> None:
            mounted.append(root)

        def __enter__(self) -> None:
            return None

        def __exit__(self, *_exc: object) -> None:
            return None

    monkeypatch.setattr(chroot, "mounts", Mounts)
    monkeypatch.setattr(
        chroot,
        "apt_install",
        lambda root, suite, mirror, packages, progress: installed.append((suite, list(packages))),
    )
    dest = tmp_path / "lab"
    dest.mkdir()
    image, base = CATALOG["debian-12-lab"], CATALOG[DEFAULT_IMAGE]
    rootfs.derive_rootfs(image, base, tarball, dest, "http://mirror.invalid/debian", print)
    assert (dest / "etc/os-release").read_text() == "ID=debian\n"
    assert mounted == [dest]
    assert installed == [("bookworm", [p for p in image.packages if p not in base.packages])]
    assert "systemd" not in installed[0][1] and "openssh-server" in installed[0][1]
    assert not (dest / "var/lib/apt/lists/stale_Packages").exists()  # trimmed as a base is
    assert (dest / "etc/hostname").read_text() == "localhost\n"


def test_apt_leaves_the_tree_s_own_resolver_config_and_no_package_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/resolv.conf").write_text("nameserver 192.0.2.1\n")
    lists = root / "var/lib/apt/lists"
    ran: list[list[str]] = []

    def sh(argv: list[str], **_k: object) -> str:
        ran.append(list(argv))
        if "update" in argv:  # what apt leaves in a tree it updates
            lists.mkdir(parents=True, exist_ok=True)
            (lists / "bookworm_main_Packages").write_text("...")
        # no daemon starts while the packages install
        assert (root / "usr/sbin/policy-rc.d").read_text().endswith("exit 101\n")
        return ""

    monkeypatch.setattr(chroot, "sh", sh)
    chroot.apt_install(root, "bookworm", "http://mirror.invalid/debian", ["less"], print)
    assert [a[2:4] for a in ran] == [
        ["apt-get", "update"],
        ["apt-get", "install"],
        ["apt-get", "clean"],
    ]
    assert ran[1][-2:] == ["--no-install-recommends", "less"]
    assert (root / "etc/resolv.conf").read_text() == "nameserver 192.0.2.1\n"
    assert list(lists.iterdir()) == [] and not (root / "usr/sbin/policy-rc.d").exists()
    sources = (root / "etc/apt/sources.list").read_text()
    assert sources == "deb http://mirror.invalid/debian bookworm main\n"


def test_the_set_up_builds_bases_first_and_each_image_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestrator.images import prebuild

    needs = {
        "docker": {"debian-12-lab", "debian-12-systemd"},
        "vagrant": {"debian-12-lab", "debian-12-systemd"},
        "nspawn": {"debian-11-systemd", "debian-12-cloud"},
    }
    monkeypatch.setattr(prebuild, "library_needs", lambda: needs)
    order = prebuild.wanted()
    assert order == ["debian-12-systemd", "debian-11-systemd", "debian-12-lab", "debian-12-cloud"]
    built: list[str] = []

    def ensure(name: str) -> Path:
        built.append(name)
        if name == "debian-12-cloud":
            raise chroot.ProvisioningError("no mirror answered")
        return Path(name)

    monkeypatch.setattr(prebuild, "ensure_tarball", ensure)
    assert prebuild.main() == 1  # one failed: the images step builds it again and says why
    assert sorted(built) == sorted(order)
