#!/usr/bin/env bash
# Box networking through the real binary, side by side with the raw plane
# it is built on and with podman, in one run (issue: Networking; the raw
# planes alone are bench/net-raw.sh):
#
#   a3s          a3s-box run -d on the default network: -p ports (our splice
#                relay), host-gateway (pasta's gateway = the host's loopback)
#   tap-65520    the raw plane: a bare VM on a bridge with a TAP in a
#                namespace, the "host" ends inside it (no helper at all)
#   podman-slirp container->host through podman's user-mode network to the
#                host's loopback (slirp4netns:allow_host_loopback=true)
#   podman       podman run -p 127.0.0.1:H:C (rootful, netavark bridge);
#                host-gateway: its bridge's gateway
#   a3s-b2b      two boxes on one named network: box -> box
#   b2b          two bare VMs on one bridge (TAPs)
# Tests (iperf3, $SIZE per transfer, receiver-side MB/s):
#   port.in/out  host -> box / box -> host on a connection to the published port
#   gw.out/in    box -> host / host -> box on a connection to host-gateway
#   b2b.out/in   box A -> box B / B -> A
#   http         ab -n 1000 -c 4 through the published port: median ms
# and the start cost: `a3s-box run --rm ROOT true` on the default network
# against `--network none` (medians; the network's helper is up already,
# as after any earlier box within its grace period).
#
# Every service is on the host's loopback or inside namespaces made here;
# the EXIT trap removes the boxes, the bare VMs, the namespaces and the
# A3S_HOME it made (its networks' helpers go with it).
#
# usage: bench/network.sh [ROUNDS]     (default 3; root; make setup and
#                                       scripts/install-deps.sh --bench)
# env:   CPUS (default 1), MEMORY_MIB (512), SIZE (200M), START_ROUNDS (10),
#        VARIANTS (default "a3s tap-65520 podman podman-slirp a3s-b2b b2b"), A3S_BOX_BIN
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh
source bench/net-lib.sh

rounds="${1:-3}"
cpus="${CPUS:-1}"
MEMORY_MIB="${MEMORY_MIB:-512}"
size="${SIZE:-200M}"
start_rounds="${START_ROUNDS:-10}"
variants="${VARIANTS:-a3s tap-65520 podman podman-slirp a3s-b2b b2b}"
kernel=target/share/a3s-box/vmlinux

[[ $(id -u) == 0 ]] || { echo "network.sh: run as root (namespaces, TAPs, podman)" >&2; exit 1; }
box_assets network.sh
for tool in qemu-system-x86_64 iperf3 ab podman gcc python3 nsenter; do
    command -v "$tool" >/dev/null || { echo "network.sh: $tool missing: scripts/install-deps.sh --bench" >&2; exit 1; }
done

work="$(mktemp -d /tmp/a3s-bench-network.XXXXXX)"
chmod 0755 "$work"
GUEST="$work/guest"
results="$work/results"
export A3S_HOME="$work/home"
base=$((32000 + $$ % 1000 * 8))
P1=$base P2=$((base + 1)) P3=$((base + 2)) P4=$((base + 3))
tag="nw$$"
podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
    --runtime runc --cgroup-manager cgroupfs --events-backend none)
