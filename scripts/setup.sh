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

export DEBIAN_FRONTEND=noninteractive
echo "setup: installing packages"
step apt apt-get update -q
step base-packages apt-get install -y -q python3 python3-venv debootstrap
for part in docker lxd nspawn vagrant browser seat; do
  step "$part" bash "scripts/setup/$part.sh"
done

install_venv() {
  [ -x .venv/bin/python ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[test,lxd,vagrant]'
  # the message catalogs' .mo files, beside their .po (build output, not in git)
  .venv/bin/pybabel -q compile -d orchestrator/locale -D guestlab
  ln -sf "$PWD/.venv/bin/guestlab" /usr/local/bin/guestlab
}
echo "setup: installing guestlab into .venv"
step venv install_venv
# the Docker engine's seccomp profile is derived with guestlab's code, now installed
step docker-seccomp bash scripts/setup/docker.sh

echo "setup: the library's images, on every backend, side by side"
step images bash scripts/setup/images.sh
.venv/bin/guestlab doctor || true

if [ "$demo" = yes ]; then
  exec bash scripts/demo.sh
fi
