"""What a Vagrant box holds inside: the packages installed in its chroot and the guest's
configuration (the vagrant user, networking, first-boot identity, the boot loader).

Boot time matters here: under software emulation every second of a boot is paid again at
every VM made and every reboot graded, so the guest boots with only what a lab needs.
"""

from __future__ import annotations

from pathlib import Path

from orchestrator.backends.contract import Progress
from orchestrator.errors import ProvisioningError
from orchestrator.images.catalog import ImageDef
from orchestrator.images.chroot import apt_install, run, write
from orchestrator.messages import _

#: the one SSH host key a VM makes at its first boot
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key"
KEYGEN = f'ssh-keygen -q -t ed25519 -N "" -f {HOST_KEY}'
#: a libvirt guest's root disk (virtio-blk or virtio-scsi) and ext4's checksums
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "crc32c_generic")
BOX_PACKAGES = ("linux-image-cloud-amd64", "initramfs-tools", "openssh-server", "sudo", "udev")


def install_packages(root: Path, image: ImageDef, mirror: str, progress: Progress) -> None:
    # before the kernel's package makes the initramfs: only the drivers a libvirt guest's
    # root needs. MODULES=most packs ~430 modules that udev then probes at every boot
    # (under emulation the root device appeared 17 s into userspace, systemd-analyze)
    write(root / "etc/initramfs-tools/conf.d/guestlab.conf", "MODULES=list\n")
    write(root / "etc/initramfs-tools/modules", "".join(f"{m}\n" for m in INITRAMFS_MODULES))
    apt_install(root, image.suite, mirror, BOX_PACKAGES, progress)
    write(root / "etc/resolv.conf", "")  # no DNS on a lab network; and no host details left


def configure(root: Path, pubkey: bytes, uuid: str) -> None:
    """The vagrant user, networking, first-boot identity and the boot loader's config."""
    run(root, "useradd", "--create-home", "--shell", "/bin/bash", "--user-group", "vagrant")
    # '*' (not '!'): no password login, but not a locked account sshd would refuse
    run(root, "usermod", "--password", "*", "vagrant")
    write(root / "etc/sudoers.d/vagrant", "vagrant ALL=(ALL) NOPASSWD:ALL\n", 0o440)
    ssh = root / "home/vagrant/.ssh"
    ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_bytes(pubkey)
    (ssh / "authorized_keys").chmod(0o600)
    run(root, "chown", "-R", "vagrant:vagrant", "/home/vagrant/.ssh")

    write(
        root / "etc/systemd/network/20-dhcp.network",
        "[Match]\nName=en* eth*\n\n[Network]\nDHCP=ipv4\n\n"
        "[DHCPv4]\n"
        "# by MAC, not by the DUID systemd derives from /etc/machine-id: a cloned VM\n"
        "# keeps the machine ID of its source and must still get an address of its own\n"
        "ClientIdentifier=mac\n",
    )
    run(root, "systemctl", "enable", "systemd-networkd.service")
    # the network is isolated: waiting for "online" would only slow boots down
    run(root, "systemctl", "mask", "systemd-networkd-wait-online.service")
    run(root, "systemctl", "mask", "apt-daily.timer", "apt-daily-upgrade.timer")
    # e2scrub_reap looks for LVM snapshots there are none of: under emulation it held
    # the end of every boot back by ~20 s (systemd-analyze blame, measured here)
    run(root, "systemctl", "mask", "e2scrub_reap.service", "e2scrub_all.timer")

    # first boot makes the identity: an empty machine-id is filled in by systemd, and
    # sshd's host keys are generated before sshd starts (`sshd -t` would fail without)
    for key in (root / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    write(
        root / "etc/systemd/system/ssh.service.d/guestlab-hostkeys.conf",
        "[Service]\nExecStartPre=\n"
        f"ExecStartPre=/bin/sh -c 'test -e {HOST_KEY} || {KEYGEN}'\n"
        "ExecStartPre=/usr/sbin/sshd -t\n",
    )
    # one host key type, made and loaded: `ssh-keygen -A` also made an RSA key, ~10 s of
    # every new VM's first boot under emulation
    write(root / "etc/ssh/sshd_config.d/guestlab-hostkeys.conf", f"HostKey {HOST_KEY}\n")
    write(root / "etc/machine-id", "")
    (root / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    write(root / "etc/hostname", "debian\n")
    write(root / "etc/hosts", "127.0.0.1\tlocalhost\n127.0.1.1\tdebian\n")
    # no fsck at boot (pass 0): lab VMs are short-lived copies of a box checked when built
    write(root / "etc/fstab", f"UUID={uuid}\t/\text4\terrors=remount-ro\t0\t0\n")

    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise ProvisioningError(_("the box has no kernel or initramfs in /boot after install"))
    write(
        root / "boot/extlinux/extlinux.conf",
        "DEFAULT debian\nTIMEOUT 1\nPROMPT 0\n\nLABEL debian\n"
        f"  LINUX /boot/{kernels[-1].name}\n"
        f"  INITRD /boot/{initrds[-1].name}\n"
        # the serial console is what libvirt logs; net.ifnames=0 keeps eth0 predictable;
        # quiet: every kernel line is written through an emulated UART at 115200 baud.
        # no_timer_check: under emulation on a busy host the kernel's early test of the
        # timer interrupt can miss its ticks and panic ("IO-APIC + timer doesn't work",
        # found in the memory of a VM that never came back); cloud images of other
        # distributions boot with it for that reason. panic=10: a panic of any other kind
        # reboots the VM instead of leaving it spinning until every wait gives up
        f"  APPEND root=UUID={uuid} ro quiet net.ifnames=0 no_timer_check panic=10"
        " console=tty0 console=ttyS0,115200n8\n",
    )
