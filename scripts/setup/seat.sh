#!/usr/bin/env bash
# The student's seat: the browser terminal's xterm.js (npm, pinned by the lockfile in
# orchestrator/web/, installed there and never committed), the stock OpenSSH client and
# sshpass the SSH door's tests use, and busybox-static for the grader's trusted probes.
set -euo pipefail
cd "$(dirname "$0")/../.."
log() { echo "seat: $*"; }
missing=()
for pkg in openssh-client sshpass busybox-static; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# a host may have Node.js from elsewhere, whose npm conflicts with Debian's: ask for the commands
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get install -y -q "${missing[@]}" || { apt-get update -q && apt-get install -y -q "${missing[@]}"; }
fi
log "xterm.js from the lockfile"
(cd orchestrator/web && npm ci --no-audit --no-fund --ignore-scripts --silent)
