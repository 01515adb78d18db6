#!/usr/bin/env bash
# Lifecycle benchmark (issue: box lifecycle). Reports, side by side:
#   run -d   wall time of `a3s-box run -d ... -- sleep 600` until it returns
#            (the workload is running then)
#   stop     wall time of `a3s-box stop -t 0` on such a box
#   rm       wall time of `a3s-box rm` of a stopped box
#   memory   RSS of shim + QEMU of an idle box against the RSS of the same
#            VM (same QEMU command line) started by hand; QEMU's RSS counts
#            only guest RAM pages the guest touched. Target: <= 15 MiB above.
#
# usage: bench/lifecycle.sh [RUNS]     (needs `make setup` and hyperfine)
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-5}"
bin=target/release/a3s-box
rootfs=target/share/a3s-box/rootfs-busybox
for need in "$bin" target/release/a3s-box-shim "$rootfs/bin/busybox"; do
    [[ -e "$need" ]] || { echo "lifecycle.sh: $need missing: run make setup" >&2; exit 1; }
done
command -v hyperfine >/dev/null || { echo "lifecycle.sh: hyperfine missing: scripts/install-deps.sh --bench" >&2; exit 1; }

work="$(mktemp -d /tmp/a3s-bench.XXXXXX)"
export A3S_HOME="$work/home"
cleanup() { "$bin" rm -f $("$bin" ps -aq 2>/dev/null) >/dev/null 2>&1 || true; pkill -f "$work/byhand" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
opts=(--cpus 1 --memory 256m --rootfs "$rootfs")

hyperfine -N -w 1 -r "$runs" --export-json "$work/run.json" \
    --cleanup "sh -c '$bin rm -f \$($bin ps -aq) >/dev/null'" \
    -n "run -d" "$bin run -d ${opts[*]} -- sleep 600"
hyperfine -N -r "$runs" --export-json "$work/stop.json" \
    --prepare "sh -c '$bin rm -f \$($bin ps -aq) >/dev/null 2>&1; $bin run -d --name b ${opts[*]} -- sleep 600 >/dev/null'" \
    -n "stop" "$bin stop -t 0 b"
hyperfine -N -r "$runs" --export-json "$work/rm.json" \
    --prepare "sh -c '$bin rm -f \$($bin ps -aq) >/dev/null 2>&1; $bin run -d --name b ${opts[*]} -- true >/dev/null; $bin wait b >/dev/null'" \
    -n "rm" "$bin rm b"
"$bin" rm -f $("$bin" ps -aq) >/dev/null 2>&1 || true

# Memory: an idle box against the same QEMU command line by hand.
id="$("$bin" run -d --name idle "${opts[@]}" -- sleep 600)"
sleep 3
vm_pid="$("$bin" inspect idle | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])')"
shim_pid="$("$bin" inspect idle | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["A3s"]["ShimPid"])')"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
box_kib=$(( $(rss "$vm_pid") + $(rss "$shim_pid") ))
shim_kib=$(rss "$shim_pid")
# Same command line, new sockets, started by hand; guest-init waits for a host.
mkdir -p "$work/byhand"
# Its own copy of the box's writable layer (QEMU locks the box's) and its own
# sockets.
cp --sparse=always "$A3S_HOME/boxes/${id:0:12}/rw.img" "$work/byhand/rw.img"
tr '\0' '\n' < "/proc/$vm_pid/cmdline" | tail -n +2 \
    | sed "s#path=[^,]*agent.sock#path=$work/byhand/agent.sock#; s#file:[^ ]*console.log#file:$work/byhand/console.log#; s#unix:[^,]*qmp.sock#unix:$work/byhand/qmp.sock#; s#file=[^,]*rw.img#file=$work/byhand/rw.img#" \
    > "$work/byhand/args"
mapfile -t args < "$work/byhand/args"
qemu-system-x86_64 "${args[@]}" >/dev/null 2>&1 &
hand=$!
sleep 3
# Let the hand-started guest boot as far as it can (it waits for a host).
python3 - "$work/byhand/agent.sock" <<'PY' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); time.sleep(8)
PY
sleep 5
hand_kib=$(rss "$hand")
kill "$hand" 2>/dev/null || true
"$bin" rm -f idle >/dev/null

python3 - "$work" "$box_kib" "$hand_kib" "$shim_kib" <<'PY'
import json, statistics, sys
work, box, hand, shim = sys.argv[1], *map(int, sys.argv[2:])
for name in ["run", "stop", "rm"]:
    t = json.load(open(f"{work}/{name}.json"))["results"][0]["times"]
    print(f"{name:7} median {statistics.median(t)*1000:7.1f} ms  min {min(t)*1000:7.1f} ms  (n={len(t)})")
print(f"memory: box (shim + QEMU) {box/1024:.1f} MiB, of which shim {shim/1024:.1f} MiB; "
      f"same VM by hand {hand/1024:.1f} MiB; overhead {(box-hand)/1024:.1f} MiB (target <= 15)")
PY