cleanup() {
    local ids
    ids="$("$bin" ps -aq --no-trunc 2>/dev/null || true)"
    [[ -z "$ids" ]] || "$bin" rm -f $ids >/dev/null 2>&1 || true
    net_cleanup
    "${podman[@]}" rm -a -f -t 0 >/dev/null 2>&1 || true
    "${podman[@]}" rmi -a -f >/dev/null 2>&1 || true
    if [[ -n "${RAW_OUT:-}" && -f "$results" ]]; then cp "$results" "$RAW_OUT"; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$GUEST" "$A3S_HOME"
cp "$kernel" "$GUEST/vmlinux"
net_build_guest "$GUEST"
gcc -O2 -pthread -Wall -o "$GUEST/net-helper" bench/net-helper.c
helper="$GUEST/net-helper"
root="$GUEST/root"  # busybox + iperf3: the boxes' root and the bare VMs'
touch "$results"
record() { echo "$1 $2 $3 $4" >>"$results"; }

box() { # NAME [FLAGS...] : a box serving iperf3 (5201) and HTTP (80)
    local name="$1"
    shift
    "$bin" run -d --name "$name" --cpus "$cpus" --memory "${MEMORY_MIB}m" "$@" --rootfs "$root" \
        -- sh -c 'iperf3 -s -D && httpd -p 80 -h /www && exec sleep 1000000' >/dev/null
}
box_ip() { "$bin" inspect "$1" | python3 -c "import json,sys; n=json.load(sys.stdin)[0]['NetworkSettings']['Networks']; print(n['$2']['IPAddress'])"; }
until_up() { # CMD...: retry for 60 s
    local i
    for i in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}
ab_p50() { # URL
    rm -f "$work/ab.csv"
    timeout 180 ab -q -n 1000 -c 4 -e "$work/ab.csv" "$1" >/dev/null 2>&1 || true
    awk -F, '$1 == 50 { print $2 }' "$work/ab.csv" 2>/dev/null | grep . || echo fail
}

run_a3s() {
    box web -p "127.0.0.1:$P1:5201" -p "127.0.0.1:$P3:80"
    until_up iperf3 -c 127.0.0.1 -p "$P1" -n 1K
    spawn "$work/iperf-gw.log" iperf3 -s -B 127.0.0.1 -p "$P4"
    record a3s "$cpus" port.in "$(timeout 180 iperf3 -c 127.0.0.1 -p "$P1" -n "$size" -J | mbps)"
    record a3s "$cpus" port.out "$(timeout 180 iperf3 -c 127.0.0.1 -p "$P1" -n "$size" -J -R | mbps)"
    record a3s "$cpus" gw.out "$(timeout 180 "$bin" exec web iperf3 -c 169.254.1.1 -p "$P4" -n "$size" -J | mbps)"
    record a3s "$cpus" gw.in "$(timeout 180 "$bin" exec web iperf3 -c 169.254.1.1 -p "$P4" -n "$size" -J -R | mbps)"
    record a3s "$cpus" http.p50ms "$(ab_p50 "http://127.0.0.1:$P3/")"
    stop_pid "${NET_PIDS[@]}"
    NET_PIDS=()
    "$bin" rm -f web >/dev/null
}

run_a3s_b2b() {
    "$bin" network create bench >/dev/null 2>&1 || true
    box a --network bench
    box b --network bench
    local ip
    ip="$(box_ip b bench)"
    until_up "$bin" exec a iperf3 -c "$ip" -n 1K
    record a3s-b2b "$cpus" b2b.out "$(timeout 180 "$bin" exec a iperf3 -c "$ip" -n "$size" -J | mbps)"
    record a3s-b2b "$cpus" b2b.in "$(timeout 180 "$bin" exec a iperf3 -c "$ip" -n "$size" -J -R | mbps)"
    "$bin" rm -f a b >/dev/null
}

run_tap() { # the raw plane (net-raw.sh's tap-65520)
    net_netns_add "$tag-n"
    bridge "ns:$tag-n" 65520
    tap_vm "ns:$tag-n" 1 "$cpus" 65520
    local ctx="ns:$tag-n"
    if wait_ready "$ctx" 10.89.0.2:7000 "$work"/vm-1.log; then
        spawn_in "$ctx" "$work/iperf-gw.log" iperf3 -s -B 10.89.0.1 -p "$P4"
        record tap-65520 "$cpus" port.in "$(cx "$ctx" timeout 180 iperf3 -c 10.89.0.2 -n "$size" -J | mbps)"
        record tap-65520 "$cpus" port.out "$(cx "$ctx" timeout 180 iperf3 -c 10.89.0.2 -n "$size" -J -R | mbps)"
        record tap-65520 "$cpus" gw.out "$(ctl "$ctx" 10.89.0.2:7000 "iperf3 -c 10.89.0.1 -p $P4 -n $size -J" | mbps)"
        record tap-65520 "$cpus" gw.in "$(ctl "$ctx" 10.89.0.2:7000 "iperf3 -c 10.89.0.1 -p $P4 -n $size -J -R" | mbps)"
        rm -f "$work/ab.csv"
        cx "$ctx" timeout 180 ab -q -n 1000 -c 4 -e "$work/ab.csv" http://10.89.0.2/ >/dev/null 2>&1 || true
        record tap-65520 "$cpus" http.p50ms "$(awk -F, '$1 == 50 { print $2 }' "$work/ab.csv" | grep . || echo fail)"
    else
        record tap-65520 "$cpus" ready fail
    fi
    down_raw
}

run_b2b() {
    net_netns_add "$tag-n"
    bridge "ns:$tag-n" 65520
    tap_vm "ns:$tag-n" 1 "$cpus" 65520
    tap_vm "ns:$tag-n" 2 "$cpus" 65520
    local ctx="ns:$tag-n"
    if wait_ready "$ctx" 10.89.0.2:7000 "$work"/vm-1.log && wait_ready "$ctx" 10.89.0.3:7000 "$work"/vm-2.log; then
        record b2b "$cpus" b2b.out "$(ctl "$ctx" 10.89.0.2:7000 "iperf3 -c 10.89.0.3 -n $size -J" | mbps)"
        record b2b "$cpus" b2b.in "$(ctl "$ctx" 10.89.0.2:7000 "iperf3 -c 10.89.0.3 -n $size -J -R" | mbps)"
    else
        record b2b "$cpus" ready fail
    fi
    down_raw
}

run_podman() {
    local h="$tag-h" gw
    net_netns_add "$h"
    cx "ns:$h" "${podman[@]}" run -d --name "$tag-ctr" \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -p "127.0.0.1:$P1:5201" -p "127.0.0.1:$P3:80" \
        localhost/a3s-bench-net:busybox /bin/serve >/dev/null
    gw="$(cx "ns:$h" "${podman[@]}" inspect -f '{{.NetworkSettings.Gateway}}' "$tag-ctr")"
    until_up cx "ns:$h" iperf3 -c 127.0.0.1 -p "$P1" -n 1K
    spawn_in "ns:$h" "$work/iperf-gw.log" iperf3 -s -B "$gw" -p "$P4"
    sleep 0.3
    record podman "$cpus" port.in "$(cx "ns:$h" timeout 180 iperf3 -c 127.0.0.1 -p "$P1" -n "$size" -J | mbps)"
    record podman "$cpus" port.out "$(cx "ns:$h" timeout 180 iperf3 -c 127.0.0.1 -p "$P1" -n "$size" -J -R | mbps)"
    record podman "$cpus" gw.out "$(cx "ns:$h" timeout 180 "${podman[@]}" exec "$tag-ctr" iperf3 -c "$gw" -p "$P4" -n "$size" -J | mbps)"
    record podman "$cpus" gw.in "$(cx "ns:$h" timeout 180 "${podman[@]}" exec "$tag-ctr" iperf3 -c "$gw" -p "$P4" -n "$size" -J -R | mbps)"
    rm -f "$work/ab.csv"
    cx "ns:$h" timeout 180 ab -q -n 1000 -c 4 -e "$work/ab.csv" "http://127.0.0.1:$P3/" >/dev/null 2>&1 || true
    record podman "$cpus" http.p50ms "$(awk -F, '$1 == 50 { print $2 }' "$work/ab.csv" | grep . || echo fail)"
    "${podman[@]}" rm -f -t 0 "$tag-ctr" >/dev/null 2>&1 || true
    down_raw
}

# podman's user-mode network to the host's loopback, as the issue names it
# for container->host: slirp4netns with allow_host_loopback (10.0.2.2 is
# the loopback of the namespace podman runs in, made here).
run_podman_slirp() {
    local h="$tag-hs"
    net_netns_add "$h"
    cx "ns:$h" ip link set lo up
    cx "ns:$h" "${podman[@]}" run -d --name "$tag-slirp" \
        --network slirp4netns:allow_host_loopback=true \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        localhost/a3s-bench-net:busybox /bin/serve >/dev/null
    spawn_in "ns:$h" "$work/iperf-slirp.log" iperf3 -s -B 127.0.0.1 -p "$P4"
    until_up cx "ns:$h" "${podman[@]}" exec "$tag-slirp" iperf3 -c 10.0.2.2 -p "$P4" -n 1K
    record podman-slirp "$cpus" gw.out "$(cx "ns:$h" timeout 180 "${podman[@]}" exec "$tag-slirp" iperf3 -c 10.0.2.2 -p "$P4" -n "$size" -J | mbps)"
    record podman-slirp "$cpus" gw.in "$(cx "ns:$h" timeout 180 "${podman[@]}" exec "$tag-slirp" iperf3 -c 10.0.2.2 -p "$P4" -n "$size" -J -R | mbps)"
    "${podman[@]}" rm -f -t 0 "$tag-slirp" >/dev/null 2>&1 || true
    down_raw
}

down_raw() {
    stop_pid "${NET_PIDS[@]}"
    NET_PIDS=()
    local ns
    for ns in "${NET_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NET_NETNS=()
    rm -f "$work"/vm-*.log
}

echo "network.sh: $("$bin" --version); $(qemu-system-x86_64 --version | head -1); rounds $rounds; $cpus vCPU; ${MEMORY_MIB} MiB; $size per transfer"
"$bin" info | grep -A1 '^Network:' | tr -s ' ' | paste -sd' '
if [[ " $variants " == *" podman"* ]]; then
    "${podman[@]}" import -q "$GUEST/rootfs.tar" localhost/a3s-bench-net:busybox >/dev/null
fi
for round in $(seq "$rounds"); do
    for v in $variants; do
        t0=$SECONDS
        case "$v" in
        a3s) run_a3s ;;
        a3s-b2b) run_a3s_b2b ;;
        tap-65520) run_tap ;;
        b2b) run_b2b ;;
        podman) run_podman ;;
        podman-slirp) run_podman_slirp ;;
        *) echo "network.sh: unknown variant $v" >&2; exit 1 ;;
        esac
        record "$v" "$cpus" elapsed $((SECONDS - t0))
    done
    echo "round $round done" >&2
