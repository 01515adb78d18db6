#!/usr/bin/env bash
# Pull benchmark (issue 3). Cold pull + unpack of a >= 100 MB multi-layer image from a
# loopback docker-registry:
#   a3s-box   `a3s-box pull -q REF` into an empty A3S_HOME (download, verify, unpack)
#   baseline  `skopeo copy docker://REF oci:DIR` + `umoci unpack` of the same image
# Each round runs both once, fresh targets, in alternating order (hyperfine, one run
# per command per round), so machine noise hits both alike. Prints the medians and the
# median of the per-round ratios a3s-box / baseline. Target: <= 1.0.
#
# The image (built here with umoci from Debian binaries): busybox, four layers of 26 MiB
# random data each (incompressible, so ~104 MiB on the wire), and one layer of 2,000
# small files.
#
# usage: bench/pull.sh [ROUNDS]   (needs docker-registry umoci skopeo hyperfine python3;
#                                   A3S_BOX_BIN overrides target/release/a3s-box)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-7}"
bin="$(realpath "${A3S_BOX_BIN:-target/release/a3s-box}")"
[[ -x "$bin" ]] || { echo "pull.sh: $bin missing: run make release" >&2; exit 1; }
for tool in docker-registry umoci skopeo hyperfine python3; do
    command -v "$tool" >/dev/null || { echo "pull.sh: $tool missing: scripts/install-deps.sh --bench" >&2; exit 1; }
done

work="$(mktemp -d /tmp/a3s-bench-pull.XXXXXX)"
registry_pid=""
cleanup() {
    [[ -n "$registry_pid" ]] && kill "$registry_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# --- the image ---
echo "pull.sh: building the image (umoci)..." >&2
(
    cd "$work"
    umoci init --layout src
    umoci new --image src:big
    umoci config --image src:big --config.cmd /bin/sh --os linux --architecture amd64
    mkdir -p l/bin && cp /bin/busybox l/bin/busybox && ln -s busybox l/bin/sh
    umoci insert --image src:big l / && rm -rf l
    for i in 1 2 3 4; do
        mkdir -p "l/data/$i" && head -c $((26 * 1024 * 1024)) /dev/urandom >"l/data/$i/blob"
        umoci insert --image src:big l / && rm -rf l
    done
    for d in $(seq 1 40); do
        mkdir -p "l/usr/share/many/$d"
        for f in $(seq 1 50); do echo "file $d/$f" >"l/usr/share/many/$d/$f.txt"; done
    done
    umoci insert --image src:big l / && rm -rf l
) >/dev/null

# --- the registry ---
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
cat >"$work/registry.yml" <<EOF
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
EOF
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1',$port))" 2>/dev/null && break
    sleep 0.1
done
ref="127.0.0.1:$port/bench/big:1"
skopeo copy --quiet --dest-tls-verify=false "oci:$work/src:big" "docker://$ref"
wire="$(du -sb "$work/registry" | cut -f1)"
echo "pull.sh: image $ref, $((wire / 1024 / 1024)) MiB in the registry" >&2

# --- rounds ---
ours="env A3S_HOME=$work/ours $bin pull -q $ref"
base="sh -c 'mkdir -p $work/base && skopeo copy --quiet --src-tls-verify=false docker://$ref oci:$work/base/oci:img && umoci unpack --image $work/base/oci:img $work/base/bundle'"
reset_ours="rm -rf $work/ours"
reset_base="rm -rf $work/base"
for r in $(seq 1 "$rounds"); do
    # One --prepare per command, in the same order: each run starts from an empty target.
    if (( r % 2 )); then
        order=(--prepare "$reset_ours" --prepare "$reset_base" -n a3s-box -n baseline "$ours" "$base")
    else
        order=(--prepare "$reset_base" --prepare "$reset_ours" -n baseline -n a3s-box "$base" "$ours")
    fi
    hyperfine -N -r 1 --style none --export-json "$work/round-$r.json" "${order[@]}" >/dev/null
    # The target must be complete after each run: spot-check ours.
    [[ -f "$(ls -d "$work"/ours/images/rootfs/*/ | head -1)/data/4/blob" ]] || {
        echo "pull.sh: a3s-box left no unpacked image" >&2
        exit 1
    }
done

python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
ours, base, ratios = [], [], []
for r in range(1, rounds + 1):
    res = {x["command"]: x["mean"] for x in json.load(open(f"{work}/round-{r}.json"))["results"]}
    ours.append(res["a3s-box"]); base.append(res["baseline"])
    ratios.append(res["a3s-box"] / res["baseline"])
fmt = lambda xs: " ".join(f"{x:.2f}" for x in xs)
print(f"a3s-box pull (s):           median {statistics.median(ours):.3f}   [{fmt(ours)}]")
print(f"skopeo copy + umoci unpack: median {statistics.median(base):.3f}   [{fmt(base)}]")
print(f"ratio a3s-box / baseline:   median {statistics.median(ratios):.2f}   [{fmt(ratios)}]   (target <= 1.0)")
PY

# --- second run of a pulled image: host-side preparation until QEMU starts ---
# The CLI logs (at debug level, with time since its start) when QEMU has been
# spawned; everything before that is host preparation. Target: <= 50 ms.
rootfs_ref_home="$work/ours"
env A3S_HOME="$rootfs_ref_home" "$bin" run --rm --cpus 1 --memory 256m "$ref" /bin/sh -c true >/dev/null 2>&1 || true  # first run builds the root image
for i in $(seq 1 "$rounds"); do
    env A3S_HOME="$rootfs_ref_home" A3S_BOX_LOG=debug NO_COLOR=1 "$bin" run --rm --cpus 1 --memory 256m "$ref" /bin/sh -c true 2>&1 \
        | sed 's/\x1b\[[0-9;]*m//g' | awk '/QEMU started/ {print $1}' | tr -d 's'
done >"$work/prep.txt"
python3 - "$work/prep.txt" <<'PY'
import statistics, sys
ms = [float(x) * 1000 for x in open(sys.argv[1]).read().split()]
print(f"second run, host prep until QEMU starts: median {statistics.median(ms):.1f} ms "
      f"[{' '.join(f'{x:.1f}' for x in ms)}]   (target <= 50 ms)")
PY
