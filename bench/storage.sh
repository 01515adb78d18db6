#!/usr/bin/env bash
# Storage benchmark (issue: Storage). Inside one box, interleaved, n rounds:
#   read    cat a 100 MiB file (guest page cache dropped first)
#   create  1000 small files, then sync
#   rm      rm -rf of those files, then sync
# on three filesystems of the same VM:
#   disk  a raw virtio-blk ext4 disk, mounted directly (the limit); attached
#         by a QEMU wrapper that adds one -drive to the box's own command line
#   root  the box's root filesystem (overlay: EROFS image + ext4 writable layer)
#   bind  a host directory bind-mounted with -v (virtio-fs)
# Reports median seconds and ratios to the limit. Targets: root <= 1.3x,
# bind <= 5x for small files and <= 1.5x for the 100 MiB read.
#
# usage: bench/storage.sh [ROUNDS]     (default 15; needs `make setup`)
# env:   CPUS (default 2), MEMORY_MIB (default 512), A3S_BOX_BIN (default
#        target/release/a3s-box), A3S_BOX_VIRTIOFSD (the share's daemon;
#        bench/virtiofsd-c runs QEMU's C virtiofsd instead of a3s-box-fs),
#        BIND_ON_HOST_FS=1 (bind directory on $TMPDIR's filesystem, not a
#        fresh ext4), RAW_OUT (file to keep every round's figures in)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-15}"
if [[ -n "${A3S_BOX_VIRTIOFSD:-}" ]]; then
    A3S_BOX_VIRTIOFSD="$(realpath "$A3S_BOX_VIRTIOFSD")"
    export A3S_BOX_VIRTIOFSD
fi
cpus="${CPUS:-2}"
mem="${MEMORY_MIB:-512}"
share=target/share/a3s-box
bin="${A3S_BOX_BIN:-target/release/a3s-box}"
for need in "$bin" "$share/vmlinux" "$share/rootfs-busybox/bin/busybox"; do
    [[ -e "$need" ]] || { echo "storage.sh: $need missing: run make setup" >&2; exit 1; }
done

work="$(mktemp -d)"
trap 'umount "$work/bind" 2>/dev/null; rm -rf "$work"' EXIT
export A3S_HOME="$work/home"
cp -a "$share/rootfs-busybox" "$work/rootfs"
head -c $((100 << 20)) /dev/urandom > "$work/big"
cp "$work/big" "$work/rootfs/big"
mkdir -p "$work/bind" "$work/disk-src"
# The bind mount's host directory gets a fresh ext4 of its own, as the limit
# disk does. On a host filesystem that has seen many deletions, ext4 spends
# most of a create skipping recently deleted inodes (measured with perf:
# recently_deleted + find_inode_bit took 60% of the daemon's CPU here), which
# is the host's state, not virtio-fs. BIND_ON_HOST_FS=1 keeps it on $TMPDIR.
if [[ "${BIND_ON_HOST_FS:-0}" != 1 ]]; then
    mkfs.ext4 -q -F "$work/bind.img" 1G >/dev/null
    mount -o loop "$work/bind.img" "$work/bind" || echo "storage.sh: cannot loop-mount" \
        "a fresh ext4 (needs root); the bind directory stays on $work's filesystem" >&2
fi
cp "$work/big" "$work/bind/big"
cp "$work/big" "$work/disk-src/big"
mkfs.ext4 -q -F -d "$work/disk-src" "$work/disk.img" 1G >/dev/null

# The same QEMU command line a3s-box builds, plus the limit's disk.
real_qemu="$(command -v qemu-system-x86_64)"
cat > "$work/qemu" <<EOF
#!/bin/sh
exec "$real_qemu" "\$@" -drive id=bench,file=$work/disk.img,format=raw,if=none \
    -device virtio-blk-device,drive=bench,serial=a3s-bench
EOF
chmod +x "$work/qemu"

cat > "$work/rootfs/bench.sh" <<'EOF'
#!/bin/sh
# Runs in the box: $1 rounds. Prints "op target seconds" lines.
set -e
for b in /sys/block/*; do
    [ "$(cat "$b/serial" 2>/dev/null)" = a3s-bench ] && dev="$b"
done
mknod /dev/bench b "$(cut -d: -f1 "$dev/dev")" "$(cut -d: -f2 "$dev/dev")"
mkdir -p /disk && mount -t ext4 /dev/bench /disk
mkdir -p /rootdir
now() { cut -d' ' -f1 /proc/uptime; }
span() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
for round in $(seq "$1"); do
    for t in disk root bind; do
        case $t in disk) dir=/disk; big=/disk/big;; root) dir=/rootdir; big=/big;; bind) dir=/bind; big=/bind/big;; esac
        sync; echo 3 > /proc/sys/vm/drop_caches
        a=$(now); cat "$big" > /dev/null; b=$(now); echo "read $t $(span "$a" "$b")"
        mkdir "$dir/files"
        a=$(now); i=0; while [ $i -lt 1000 ]; do echo "$i" > "$dir/files/f$i"; i=$((i+1)); done; sync; b=$(now)
        echo "create $t $(span "$a" "$b")"
        a=$(now); rm -rf "$dir/files"; sync; b=$(now); echo "rm $t $(span "$a" "$b")"
    done
done
EOF
chmod +x "$work/rootfs/bench.sh"

echo "storage.sh: $rounds rounds, $cpus vCPUs, ${mem} MiB, $($bin info --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)["accelerator"]["accel"])')" >&2
A3S_BOX_QEMU="$work/qemu" "$bin" run --name bench --cpus "$cpus" --memory "${mem}m" \
    --rootfs "$work/rootfs" -v "$work/bind:/bind" -- /bench.sh "$rounds" > "$work/out"
"$bin" rm -f bench > /dev/null
[[ -n "${RAW_OUT:-}" ]] && cp "$work/out" "$RAW_OUT"   # every round's figures

python3 - "$work/out" <<'EOF'
import statistics, sys
times = {}
for line in open(sys.argv[1]):
    op, target, secs = line.split()
    times.setdefault((op, target), []).append(float(secs))
limits = {"root": {"read": 1.3, "create": 1.3, "rm": 1.3}, "bind": {"read": 1.5, "create": 5.0, "rm": 5.0}}
print(f"{'op':<8}{'disk (limit)':>14}{'root':>10}{'ratio':>8}{'bind':>10}{'ratio':>8}   (median s)")
ok = True
for op in ("read", "create", "rm"):
    d = statistics.median(times[(op, "disk")])
    row = f"{op:<8}{d:>14.2f}"
    for t in ("root", "bind"):
        m = statistics.median(times[(op, t)])
        ratio = m / d if d > 0 else float("inf")
        mark = "" if ratio <= limits[t][op] else "!"
        ok &= mark == ""
        row += f"{m:>10.2f}{ratio:>7.2f}{mark or ' '}"
    print(row)
print("targets: root <= 1.3x; bind <= 1.5x read, <= 5x create/rm", "(all met)" if ok else "(! = missed)")
EOF