done

# --- start: run --rm ROOT true, default network vs --network none
# (interleaved; one warm-up each so the default network's helper is up).
start() { # NETWORK -> seconds
    local t0 t1
    t0=$(date +%s%N)
    "$bin" run --rm --cpus 1 --memory 256m --network "$1" --rootfs "$rootfs" -- true
    t1=$(date +%s%N)
    awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }'
}
if ((start_rounds > 0)); then
    start default >/dev/null
    start none >/dev/null
    for round in $(seq "$start_rounds"); do
        record start-default 1 seconds "$(start default)"
        record start-none 1 seconds "$(start none)"
    done
fi

python3 - "$results" <<'EOF'
import statistics, sys
from collections import defaultdict
vals = defaultdict(list)
fails = defaultdict(int)
for line in open(sys.argv[1]):
    b, c, t, v = line.split()
    try:
        vals[(b, t)].append(float(v))
    except ValueError:
        fails[(b, t)] += 1
def med(b, t):
    v = vals.get((b, t))
    return statistics.median(v) if v else None
def cell(b, t, fmt="{:.0f}"):
    m = med(b, t)
    f = fails.get((b, t), 0)
    if m is None:
        return "fail" if f else "-"
    return fmt.format(m) + (f" ({f} failed)" if f else "")
