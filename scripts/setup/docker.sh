#!/usr/bin/env bash
# Install and start the Docker engine (Debian's docker.io); idempotent.
set -euo pipefail
command -v dockerd >/dev/null || apt-get install -y -q docker.io
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
