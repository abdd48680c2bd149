#!/usr/bin/env bash
# Set up a Debian 12 / Ubuntu host for guestlab, as root: engines, a virtualenv with
# guestlab in .venv, and the base image. Safe to run again. With --demo, then run the
# default lab end to end as a student would.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "setup: run as root (sudo $0)" >&2; exit 2; }

demo=no
for arg in "$@"; do
  case "$arg" in
    --demo) demo=yes ;;
    -h|--help) sed -n '2,4p' "$0"; exit 0 ;;
    *) echo "setup: unknown option $arg" >&2; exit 2 ;;
  esac
done

# each step says how long it took, so that a slow one is seen the day it grows
step() {
  local name=$1 started
  shift
  started=$(date +%s)
  "$@"
  echo "setup: step $name took $(( $(date +%s) - started )) s"
}

install_venv() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,lxd,vagrant]'
  # the message catalogs' .mo files, beside their .po (build output, not in git)
  .venv/bin/pybabel -q compile -d orchestrator/locale -D guestlab
  ln -sf "$PWD/.venv/bin/guestlab" /usr/local/bin/guestlab
}

export DEBIAN_FRONTEND=noninteractive
echo "setup: installing packages"
step apt apt-get update -q
step base-packages apt-get install -y -q python3 python3-venv debootstrap
# first: the root file systems below and Docker's seccomp profile use guestlab's code
echo "setup: installing guestlab into .venv"
step venv install_venv

# The library's root file systems need only debootstrap and a mirror: they are built while
# the engines' packages go in (half of a fresh set-up's images step was these builds).
mkdir -p .setup-logs
rootfs_started=$(date +%s)
GUESTLAB_SCENARIOS=$PWD/scenarios .venv/bin/python -m orchestrator.images.prebuild \
  >.setup-logs/rootfs.log 2>&1 &
rootfs_pid=$!
# a step that fails leaves no build behind: the set-up ends when the builds have
trap 'if kill -0 "$rootfs_pid" 2>/dev/null; then
  echo "setup: waiting for the root file systems being built (.setup-logs/rootfs.log)" >&2
  wait "$rootfs_pid" || true; fi' EXIT
wait_rootfs() {
  local status=0
  wait "$rootfs_pid" || status=$?
  cat .setup-logs/rootfs.log
  echo "setup: root file systems built in $(( $(date +%s) - rootfs_started )) s from their start"
  # a failed one is built again by the images step, which then says why
  [ "$status" = 0 ] || echo "setup: some root file systems failed; the images step tries again" >&2
}

for part in docker lxd nspawn vagrant browser seat; do
  step "$part" bash "scripts/setup/$part.sh"
done
step rootfs wait_rootfs

echo "setup: the library's images, on every backend, side by side"
step images bash scripts/setup/images.sh
.venv/bin/guestlab doctor || true

if [ "$demo" = yes ]; then
  exec bash scripts/demo.sh
fi
