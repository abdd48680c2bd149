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

export DEBIAN_FRONTEND=noninteractive
echo "setup: installing packages"
apt-get update -q
apt-get install -y -q python3 python3-venv debootstrap
for part in scripts/setup/*.sh; do
  bash "$part"
done

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
echo "setup: installing guestlab into .venv"
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test,lxd,vagrant]'
ln -sf "$PWD/.venv/bin/guestlab" /usr/local/bin/guestlab

echo "setup: base image"
.venv/bin/guestlab image build debian-12-systemd --backend docker
.venv/bin/guestlab doctor || true

if [ "$demo" = yes ]; then
  exec bash scripts/demo.sh
fi
