#!/usr/bin/env bash
# `class up` and `class check` of N students (default 9 and 30) of machine-id-clone on the
# three-member cluster of scripts/lxd-cluster.sh against the host's single LXD, in one run;
# then, on the cluster, the time from a member's loss to a complete gradebook of the
# others. Prints one line per figure. Needs the cluster up (its variables in the
# environment: eval "$(scripts/lxd-cluster.sh up)") and the host's LXD.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SIZES=${SIZES:-9 30}
scenario=machine-id-clone
cluster_env=$(env | grep '^GUESTLAB_LXD_' | sed 's/^/export /')
[ -n "$cluster_env" ] || { echo "eval \"\$(scripts/lxd-cluster.sh up)\" first" >&2; exit 2; }
home=$(mktemp -d)
export GUESTLAB_HOME=$home/home GUESTLAB_IMAGES=${GUESTLAB_IMAGES:-$HOME/.local/state/guestlab/images}

timed() {  # LABEL CMD...: run, print "LABEL seconds"
    local label=$1 started
    shift
    started=$(date +%s.%N)
    "$@" >"$home/last.log" 2>&1 || { echo "$label failed: $(tail -3 "$home/last.log")" >&2; }
    printf '%s %.1f\n' "$label" "$(echo "$(date +%s.%N) - $started" | bc)"
}

run_class() {  # WHERE N
    local where=$1 n=$2 roster=$home/roster-$2.csv
    { echo "id,name,email"; for i in $(seq 1 "$n"); do echo "b$i,Bench $i,"; done; } >"$roster"
    timed "$where up $n" $PY -m orchestrator.cli class up $scenario --roster "$roster" \
        --backend lxd --parallel 8
    timed "$where check $n" $PY -m orchestrator.cli class check $scenario --format json
}

for n in $SIZES; do
    (unset GUESTLAB_LXD_ENDPOINT GUESTLAB_LXD_CERT GUESTLAB_LXD_KEY GUESTLAB_LXD_VERIFY
     run_class single "$n"
     timed "single down $n" $PY -m orchestrator.cli class down $scenario)
    run_class cluster "$n"
    if [ "$n" = "$(echo "$SIZES" | awk '{print $NF}')" ]; then
        scripts/lxd-cluster.sh stop glc-2 >/dev/null
        timed "cluster member-lost-to-gradebook $n" $PY -m orchestrator.cli class check \
            $scenario --format json
        scripts/lxd-cluster.sh start glc-2 >/dev/null
        until lxc exec glc-1 -- lxc cluster list -f csv | grep -q '^glc-2,.*ONLINE'; do sleep 1; done
    fi
    timed "cluster down $n" $PY -m orchestrator.cli class down $scenario
done
rm -rf "$home"
