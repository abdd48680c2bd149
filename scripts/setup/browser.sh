#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver for the dashboard's browser
# test (tests/integration/test_classroom_docker.py). Idempotent: installs only what is
# missing. Selenium itself comes from the Python `test` extra.
set -euo pipefail

log() { printf 'browser-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
    log "run me as root (apt-get needs it)"
    exit 1
fi

if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    log "ready: $(chromium --version 2>/dev/null), $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2)"
    exit 0
fi

log "installing chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium chromium-driver || { apt-get update -q && apt-get install -y -q chromium chromium-driver; }
log "ready: $(chromium --version 2>/dev/null)"
