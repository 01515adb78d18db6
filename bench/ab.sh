#!/usr/bin/env bash
# A/B benchmark of two builds of a3s-box, side by side in one run: the
# pre-change build ("old", a checkout of an earlier commit built with
# `make setup`) against this tree ("new"). Each build boots its own assets
# (guest-init and the protocol change between versions). For every figure the
# rounds interleave old and new, so drift in a shared machine hits both alike.
#
#   boot     a3s-box run --rm --rootfs R -- /bin/true        (bench/boot.sh's "box")
#   exec     a3s-box exec BOX true into a running box          (bench/exec.sh)
#   run -d   until the workload runs; stop -t 0                (bench/lifecycle.sh)
#   rm       rm of an exited box (a copy of one real exited box per sample)
#
# The new side runs with NEW_OPTS (default `--network none`: the old build
# had no network, so the engine is compared with the engine; the network's
# own cost is bench/network.sh's). Prints each median and new/old. The engine issue's target: no figure worse
# than 5 % (new/old <= 1.05).
#
# usage: bench/ab.sh OLD_TREE [ROUNDS]      (FIGURES="boot exec" to measure only some)
#   e.g. git worktree add /tmp/a3s-old <commit> && make -C /tmp/a3s-old setup
#        bench/ab.sh /tmp/a3s-old 15
# env:   CPUS       vCPUs of every box (default 1)
#        EXEC_RUNS, RM_RUNS  samples per round of the short figures (default 10)
#        OLD_KERNEL the guest kernel the old side boots (default: its own).
#                   OLD_KERNEL=target/share/a3s-box/vmlinux boots both sides on
#                   this tree's kernel: the engine against the engine.
set -euo pipefail
cd "$(dirname "$0")/.."

old_tree="$(realpath "${1:?usage: bench/ab.sh OLD_TREE [ROUNDS]}")"
rounds="${2:-15}"
command -v hyperfine >/dev/null || { echo "ab.sh: hyperfine missing: scripts/install-deps.sh --bench" >&2; exit 1; }
for tree in "$old_tree" "$PWD"; do
    for need in target/release/a3s-box target/release/a3s-box-shim target/share/a3s-box/initramfs.cpio \
        target/share/a3s-box/vmlinux target/share/a3s-box/rootfs-busybox/bin/busybox; do
        [[ -e "$tree/$need" ]] || { echo "ab.sh: $tree/$need missing: make setup there" >&2; exit 1; }
    done
done

work="$(mktemp -d /tmp/a3s-bench-ab.XXXXXX)"
rootfs="$PWD/target/share/a3s-box/rootfs-busybox"
opts="--cpus ${CPUS:-1} --memory 256m --rootfs $rootfs"
new_opts="$opts ${NEW_OPTS---network none}"
# The old side's assets: its own, or a copy with OLD_KERNEL.
old_assets="$old_tree/target/share/a3s-box"
if [[ -n "${OLD_KERNEL:-}" ]]; then
    cp -a "$old_assets" "$work/old-assets"
    cp "$(realpath "$OLD_KERNEL")" "$work/old-assets/vmlinux"
    old_assets="$work/old-assets"
fi
# side_env SIDE: the side's binary with its own home and assets.
side_env() {
    local side="$1" assets="$old_assets"
    [[ "$side" == new ]] && assets="$PWD/target/share/a3s-box"
    echo "A3S_HOME=$work/$side A3S_BOX_ASSETS=$assets $work/$side/bin/a3s-box"
}
# Each side runs fresh copies of its binaries: a binary just written by the linker
# starts ~10 % slower than a copy of it (its page cache is in small pieces), which
# would favour whichever tree was built longer ago.
for side in old new; do
    tree="$old_tree"
    [[ "$side" == new ]] && tree="$PWD"
    mkdir -p "$work/$side/bin"
    for bin in a3s-box a3s-box-shim a3s-box-fs a3s-box-netd; do
        [[ -e "$tree/target/release/$bin" ]] && cp "$tree/target/release/$bin" "$work/$side/bin/"
    done
