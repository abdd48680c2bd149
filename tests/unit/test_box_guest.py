"""The box's guest configuration: what makes its VMs boot fast without giving up a fresh
identity per VM (measured under emulation: 51 s to 32 s a boot)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.images import box_guest, chroot


def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[list[str]]]:
    """`configure` run on an empty tree, its chroot commands recorded, not run."""
    ran: list[list[str]] = []
    monkeypatch.setattr(chroot, "sh", lambda argv, **_k: ran.append(list(argv)) or "")
    root = tmp_path / "root"
    for sub in ("boot", "etc/ssh", "var/lib/dbus"):
        (root / sub).mkdir(parents=True)
    (root / "boot/vmlinuz-6.1.0-cloud-amd64").write_text("")
    (root / "boot/initrd.img-6.1.0-cloud-amd64").write_text("")
    (root / "etc/ssh/ssh_host_rsa_key").write_text("the builder's key")
    box_guest.configure(root, b"ssh-ed25519 AAAA vagrant\n", "1234-abcd")
    return root, ran


def test_no_host_key_is_baked_in_and_one_is_made_at_first_boot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ran = configured(tmp_path, monkeypatch)
    assert list((root / "etc/ssh").glob("ssh_host_*")) == []
    unit = (root / "etc/systemd/system/ssh.service.d/guestlab-hostkeys.conf").read_text()
    # the stock ExecStartPre (sshd -t) is cleared first, then the key, then the test
    lines = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert lines[0] == "ExecStartPre=" and lines[-1] == "ExecStartPre=/usr/sbin/sshd -t"
    assert "ssh-keygen -q -t ed25519" in lines[1] and "-A" not in lines[1]
    config = (root / "etc/ssh/sshd_config.d/guestlab-hostkeys.conf").read_text()
    assert config == f"HostKey {box_guest.HOST_KEY}\n"
    assert (root / "etc/machine-id").read_text() == ""


def test_the_kernel_line_is_quiet_and_names_the_root_by_uuid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, _ran = configured(tmp_path, monkeypatch)
    append = next(
        line
        for line in (root / "boot/extlinux/extlinux.conf").read_text().splitlines()
        if "APPEND" in line
    )
    assert "root=UUID=1234-abcd" in append and " quiet " in append
    assert "console=ttyS0" in append  # a failing boot still says why on the console
    # an emulated VM on a busy host must not panic on the timer test, nor hang on a panic
    assert " no_timer_check " in append and " panic=10 " in append


def test_the_initramfs_lists_its_drivers_before_the_kernel_is_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    (root / "usr/sbin").mkdir(parents=True)
    (root / "etc").mkdir()
    conf = root / "etc/initramfs-tools/conf.d/guestlab.conf"
    seen: dict[str, str] = {}

    def sh(argv: list[str], **_k: object) -> str:
        if "linux-image-cloud-amd64" in argv:  # the package whose hook builds the initramfs
            seen["conf"] = conf.read_text()
            seen["modules"] = (root / "etc/initramfs-tools/modules").read_text()
        return ""

    monkeypatch.setattr(chroot, "sh", sh)
    image = type("Image", (), {"suite": "bookworm"})()
    box_guest.install_packages(root, image, "http://packages.invalid/debian", lambda _m: None)  # type: ignore[arg-type]
    assert seen["conf"] == "MODULES=list\n"
    assert {"virtio_blk", "virtio_pci"} <= set(seen["modules"].split())
