#!/usr/bin/env bash
# Install and start what guestlab's Vagrant backend needs. Idempotent: every step checks first.
#
# - Debian's vagrant with the vagrant-libvirt plugin, libvirt and QEMU (real VMs; QEMU
#   software emulation where KVM is unusable, the backend finds out by itself);
# - the box builder's tools: qemu-img, sfdisk, extlinux and syslinux's mbr.bin;
# - dnsmasq-base: libvirt's DHCP on the isolated network of each lab;
# - starts virtlogd and libvirtd by hand where PID 1 is not systemd;
# - defines guestlab's own `dir` storage pool (`guestlab`, /var/lib/guestlab/libvirt).
# python-vagrant comes from the Python extra: pip install 'guestlab[vagrant]'.
set -euo pipefail

log() { printf 'vagrant-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root (installing packages and starting libvirtd need it)"
    exit 1
fi

POOL=${GUESTLAB_LIBVIRT_POOL:-guestlab}
POOL_DIR=${GUESTLAB_LIBVIRT_POOL_DIR:-/var/lib/guestlab/libvirt}

missing=()
command -v vagrant >/dev/null 2>&1 || missing+=(vagrant)
[ "$(dpkg-query -W -f='${Status}' vagrant-libvirt 2>/dev/null)" = "install ok installed" ] \
    || missing+=(vagrant-libvirt)
command -v libvirtd >/dev/null 2>&1 || missing+=(libvirt-daemon-system libvirt-daemon-driver-qemu)
command -v virsh >/dev/null 2>&1 || missing+=(libvirt-clients)
command -v qemu-system-x86_64 >/dev/null 2>&1 || missing+=(qemu-system-x86)
command -v qemu-img >/dev/null 2>&1 || missing+=(qemu-utils)
command -v extlinux >/dev/null 2>&1 || missing+=(extlinux)
[ -f /usr/lib/syslinux/mbr/mbr.bin ] || missing+=(syslinux-common)
command -v sfdisk >/dev/null 2>&1 || missing+=(fdisk)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq-base)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${missing[@]}" \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; }
fi

# What Debian's udev rule does where no udev runs: /dev/kvm for the kvm group, which
# libvirt's QEMU user is in. Without it libvirt finds KVM "no longer available" at every
# call and probes QEMU again (4-8 s per virsh call, minutes per `vagrant up`).
if [ -c /dev/kvm ] && getent group kvm >/dev/null && [ "$(stat -c %G:%a /dev/kvm)" != kvm:660 ]; then
    log "giving /dev/kvm to the kvm group (mode 0660), as udev would"
    chgrp kvm /dev/kvm && chmod 0660 /dev/kvm
fi

if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        log "starting the libvirtd service"
        systemctl start virtlogd libvirtd
    else
        # No systemd as PID 1 (containers, CI runners): run the daemons ourselves.
        log "starting virtlogd and libvirtd by hand"
        pgrep -x virtlogd >/dev/null || virtlogd -d
        pgrep -x libvirtd >/dev/null || libvirtd -d
    fi
    for _ in $(seq 30); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
fi
virsh -c qemu:///system version >/dev/null 2>&1 \
    || { log "libvirtd does not answer (try: libvirtd -v in a terminal)"; exit 1; }

if ! virsh -c qemu:///system pool-info "$POOL" >/dev/null 2>&1; then
    log "defining storage pool $POOL in $POOL_DIR"
    mkdir -p "$POOL_DIR"
    virsh -c qemu:///system pool-define-as "$POOL" dir --target "$POOL_DIR" >/dev/null
    virsh -c qemu:///system pool-autostart "$POOL" >/dev/null
fi
state=$(virsh -c qemu:///system pool-info "$POOL")  # not piped: grep -q + pipefail = SIGPIPE
if ! grep -q '^State: *running' <<<"$state"; then
    virsh -c qemu:///system pool-start "$POOL" >/dev/null
fi

log "ready: $(vagrant --version), libvirt $(virsh -c qemu:///system version --daemon | awk '/daemon/ {print $NF}'), pool $POOL"
