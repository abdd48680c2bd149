#!/usr/bin/env bash
# Install, start and initialise LXD for guestlab. Idempotent: every step checks first.
#
# - installs the `lxd` package when the daemon binary is missing (Debian 12: LXD 5.0);
# - starts the daemon by hand when `lxc info` fails (hosts whose PID 1 is not systemd);
# - when no storage pool exists, initialises LXD with a `dir` pool called `default` and
#   NO network bridge: guestlab machines stay off any network unless a scenario asks;
# - adds guestlab's own pool, `guestlab`, copy-on-write (btrfs in a loop file of
#   $GUESTLAB_LXD_POOL_SIZE, 30GiB by default, sparse), which guestlab prefers: on `dir`
#   every instance, copy and snapshot rsyncs a whole root filesystem. Where btrfs cannot
#   be made (no loop devices), guestlab works on the `dir` pool, only slower.
# pylxd itself comes from the Python extra: pip install 'guestlab[lxd]'.
set -euo pipefail

log() { printf 'lxd-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root (installing and starting LXD needs it)"
    exit 1
fi

if ! command -v lxd >/dev/null 2>&1; then
    log "installing lxd"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y lxd btrfs-progs || { apt-get update && apt-get install -y lxd btrfs-progs; }
fi
if ! command -v mkfs.btrfs >/dev/null 2>&1; then
    log "installing btrfs-progs (for guestlab's copy-on-write storage pool)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y btrfs-progs || { apt-get update && apt-get install -y btrfs-progs; } \
        || log "could not install btrfs-progs: guestlab will use the dir pool"
fi

# Every unprivileged container shares one host uid; at a classroom's scale its kernel
# keyring and inotify quotas run out (nspawn inside then fails with "Disk quota exceeded").
# These are the values LXD's production set-up recommends.
sysctl -q -w kernel.keys.maxkeys=2000 kernel.keys.maxbytes=2000000 \
    fs.inotify.max_user_instances=1024 fs.inotify.max_user_watches=1048576 \
    || log "could not raise kernel key/inotify limits (read-only /proc/sys?); large classes may fail"

if ! lxc info >/dev/null 2>&1; then
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        log "starting the lxd service"
        systemctl start snap.lxd.daemon 2>/dev/null || systemctl start lxd
    else
        # No systemd as PID 1 (containers, CI runners): run the daemon ourselves.
        log "starting lxd (log: /var/log/lxd.log)"
        nohup lxd --group root >/var/log/lxd.log 2>&1 &
    fi
    lxd waitready --timeout 60
fi

if [ -z "$(lxc storage list --format csv 2>/dev/null)" ]; then
    log "initialising lxd: dir storage pool 'default', no network"
    lxd init --preseed <<'EOF'
storage_pools:
- name: default
  driver: dir
profiles:
- name: default
  devices:
    root:
      path: /
      pool: default
      type: disk
EOF
fi

if ! lxc storage show guestlab >/dev/null 2>&1; then
    size="${GUESTLAB_LXD_POOL_SIZE:-30GiB}"
    if command -v mkfs.btrfs >/dev/null 2>&1 \
        && lxc storage create guestlab btrfs "size=$size" >/dev/null 2>&1; then
        log "created storage pool 'guestlab' (btrfs, loop file of $size, sparse)"
    else
        log "no btrfs pool (no loop device or btrfs here?): guestlab uses the dir pool"
    fi
fi

log "ready: LXD $(lxc version 2>/dev/null | awk '/Server version/ {print $3}'), pools: $(lxc storage list --format csv | cut -d, -f1 | paste -sd' ')"