tests = ["port.in", "port.out", "gw.out", "gw.in"]
print("\n| plane | port host→box | port box→host | gw box→host | gw host→box | http p50 ms |")
print("|---|---|---|---|---|---|")
for b in ["a3s", "tap-65520", "podman", "podman-slirp"]:
    if any((b, t) in vals for t in tests):
        print(f"| {b} | " + " | ".join(cell(b, t) for t in tests) + f" | {cell(b, 'http.p50ms', '{:.2f}')} |")
raw = {t: med("tap-65520", t) for t in tests}
if med("a3s", "port.in") and all(raw.values()):
    print("\na3s / raw: " + ", ".join(f"{t} {med('a3s', t) / raw[t]:.2f}" for t in tests if med("a3s", t)))
if med("a3s", "port.in") and med("podman", "port.in"):
    print("a3s / podman: " + ", ".join(f"{t} {med('a3s', t) / med('podman', t):.2f}" for t in tests if med("a3s", t) and med("podman", t))
          + f", http p50 {med('a3s', 'http.p50ms') / med('podman', 'http.p50ms'):.1f}x")
print("\n| box → box | A→B MB/s | B→A MB/s |\n|---|---|---|")
for b in ["a3s-b2b", "b2b"]:
    if (b, "b2b.out") in vals or (b, "b2b.in") in vals:
        print(f"| {b} | {cell(b, 'b2b.out')} | {cell(b, 'b2b.in')} |")
if med("a3s-b2b", "b2b.out") and med("b2b", "b2b.out"):
    print(f"a3s-b2b / b2b: {med('a3s-b2b', 'b2b.out') / med('b2b', 'b2b.out'):.2f}, {med('a3s-b2b', 'b2b.in') / med('b2b', 'b2b.in'):.2f}")
d, n = med("start-default", "seconds"), med("start-none", "seconds")
if d and n:
    print(f"\nrun --rm ROOT true: default network {d:.3f} s, --network none {n:.3f} s, ratio {d / n:.3f} "
          f"(medians of {len(vals[('start-default', 'seconds')])})")
for b in sorted({b for (b, t) in vals if t == "elapsed"}):
    print(f"elapsed {b}: {cell(b, 'elapsed')} s per round")
EOF
