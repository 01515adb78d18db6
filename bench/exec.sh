#!/usr/bin/env bash
# Exec latency benchmark (issue 5). Measures in one run, side by side:
#   a3s-box  `a3s-box exec BOX true` into a running box (busybox root directory)
#   podman   `podman exec CTR true` into a running container made from the same
#            directory (imported locally: no registry), with runc
# Each round runs both once through hyperfine, in alternating order, so drift in
# the machine's speed hits both alike. Prints both medians and the ratio
# a3s-box / podman. Target: <= 0.5.
#
# Podman here runs as `--runtime runc --cgroup-manager cgroupfs` (crun fails on
# these hosts' hybrid cgroup layout) with its own storage under a temporary
# directory, so the host's podman state is not touched.
#
# usage: bench/exec.sh [ROUNDS]   (needs `make setup` and scripts/install-deps.sh --bench;
#                                  A3S_BOX_BIN overrides target/release/a3s-box)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-20}"
source bench/lib.sh
box_assets exec.sh
for tool in hyperfine podman runc python3; do
    command -v "$tool" >/dev/null || { echo "exec.sh: $tool missing: scripts/install-deps.sh --bench" >&2; exit 1; }
done

work="$(mktemp -d /tmp/a3s-bench-exec.XXXXXX)"
export A3S_HOME="$work/home"
podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
        --runtime runc --cgroup-manager cgroupfs --events-backend none)
ctr="a3s-bench-exec-$$"
cleanup() {
    "$bin" rm -f bench-exec >/dev/null 2>&1 || true
    "${podman[@]}" rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
    "${podman[@]}" rmi -f localhost/a3s-bench-exec:busybox >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# The same busybox directory on both sides; both run an idle loop as PID 1's workload.
idle=(sh -c 'while :; do sleep 1; done')
tar -C "$rootfs" -cf "$work/rootfs.tar" .
"${podman[@]}" import -q "$work/rootfs.tar" localhost/a3s-bench-exec:busybox >/dev/null
"${podman[@]}" run -d --name "$ctr" --network none \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    localhost/a3s-bench-exec:busybox "${idle[@]}" >/dev/null
"$bin" run -d --name bench-exec --rootfs "$rootfs" -- "${idle[@]}" >/dev/null

ours="$bin exec bench-exec true"
theirs="${podman[*]} exec $ctr true"
for cmd in "$ours" "$theirs"; do  # both must work before anything is timed
    $cmd || { echo "exec.sh: '$cmd' failed" >&2; exit 1; }
done
vm_pid="$("$bin" inspect bench-exec | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])')"
echo "a3s-box box: $(tr '\0' ' ' < "/proc/$vm_pid/cmdline" | grep -o -- '-accel [a-z]* .*-smp [0-9]*')"
echo "podman $(podman --version | awk '{print $3}'), $(runc --version | head -1); rounds: $rounds"

hyperfine -N -w 2 -r 1 --style none -n a3s-box "$ours" -n podman "$theirs" >/dev/null  # warm-up
for r in $(seq 1 "$rounds"); do
    if (( r % 2 )); then
        order=(-n a3s-box "$ours" -n podman "$theirs")
    else
        order=(-n podman "$theirs" -n a3s-box "$ours")
    fi
    hyperfine -N -r 1 --style none --export-json "$work/round-$r.json" "${order[@]}" >/dev/null
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
ours, base, ratios = [], [], []
for r in range(1, rounds + 1):
    res = {x["command"]: x["mean"] for x in json.load(open(f"{work}/round-{r}.json"))["results"]}
    ours.append(res["a3s-box"]); base.append(res["podman"])
    ratios.append(res["a3s-box"] / res["podman"])
ms = lambda xs: " ".join(f"{x * 1000:.0f}" for x in xs)
print(f"a3s-box exec BOX true (ms): median {statistics.median(ours) * 1000:6.1f}   [{ms(ours)}]")
print(f"podman exec CTR true (ms):  median {statistics.median(base) * 1000:6.1f}   [{ms(base)}]")
print(f"ratio a3s-box / podman:     {statistics.median(ours) / statistics.median(base):.2f} of medians, "
      f"{statistics.median(ratios):.2f} median per round   (target <= 0.5)")
PY
