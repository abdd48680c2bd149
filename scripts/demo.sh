#!/usr/bin/env bash
# The default lab, end to end, as a student sees it: up, check (fails), solve, check
# (passes), down.
set -uo pipefail
cd "$(dirname "$0")/.."
gl=.venv/bin/guestlab
[ -x "$gl" ] || gl=guestlab
lab=machine-id-clone

step() { printf '\n\033[1m$ guestlab %s\033[0m\n' "$*"; "$gl" "$@"; }

step up "$lab" || exit $?
step exec "$lab" clone -- cat /etc/machine-id
step exec "$lab" template -- cat /etc/machine-id
step check "$lab"
[ $? -eq 1 ] || { echo "demo: the fresh lab should fail its checks" >&2; exit 1; }
step hint "$lab" unique-id
step solve "$lab"
step check "$lab" || { echo "demo: the solved lab should pass" >&2; exit 1; }
step down "$lab"
