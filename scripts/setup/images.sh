#!/usr/bin/env bash
# Build every image the scenario library uses, once, on every backend that uses it, before
# any lab or test asks: one job per backend (per box for VMs), side by side. A root file
# system shared by several backends is built by whichever job comes first (the others wait
# on its lock); each job first builds the images no other job needs (no one else can), then
# the shared ones from a different starting point than the others, so that their builds
# run at once.
# Run after the engines and .venv are set up (scripts/setup.sh calls it). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/../.."
GUESTLAB=.venv/bin/guestlab
export GUESTLAB_SCENARIOS=${GUESTLAB_SCENARIOS:-$PWD/scenarios}

pairs=$(.venv/bin/python -m orchestrator.images.needed)
backends=$(awk '{print $1}' <<<"$pairs" | sort -u)
mkdir -p .setup-logs
pids=() n=0
# how many backends need each image
users=$(awk '{print $2}' <<<"$pairs" | sort | uniq -c)
for backend in $backends; do
  mapfile -t own < <(awk -v b="$backend" '$1 == b {print $2}' <<<"$pairs" \
    | grep -Fxf <(awk '$1 == 1 {print $2}' <<<"$users") || true)
  mapfile -t shared < <(awk -v b="$backend" '$1 == b {print $2}' <<<"$pairs" \
    | grep -Fxf <(awk '$1 > 1 {print $2}' <<<"$users") || true)
  count=${#shared[@]}
  images=("${own[@]}")
  for i in $(seq 0 $((count - 1))); do
    images+=("${shared[$(( (i + n) % count ))]}")
  done
  # a VM box is built from its tree in a chroot, its disk and its upload (about 95 s
  # each, fresh): the boxes are built side by side, each its own job; a container engine
  # only imports (the trees are built ahead by the set-up's rootfs step)
  if [ "$backend" = vagrant ]; then
    runs=("${images[@]}")
  else
    runs=("${images[*]}")
  fi
  for job in "${runs[@]}"; do
    name=$backend
    [ "$backend" = vagrant ] && name="$backend-$job"
    (
      started=$(date +%s)
      for image in $job; do
        "$GUESTLAB" image build "$image" --backend "$backend"
      done
      echo "images: $backend ready ($job) in $(( $(date +%s) - started )) s"
    ) >".setup-logs/images-$name.log" 2>&1 &
    pids+=("$!:$name")
  done
  n=$((n + 1))
done
failed=()
for entry in "${pids[@]}"; do
  if wait "${entry%%:*}"; then
    tail -n1 ".setup-logs/images-${entry#*:}.log"
  else
    failed+=("${entry#*:}")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  for b in "${failed[@]}"; do
    echo "images: building for $b failed; its log:" >&2
    tail -n 30 ".setup-logs/images-$b.log" >&2
  done
  exit 1
fi
