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
cd "$(dirname "$0")/../.."  # python3 -m orchestrator... below

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

# Many unprivileged containers run at once; at a classroom's scale the kernel's keyring
# and inotify limits run out. inotify instances are counted per user of the namespace that
# made the containers, so all of LXD's share root's: at 1024 (what this script set until
# 2026-12-02) about the 129th container's systemd failed with "Failed to create control
# group inotify object: Too many open files" (a class of 100). The values of the LXD
# packages' sysctl files, from LXD's production set-up; a host's higher value is kept.
raise_sysctl() {
    local current
    current=$(sysctl -n "$1" 2>/dev/null || echo 0)
    if [ "$current" -lt "$2" ]; then
        sysctl -q -w "$1=$2" || log "could not raise $1 to $2 (read-only /proc/sys?); large classes may fail"
    fi
}
raise_sysctl kernel.keys.maxkeys 2000
raise_sysctl kernel.keys.maxbytes 2000000
raise_sysctl fs.inotify.max_user_instances 131072
raise_sysctl fs.inotify.max_queued_events 131072
raise_sysctl fs.inotify.max_user_watches 1048576

# Isolated id maps: guestlab gives every machine `security.idmap.isolated=true`, so each
# one's root is a host uid range no other machine shares. LXD carves those ranges out of
# root's FIRST range in /etc/subuid and /etc/subgid (LXD 5.0 reads only that one, at
# start), so root needs one range big enough for a class: $GUESTLAB_LXD_SUBID_COUNT ids
# (201326592 = 1024 machines of 196608 ids: a nested LXD needs more than 65536) from
# $GUESTLAB_LXD_SUBID_BASE (0x70000000: above systemd-nspawn's --private-users=pick
# range, 0x00080000-0x6FFFFFFF, and below the ids some tools read as negative).
subid_base="${GUESTLAB_LXD_SUBID_BASE:-1879048192}"
subid_count="${GUESTLAB_LXD_SUBID_COUNT:-201326592}"
subids_changed=no
for file in /etc/subuid /etc/subgid; do
    touch "$file"
    first_root="$(awk -F: '$1 == "root" && $3 >= 65536 {print $2 ":" $3; exit}' "$file")"
    if [ "$first_root" = "$subid_base:$subid_count" ]; then
        continue
    fi
    # root's other ranges go: LXD would take the first one; other users' lines stay
    tmp="$(mktemp "$file.guestlab.XXXXXX")"
    awk -F: '$1 != "root"' "$file" >"$tmp"
    printf 'root:%s:%s\n' "$subid_base" "$subid_count" >>"$tmp"
    chmod --reference="$file" "$tmp"
    mv "$tmp" "$file"
    log "$file: root now has $subid_count ids from $subid_base (was: ${first_root:-none})"
    subids_changed=yes
done

# The process listening on LXD's socket: the daemon, and nothing else called lxd
# (`lxd forkexec` helpers, or an LXD nested in a lab machine, carry the same name).
lxd_daemon_pid() {
    ss -xlpn 2>/dev/null | awk '$5 == "/var/lib/lxd/unix.socket"' \
        | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n1
}

if [ "$subids_changed" = yes ] && lxc info >/dev/null 2>&1; then
    # LXD read the old ranges when it started. Stopping the daemon (SIGTERM, not
    # `lxd shutdown`) leaves running instances running.
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        log "restarting the lxd service to read the new id ranges"
        systemctl restart snap.lxd.daemon 2>/dev/null || systemctl restart lxd
    else
        pid="$(lxd_daemon_pid)"
        if [ -n "$pid" ]; then
            log "restarting lxd (pid $pid) to read the new id ranges"
            kill -TERM "$pid"
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.2
            done
        fi
    fi
fi

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

# Simple quotas on guestlab's btrfs pool: LXD bounds a machine's disk with a qgroup limit
# and, finding quotas off, turns on full qgroup accounting, which walks the back-references
# of every shared extent at each transaction (a cold class of 30 took 420 s with it).
# Switching drops the limits in force, so only a pool with no instance on it is switched.
pool_dir=/var/lib/lxd/storage-pools/guestlab
quota_mode=
if [ -d "$pool_dir" ] && [ "$(findmnt -no FSTYPE --target "$pool_dir")" = btrfs ]; then
    quota_mode=$(python3 -m orchestrator.backends.btrfs_quota mode "$pool_dir")
    if [ "$quota_mode" != squota ]; then
        if [ -z "$(lxc list --format csv -c n 2>/dev/null)" ]; then
            quota_mode=$(python3 -m orchestrator.backends.btrfs_quota simple "$pool_dir")
        else
            log "pool 'guestlab' keeps quotas '$quota_mode': instances are on it (switch with none: python3 -m orchestrator.backends.btrfs_quota simple $pool_dir)"
        fi
    fi
fi

log "ready: LXD $(lxc version 2>/dev/null | awk '/Server version/ {print $3}'), pools: $(lxc storage list --format csv | cut -d, -f1 | paste -sd' ')${quota_mode:+, quotas of pool guestlab: $quota_mode}"
