#!/usr/bin/env bash
# Install, confine and start the Docker engine for guestlab (Debian's docker.io). Idempotent.
#
# - root in a lab machine must not be root on this host: the engine runs every container
#   in a user namespace (`userns-remap`) whose ids belong to the `dockremap` user, in a
#   range no other engine here uses;
# - every machine gets a bound on what it writes (`--storage-opt size=`): the engine keeps
#   its data on btrfs (a sparse loop file, $GUESTLAB_DOCKER_POOL_SIZE, 60G by default) whose
#   quotas enforce it; overlay2 on ext4 cannot;
# - lab networks reach nothing beyond their bridge; guestlab's firewall chain
#   (orchestrator/backends/firewall.py) keeps their bridges (glb...) from the host's services.
# Changing these settings restarts the engine; images are imported again afterwards by the
# set-up (a remapped engine has storage of its own).
set -euo pipefail
cd "$(dirname "$0")/../.."

log() { printf 'docker-setup: %s\n' "$*" >&2; }

POOL_FILE=${GUESTLAB_DOCKER_POOL_FILE:-/var/lib/guestlab/docker.btrfs}
DATA_ROOT=${GUESTLAB_DOCKER_ROOT:-/var/lib/guestlab/docker}
SIZE=${GUESTLAB_DOCKER_POOL_SIZE:-60G}
# 65536 ids from here belong to dockremap: above the ranges systemd-nspawn picks from
# (0x80000-0x6fffffff) and the one LXD isolates its containers in (root's, 0x70000000 up)
REMAP_START=${GUESTLAB_DOCKER_SUBID:-2080374784}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs)
command -v iptables >/dev/null || missing+=(iptables)
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt-get install -y -q "${missing[@]}"
fi

# the engine's storage: btrfs in a loop file, mounted again after a reboot
mkdir -p "$(dirname "$POOL_FILE")" "$DATA_ROOT"
if ! mountpoint -q "$DATA_ROOT"; then
  if [ ! -e "$POOL_FILE" ]; then
    log "making the engine's storage: btrfs in $POOL_FILE ($SIZE, sparse)"
    truncate -s "$SIZE" "$POOL_FILE"
    mkfs.btrfs -q "$POOL_FILE"
  fi
  mount -o loop "$POOL_FILE" "$DATA_ROOT"
fi
# quotas bound each machine's writes: simple quotas, which charge each write to the
# machine that made it (full accounting made every `docker commit` 10 s slower)
quota_mode=$(python3 -m orchestrator.backends.btrfs_quota simple "$DATA_ROOT")
if [ "$quota_mode" = qgroup ] && btrfs qgroup show "$DATA_ROOT" 2>&1 | grep -q inconsistent; then
  btrfs quota rescan -w "$DATA_ROOT" >/dev/null  # a kernel without simple quotas
fi

# the remapped root's ids
if ! getent passwd dockremap >/dev/null; then
  useradd --system --no-create-home --shell /usr/sbin/nologin dockremap
fi
for f in /etc/subuid /etc/subgid; do
  touch "$f"
  if ! grep -qx "dockremap:$REMAP_START:65536" "$f"; then
    sed -i '/^dockremap:/d' "$f"
    echo "dockremap:$REMAP_START:65536" >>"$f"
  fi
done

mkdir -p /etc/docker /etc/sysctl.d
changed=$(python3 - "$DATA_ROOT" <<'PY'
import json, pathlib, sys
path = pathlib.Path("/etc/docker/daemon.json")
conf = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
want = {
    # a class runs one bridge network per lab: Docker's default pools hold about 31
    "default-address-pools": conf.get("default-address-pools")
    or [{"base": "10.201.0.0/16", "size": 24}],
    "userns-remap": "dockremap",
    "data-root": sys.argv[1],
    "storage-driver": "btrfs",
}
new = {**conf, **want}
if new != conf:
    path.write_text(json.dumps(new, indent=2) + "\n")
    print("yes")
PY
)

# each systemd takes 7-8 inotify instances of the kernel's default 128
printf 'fs.inotify.max_user_instances = 8192\nfs.inotify.max_user_watches = 1048576\n' \
  >/etc/sysctl.d/60-guestlab.conf
sysctl -q -p /etc/sysctl.d/60-guestlab.conf || log "could not raise inotify limits"

start_engine() {
  if [ -d /run/systemd/system ]; then
    systemctl restart docker
  else
    # no systemd as PID 1 (containers, CI sandboxes): run the daemon by hand
    nohup dockerd >/var/log/dockerd.log 2>&1 &
  fi
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return 0; sleep 1; done
  return 1
}
running_as_wanted() {
  docker info --format '{{.Driver}} {{.DockerRootDir}} {{json .SecurityOptions}}' 2>/dev/null \
    | grep -q "^btrfs $DATA_ROOT/$REMAP_START.$REMAP_START .*name=userns"
}
if docker info >/dev/null 2>&1 && { [ -n "$changed" ] || ! running_as_wanted; }; then
  log "restarting the engine with user namespaces and its btrfs storage"
  if [ -d /run/systemd/system ]; then
    systemctl stop docker
  else
    pkill -x dockerd || true
    for _ in $(seq 60); do pgrep -x dockerd >/dev/null || break; sleep 0.5; done
  fi
fi
docker info >/dev/null 2>&1 || start_engine \
  || { log "the Docker engine did not start; see /var/log/dockerd.log"; exit 1; }
running_as_wanted || { log "the engine runs without user namespaces or btrfs storage"; exit 1; }

# the engine's default seccomp profile less btrfs's subvolume ioctls (a subvolume made in
# a machine would be outside its disk quota): taken from Debian's package of the same
# engine version, which ships the profile as data
make_seccomp_profile() {
  local version profile=/etc/guestlab/docker-seccomp.json tmp
  version=$(dpkg-query -W -f='${source:Version}' docker.io 2>/dev/null) || {
    log "not Debian's docker.io: no seccomp profile; a nested btrfs subvolume escapes the disk bound"
    return 0
  }
  if [ -f "$profile" ] && [ "$(cat "$profile.version" 2>/dev/null)" = "$version" ]; then
    return 0
  fi
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q "golang-github-docker-docker-dev=$version" >/dev/null)
  dpkg-deb --fsys-tarfile "$tmp"/golang-github-docker-docker-dev_*.deb \
    | tar -x -C "$tmp" --wildcards '*/profiles/seccomp/default.json'
  "$PYTHON" -c 'import sys; from orchestrator.backends.docker.seccomp import main; main(sys.argv[1:])' \
    "$(find "$tmp" -path '*/profiles/seccomp/default.json' | head -n1)" "$profile"
  echo "$version" >"$profile.version"
  rm -rf "$tmp"
  log "seccomp profile $profile (the engine's default, less btrfs's subvolume ioctls)"
}
PYTHON=${GUESTLAB_PYTHON:-.venv/bin/python}
if [ -x "$PYTHON" ]; then
  make_seccomp_profile
else
  log "no .venv yet: run scripts/setup.sh, which installs it first, for the seccomp profile"
fi

log "ready: Docker engine $(docker version --format '{{.Server.Version}}'), user namespaces, btrfs storage in $DATA_ROOT (quotas: $quota_mode)"
