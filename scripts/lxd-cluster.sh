#!/usr/bin/env bash
# A three-member LXD cluster on this host, to try a class on a cluster (docs/classroom.md).
#
#   scripts/lxd-cluster.sh up     # prints the variables that point guestlab at it: eval them
#   scripts/lxd-cluster.sh down   # removes the members, their bridge and nothing else
#   scripts/lxd-cluster.sh stop MEMBER | start MEMBER   # a member lost and back
#
# The members are system containers glc-1, glc-2, glc-3 on the host's LXD, made from
# guestlab's own image `debian-12-lxd` (LXD 5.0 from Debian packages already inside: the
# members sit on a bridge with no route out, so they could not reach an apt mirror), each
# running its own LXD. They are unprivileged (an id map of their own, large enough for the
# isolated id maps of the lab machines nested in them) with security.nesting=true. They
# reach each other, and the host reaches them, over the bridge `glc-br0` that this script
# creates on addresses of its own ($GLC_SUBNET, no NAT, no DHCP, no IPv6): nothing leaves
# the host. Each member has a storage pool called `guestlab` (btrfs when the member's root
# is on btrfs, else dir); guestlab's client certificate ($GLC_STATE/client.crt, made here
# when missing) is trusted by the cluster. Safe to run again: each step checks first.
set -euo pipefail

STATE=${GLC_STATE:-${GUESTLAB_HOME:-$HOME/.local/state/guestlab}/lxd-cluster}
SUBNET=${GLC_SUBNET:-10.231.7}       # the bridge's /24: host .1, members .11 .12 .13
BRIDGE=glc-br0
IMAGE=${GLC_IMAGE:-guestlab/debian-12-lxd}
HOST_POOL=${GLC_HOST_POOL:-}         # the host pool the members' roots go on
MEMBERS=(glc-1 glc-2 glc-3)
#: each member's own id range: 65536 for its system, the rest for the isolated ranges
#: (196608 ids each) of the lab machines nested in it: 84 machines
ID_RANGE=16777216
NESTED_IDS_FROM=65536
HERE=$(cd "$(dirname "$0")/.." && pwd)
#: guestlab's lock for creations on the host's LXD (orchestrator/backends/lxd/host.py):
#: LXD 5.0 can give two instances created at once an id range below root's, so a member is
#: never made while a lab machine is (a test suite runs both side by side)
LOCK_DIR=/run/lock
[ -d "$LOCK_DIR" ] && [ -w "$LOCK_DIR" ] || LOCK_DIR=${TMPDIR:-/tmp}
CREATE_LOCK=$LOCK_DIR/guestlab-lxd-create.lock
CGROUP_FIX=$HERE/orchestrator/library/labs/lxd-first-container/files/mount-cgroup-v1

log() { printf 'lxd-cluster: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }
address() { echo "$SUBNET.$((10 + ${1#glc-}))"; }
in_member() { local m=$1; shift; lxc exec "$m" -- "$@"; }

make_bridge() {
    if ! lxc network show "$BRIDGE" >/dev/null 2>&1; then
        log "bridge $BRIDGE on $SUBNET.1/24 (no NAT, no DHCP, no IPv6, nothing forwarded out)"
        # ipv4.routing stays on: with it off LXD rejects forwarded packets of the bridge,
        # and where br_netfilter is loaded (Docker loads it) that includes the packets
        # between two members; what leaves the bridge is dropped by the table below
        lxc network create "$BRIDGE" "ipv4.address=$SUBNET.1/24" ipv4.nat=false \
            ipv4.dhcp=false ipv6.address=none ipv6.nat=false >/dev/null
    fi
    # nothing between the bridge and any other interface, whatever other rules say
    nft list table inet glc >/dev/null 2>&1 || nft -f - <<EOF
table inet glc {
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname "$BRIDGE" oifname != "$BRIDGE" drop
        oifname "$BRIDGE" iifname != "$BRIDGE" drop
    }
}
EOF
    # Docker's FORWARD policy drops bridged packets (br_netfilter): let members talk
    if ! iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; then
        iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
    fi
}

unmake_bridge() {
    while iptables -D FORWARD -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT 2>/dev/null; do :; done
    nft delete table inet glc 2>/dev/null || true
    if lxc network show "$BRIDGE" >/dev/null 2>&1; then
        log "removing bridge $BRIDGE"
        lxc network delete "$BRIDGE"
    fi
    # LXD's own firewall table, made for the bridge and left empty without it
    if nft list table inet lxd >/dev/null 2>&1 && ! nft list table inet lxd | grep -q chain; then
        nft delete table inet lxd
    fi
}

