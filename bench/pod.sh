#!/usr/bin/env bash
# Pod benchmark (issue: one engine). Measures in one run, side by side:
#   first   `a3s-box run -d --pod P ... -- sleep 600` on a pod that is not
#           running: the pod's VM boots, then the container joins it
#   second  the same command while the pod runs: the container joins the
#           running VM (its root loop-mounted from the image share, its
#           layer a directory on the pod's disk), no boot
# Each round stops the pod and removes its containers first, then times
# the two commands one after the other; both return once the workload
# runs. Reports medians and second/first (target <= 0.15).
#
# usage: bench/pod.sh [RUNS]      (needs `make setup`)
# env:   A3S_BOX_BIN (default target/release/a3s-box), CPUS (default 2),
#        MEMORY (default 512m)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
box_assets pod.sh

runs="${1:-10}"
work="$(mktemp -d /tmp/a3s-bench.XXXXXX)"
export A3S_HOME="$work/home"
cleanup() { "$bin" pod rm -f bench >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

"$bin" pod create --name bench --cpus "${CPUS:-2}" --memory "${MEMORY:-512m}" >/dev/null
run_in_pod() { "$bin" run -d --pod bench --rootfs "$rootfs" -- sleep 600 >/dev/null; }
now() { date +%s%N; }
reset() {
    "$bin" pod stop -t 0 bench >/dev/null
    local ids
    ids="$("$bin" ps -aq --filter pod=bench)"
    [[ -z "$ids" ]] || "$bin" rm -f $ids >/dev/null
}

# Warm-up: the root image is built into the cache once.
run_in_pod
run_in_pod
: > "$work/times"
for round in $(seq "$runs"); do
    reset
    t0=$(now); run_in_pod; t1=$(now); run_in_pod; t2=$(now)
    echo "$(( t1 - t0 )) $(( t2 - t1 ))" >> "$work/times"
done

python3 - "$work/times" <<'PY'
import statistics, sys
rows = [tuple(int(x) / 1e9 for x in line.split()) for line in open(sys.argv[1])]
first = [r[0] for r in rows]
second = [r[1] for r in rows]
for name, v in (("first", first), ("second", second)):
    print(f"{name:6}: median {statistics.median(v):.3f} s  min {min(v):.3f}  max {max(v):.3f}  (n={len(v)})")
print(f"second / first = {statistics.median(second) / statistics.median(first):.2f}   (target <= 0.15)")
PY