done
old="$(side_env old)"
new="$(side_env new)"
cleanup() {
    for side in old new; do
        sh -c "$(side_env $side) rm -f \$($(side_env $side) ps -aq 2>/dev/null) >/dev/null 2>&1" || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

figures="${FIGURES:-boot exec run-d stop rm}"
wanted() { [[ " $figures " == *" $1 "* ]]; }
measure() { # NAME PREPARE_OLD PREPARE_NEW CMD_OLD CMD_NEW [RUNS_PER_ROUND]
    local name="$1" runs="${6:-1}" i
    wanted "$name" || return 0
    for i in $(seq "$rounds"); do
        hyperfine -N -r "$runs" --style none --export-json "$work/$name-$i.json" \
            --prepare "$2" -n old "$4" --prepare "$3" -n new "$5" >/dev/null
    done
}

# boot
measure boot "true" "true" "sh -c '$old run --rm $opts -- /bin/true'" "sh -c '$new run --rm $new_opts -- /bin/true'"
# exec into one running box per side
if wanted exec; then
    sh -c "$old run -d --name ab-exec $opts -- sleep 3600" >/dev/null
    sh -c "$new run -d --name ab-exec $new_opts -- sleep 3600" >/dev/null
fi
# exec needs no preparation and is short (~20 ms): EXEC_RUNS per round, for a steadier median.
measure exec "true" "true" "sh -c '$old exec ab-exec true'" "sh -c '$new exec ab-exec true'" "${EXEC_RUNS:-10}"
sh -c "$old rm -f ab-exec; $new rm -f ab-exec" >/dev/null 2>&1 || true
# run -d, stop, rm
clean() { echo "sh -c '$1 rm -f \$($1 ps -aq) >/dev/null 2>&1; true'"; }
measure run-d "$(clean "$old")" "$(clean "$new")" \
    "sh -c '$old run -d $opts -- sleep 600'" "sh -c '$new run -d $new_opts -- sleep 600'"
prep_stop() { echo "sh -c '$1 rm -f \$($1 ps -aq) >/dev/null 2>&1; $1 run -d --name b $2 -- sleep 600 >/dev/null'"; }
measure stop "$(prep_stop "$old" "$opts")" "$(prep_stop "$new" "$new_opts")" "sh -c '$old stop -t 0 b'" "sh -c '$new stop -t 0 b'"
# rm of an exited box. Each side makes one real exited box (its supervisor and QEMU
# given a moment to wind down after `wait`) and keeps a copy of its directory; every
# timed `rm` removes a fresh copy of it (restored and synced in --prepare), so rm is
# timed on its own, RM_RUNS times per round, without a boot per sample. Run through
# `env` rather than `sh -c`: a shell's start would dilute the ratio.
if wanted rm; then
    for side in old new; do
        cmd="$(side_env $side)" side_opts="$opts"
        [[ "$side" == new ]] && side_opts="$new_opts"
        sh -c "$cmd rm -f \$($cmd ps -aq) >/dev/null 2>&1; $cmd run -d --name b $side_opts -- true >/dev/null; $cmd wait b >/dev/null"
        sleep 0.5
        id="$(sh -c "$cmd ps -aq")"
        cp -a --sparse=always "$work/$side/boxes/$id" "$work/$side-rm-box"
        echo "$id" >"$work/$side-rm-id"
    done
fi
restore() { # SIDE: the side's exited box back in its store
    local dir="$work/$1/boxes"
    echo "sh -c 'rm -rf $dir/$(cat "$work/$1-rm-id") $dir/.rm-*; cp -a --sparse=always $work/$1-rm-box $dir/$(cat "$work/$1-rm-id"); sync -f $dir'"
}
if wanted rm; then
    measure rm "$(restore old)" "$(restore new)" "env $old rm b" "env $new rm b" "${RM_RUNS:-10}"
fi

python3 - "$work" <<'PY'
import glob, json, os, statistics, sys
work = sys.argv[1]
print(f"{'figure':<8} {'old (s)':>9} {'new (s)':>9} {'new/old':>8}")
for name in ["boot", "exec", "run-d", "stop", "rm"]:
    t = {"old": [], "new": []}
    if not glob.glob(os.path.join(work, f"{name}-*.json")):
        continue
    for path in glob.glob(os.path.join(work, f"{name}-*.json")):
        for r in json.load(open(path))["results"]:
            t[r["command"]].extend(r["times"])
    o, n = statistics.median(t["old"]), statistics.median(t["new"])
    print(f"{name:<8} {o:>9.4f} {n:>9.4f} {n / o:>8.3f}")
PY
