#!/usr/bin/env bash
# Install what guestlab's systemd-nspawn backend needs. Idempotent: every step checks first.
#
# - systemd-container: systemd-nspawn (and machinectl where the host runs systemd);
# - debootstrap: builds the Debian root filesystems the machines boot from;
# - util-linux: nsenter (present on any Debian);
# - btrfs-progs: guestlab's copy-on-write store for machines. A sparse loop file of
#   $GUESTLAB_NSPAWN_POOL_SIZE (30GiB by default), /var/lib/guestlab/nspawn.btrfs, mounted
#   at /var/lib/guestlab/nspawn (mounted again after a reboot, by running this script or by
#   guestlab itself), with quotas on: every machine, clone and snapshot is a btrfs
#   subvolume snapshot, and each machine's writes are bounded by a qgroup limit. Where no
#   loop device or btrfs is available, guestlab keeps machines under $GUESTLAB_HOME/nspawn
#   and copies trees (slower, no disk bound).
# No daemon to start: each machine is its own systemd-nspawn process. On hosts whose PID 1
# is not systemd the backend runs nspawn with --register=no --keep-unit by itself.
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'nspawn-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root (installing packages and running systemd-nspawn need it)"
    exit 1
fi

missing=()
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)
command -v mkfs.btrfs >/dev/null 2>&1 || missing+=(btrfs-progs)

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
fi

pool_file=/var/lib/guestlab/nspawn.btrfs
pool_dir=/var/lib/guestlab/nspawn
size="${GUESTLAB_NSPAWN_POOL_SIZE:-30GiB}"
mkdir -p /var/lib/guestlab
chmod 0711 /var/lib/guestlab

pool_mounted() { [ "$(findmnt -n -o FSTYPE --target "$pool_dir" 2>/dev/null)" = btrfs ] \
    && findmnt -n -o TARGET --target "$pool_dir" | grep -qx "$pool_dir"; }

if ! pool_mounted; then
    if [ ! -e "$pool_file" ]; then
        log "creating $pool_file (btrfs, $size, sparse)"
        truncate -s "$size" "$pool_file.new"
        mkfs.btrfs -q -L guestlab-nspawn "$pool_file.new" >/dev/null
        mv "$pool_file.new" "$pool_file"
    fi
    mkdir -p "$pool_dir"
    if mount -o loop,noatime "$pool_file" "$pool_dir" 2>/tmp/guestlab-nspawn-mount.err; then
        log "mounted $pool_file at $pool_dir"
    else
        log "cannot mount $pool_file ($(cat /tmp/guestlab-nspawn-mount.err)):" \
            "guestlab copies machine trees under \$GUESTLAB_HOME/nspawn instead"
    fi
fi

if pool_mounted; then
    chmod 0700 "$pool_dir"
    # quotas bound each machine's writes (MachineSpec.disk): simple quotas where the
    # kernel has them (orchestrator/backends/btrfs_quota.py says why)
    quota_mode=$(python3 -m orchestrator.backends.btrfs_quota simple "$pool_dir")
    log "ready: $(systemd-nspawn --version | head -n1), store $pool_dir" \
        "($(df -h --output=size "$pool_dir" | tail -n1 | tr -d ' ') btrfs, quotas: $quota_mode)"
else
    log "ready: $(systemd-nspawn --version | head -n1), no btrfs store"
fi
if [ -d /run/systemd/system ]; then
    log "systemd host: machines register with systemd-machined"
else
    log "PID 1 is not systemd: machines run with --register=no --keep-unit"
fi
