#!/usr/bin/env bash
# Install what guestlab's systemd-nspawn backend needs. Idempotent: every step checks first.
#
# - systemd-container: systemd-nspawn (and machinectl where the host runs systemd);
# - debootstrap: builds the Debian root filesystems the machines boot from;
# - util-linux: nsenter, which runs commands inside the machines (present on any Debian).
# No daemon to start: each machine is its own systemd-nspawn process. On hosts whose PID 1
# is not systemd the backend runs nspawn with --register=no --keep-unit by itself.
set -euo pipefail

log() { printf 'nspawn-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root (installing packages and running systemd-nspawn need it)"
    exit 1
fi

missing=()
command -v systemd-nspawn >/dev/null 2>&1 || missing+=(systemd-container)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v nsenter >/dev/null 2>&1 || missing+=(util-linux)

if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
fi

if [ -d /run/systemd/system ]; then
    route="systemd host: machines register with systemd-machined"
else
    route="PID 1 is not systemd: --register=no --keep-unit"
fi
log "ready: $(systemd-nspawn --version | head -n1) ($route)"
