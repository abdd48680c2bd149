#!/usr/bin/env bash
# Install and start the Docker engine (Debian's docker.io); idempotent.
set -euo pipefail
command -v dockerd >/dev/null || apt-get install -y -q docker.io

# A class runs one bridge network per lab and one systemd per machine: Docker's default
# address pools hold about 31 networks, and each systemd takes 7-8 inotify instances of
# the kernel's default 128. Raise both (the pools only where no daemon.json exists yet).
if [ ! -e /etc/docker/daemon.json ]; then
  mkdir -p /etc/docker
  cat >/etc/docker/daemon.json <<'JSON'
{"default-address-pools": [{"base": "10.201.0.0/16", "size": 24}]}
JSON
  restart_needed=yes
fi
mkdir -p /etc/sysctl.d
printf 'fs.inotify.max_user_instances = 8192\nfs.inotify.max_user_watches = 1048576\n' \
  >/etc/sysctl.d/60-guestlab.conf
sysctl -q -p /etc/sysctl.d/60-guestlab.conf || echo "setup: could not raise inotify limits" >&2
if [ "${restart_needed:-no}" = yes ] && docker info >/dev/null 2>&1; then
  echo "setup: /etc/docker/daemon.json written; restart the Docker engine to use its address pools" >&2
fi
if ! docker info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    systemctl start docker
  else
    # no systemd as PID 1 (containers, CI sandboxes): run the daemon by hand
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
fi
docker info >/dev/null 2>&1 || { echo "setup: the Docker engine did not start; see /var/log/dockerd.log" >&2; exit 1; }
echo "setup: Docker engine $(docker version --format '{{.Server.Version}}') is running"