forget_locks() {  # guestlab's host locks of this cluster (its certificate's fingerprint)
    local fp
    [ -s "$STATE/cluster.crt" ] || return 0
    fp=$(openssl x509 -in "$STATE/cluster.crt" -noout -fingerprint -sha256 \
        | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
    rm -f "$LOCK_DIR/guestlab-lxd-create-${fp:0:16}.lock" \
        "$LOCK_DIR"/guestlab-lxd-pool-*-"${fp:0:16}".lock
}

make_member() {
    local m=$1 pool
    if ! lxc info "$m" >/dev/null 2>&1; then
        pool=$HOST_POOL
        [ -n "$pool" ] || { lxc storage show guestlab >/dev/null 2>&1 && pool=guestlab; } || true
        log "member $m (${pool:-default pool}, $(address "$m"))"
        flock "$CREATE_LOCK" lxc init "$IMAGE" "$m" --no-profiles ${pool:+-s "$pool"} \
            -c security.nesting=true -c security.privileged=false \
            -c security.idmap.isolated=true -c "security.idmap.size=$ID_RANGE" \
            -c limits.processes=20000 -c user.glc.member=true >/dev/null 2>&1
        [ -n "$pool" ] || lxc config device add "$m" root disk path=/ pool=default >/dev/null
        lxc config device add "$m" eth0 nic nictype=bridged "parent=$BRIDGE" name=eth0 >/dev/null
    fi
    [ "$(lxc list "^$m\$" -c s --format csv)" = RUNNING ] || lxc start "$m" 2>&1 | grep -v "^$\|^Remapping" >&2 || true
}

configure_member() {
    local m=$1
    in_member "$m" sh -c 'until [ -S /run/dbus/system_bus_socket ]; do sleep 0.2; done
        timeout 60 systemctl is-system-running --wait >/dev/null 2>&1 || true'
    # its address, by a unit of its own (networkd would wait for a udev a container lacks)
    in_member "$m" sh -c "cat > /etc/systemd/system/glc-address.service" <<EOF
[Unit]
Description=glc: this member's address on $BRIDGE
# before LXD's socket, which starts early (sockets.target): no default dependencies,
# or the ordering cycle makes systemd drop this unit and LXD cannot bind its address
DefaultDependencies=no
Before=lxd.service lxd.socket sockets.target
[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/sbin/ip link set eth0 up
ExecStart=/sbin/ip addr replace $(address "$m")/24 dev eth0
[Install]
WantedBy=multi-user.target
EOF
    in_member "$m" sh -c "systemctl daemon-reload && systemctl enable --now glc-address 2>/dev/null
        systemctl mask systemd-networkd-wait-online.service >/dev/null 2>&1 || true"
    # nested LXD gives its containers ids from this member's own range
    in_member "$m" sh -c "echo root:$NESTED_IDS_FROM:$((ID_RANGE - NESTED_IDS_FROM)) > /etc/subuid
        cp /etc/subuid /etc/subgid"
    lxc file push "$CGROUP_FIX" "$m/usr/local/sbin/mount-cgroup-v1" --mode 0755 >/dev/null
    in_member "$m" sh -c 'mkdir -p /etc/systemd/system/lxd.service.d
        printf "[Service]\nExecStartPre=/usr/local/sbin/mount-cgroup-v1\n" \
            > /etc/systemd/system/lxd.service.d/glc.conf
        systemctl daemon-reload
        lxc info >/dev/null 2>&1 || systemctl restart lxd.service
        lxd waitready --timeout 60'
}

pool_driver() {  # btrfs where the member's /var/lib/lxd is on btrfs, else dir
    local fs
    fs=$(in_member glc-1 stat -f -c %T /var/lib/lxd)
    if [ "$fs" = btrfs ] && in_member glc-1 sh -c 'command -v btrfs || true' | grep -q btrfs; then
        echo btrfs
    else
        echo dir
    fi
}

pool_source() {  # a btrfs pool on a folder of the member's own btrfs file system
    [ "$1" = btrfs ] && echo /var/lib/lxd/storage-pools/guestlab || echo ""
}

clustered() { in_member "$1" lxc cluster list --format csv >/dev/null 2>&1; }

bootstrap() {
    local driver=$1 source
    clustered glc-1 && return
    source=$(pool_source "$driver")
    log "bootstrapping the cluster on glc-1 (storage pool guestlab: $driver)"
    in_member glc-1 lxd init --preseed <<EOF
config:
  core.https_address: $(address glc-1):8443
cluster:
  server_name: glc-1
  enabled: true
storage_pools:
- name: guestlab
  driver: $driver
  config: {${source:+source: $source}}
profiles:
- name: default
  devices:
    root: {path: /, pool: guestlab, type: disk}
EOF
}

join() {
    local m=$1 driver=$2 token source
    in_member glc-1 lxc cluster list --format csv | grep -q "^$m," && return
    source=$(pool_source "$driver")
    in_member glc-1 lxc cluster revoke-token "$m" >/dev/null 2>&1 || true
    token=$(in_member glc-1 lxc cluster add "$m" --quiet)
    log "joining $m"
    in_member "$m" lxd init --preseed <<EOF
cluster:
  enabled: true
  server_name: $m
  server_address: $(address "$m"):8443
  cluster_address: $(address glc-1):8443
  cluster_token: $token
  member_config:
  - {entity: storage-pool, name: guestlab, key: source, value: "$source"}
EOF
}

trust_client() {
    mkdir -p "$STATE"
    chmod 700 "$STATE"
    if [ ! -s "$STATE/client.key" ]; then
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes \
            -keyout "$STATE/client.key" -out "$STATE/client.crt" -days 3650 \
            -subj "/CN=guestlab-glc" >/dev/null 2>&1
    fi
    local fp
    fp=$(openssl x509 -in "$STATE/client.crt" -noout -fingerprint -sha256 \
        | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f')
    if ! in_member glc-1 lxc config trust list --format csv | grep -q "${fp:0:12}"; then
        lxc file push "$STATE/client.crt" glc-1/root/guestlab-client.crt >/dev/null
        in_member glc-1 lxc config trust add /root/guestlab-client.crt --name guestlab >/dev/null
    fi
    lxc file pull glc-1/var/lib/lxd/cluster.crt "$STATE/cluster.crt" >/dev/null
}

up() {
    command -v lxc >/dev/null || die "no lxc here: scripts/setup/lxd.sh installs LXD"
    lxc image show "$IMAGE" >/dev/null 2>&1 || die "no image $IMAGE in the host's LXD: \
build it with \`guestlab image build debian-12-lxd --backend lxd\` (scripts/setup.sh does)"
    local started driver m
    started=$(date +%s)
    make_bridge
    for m in "${MEMBERS[@]}"; do make_member "$m"; done
    for m in "${MEMBERS[@]}"; do configure_member "$m" & done
    wait
    driver=$(pool_driver)
    bootstrap "$driver"
    for m in glc-2 glc-3; do join "$m" "$driver"; done
    # a member whose heartbeat is 20 s late is offline to LXD: on a host whose cores a test
    # suite saturates, a member that was never stopped was seen offline (2026-12-02). Set
    # once clustered: in the bootstrap's preseed, LXD 5.0.2 dropped the connection on it
    in_member glc-1 lxc config set cluster.offline_threshold 40
    trust_client
    # each member's name and state, the last two fields (its roles may hold a comma)
    log "up in $(( $(date +%s) - started )) s: $(in_member glc-1 lxc cluster list --format csv \
        | awk -F, '{print $1 ":" $(NF-1)}' | paste -sd' ')"
    cat <<EOF
export GUESTLAB_LXD_ENDPOINT=https://$(address glc-1):8443
export GUESTLAB_LXD_CERT=$STATE/client.crt
export GUESTLAB_LXD_KEY=$STATE/client.key
export GUESTLAB_LXD_VERIFY=$STATE/cluster.crt
EOF
}

down() {
    local m
    for m in "${MEMBERS[@]}"; do
        if lxc info "$m" >/dev/null 2>&1; then
            [ "$(lxc config get "$m" user.glc.member)" = true ] \
                || die "$m exists but was not made by this script: left alone"
            log "removing member $m"
            lxc delete --force "$m"
        fi
    done
    unmake_bridge
    forget_locks
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    stop) lxc stop --force "glc-${2#glc-}" ;;
    start) lxc start "glc-${2#glc-}" ;;
    *) sed -n '2,6p' "$0" >&2; exit 2 ;;
esac
