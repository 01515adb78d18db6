#!/usr/bin/env bash
# Boot benchmark (issue: MicroVM core). Measures in one run, side by side:
#   box   a3s-box run --rm --rootfs R -- /bin/true          (the product)
#   bare  QEMU booting our kernel with a trivial init that reboots at once
#         (the limit: same machine type, vCPUs, memory, accelerator)
#   stock the same bare boot with Debian's cloud kernel (linux-image-cloud-amd64)
# and reports median ratios box/bare (target <= 1.25) and bare/stock
# (target <= 0.5).
#
# usage: bench/boot.sh [RUNS]      (needs `make setup` and hyperfine)
# env:   CPUS (default 2), MEMORY_MIB (default 512), ACCEL (default: a3s-box's choice)
#        BOX_OPTS more `run` flags for the box, e.g. "--network none" to leave out the
#                 default network's attach (~65 ms under TCG) when comparing with a build
#                 that had no network
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-10}"
cpus="${CPUS:-2}"
mem="${MEMORY_MIB:-512}"
share=target/share/a3s-box
bin=target/release/a3s-box
rootfs="$share/rootfs-busybox"
stock_kernel="$(ls /boot/vmlinuz-*cloud-amd64 2>/dev/null | sort -V | tail -1 || true)"
for need in "$bin" "$share/vmlinux" "$rootfs/bin/busybox"; do
    [[ -e "$need" ]] || { echo "boot.sh: $need missing: run make setup" >&2; exit 1; }
done
[[ -n "$stock_kernel" ]] || { echo "boot.sh: no cloud kernel: scripts/install-deps.sh --bench" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "boot.sh: hyperfine missing: scripts/install-deps.sh --bench" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
gcc -O2 -static -o "$work/init" bench/trivial-init.c
(cd "$work" && echo init | cpio -o -H newc --quiet > trivial.cpio)

info="$("$bin" info --format json)"
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])$1)" "$info"; }
accel="${ACCEL:-$(field '["accelerator"]["accel"]')}"
# The bare VM gets the CPU and command line a3s-box gives its own.
cpu="$(field '["cpu"]')"; [[ "$accel" == kvm ]] && cpu=host
qemu="qemu-system-x86_64 -M microvm,x-option-roms=off,isa-serial=on,acpi=off -accel $accel -cpu $cpu \
 -m ${mem}M -smp $cpus -nodefaults -no-user-config -nographic -no-reboot -serial null -initrd $work/trivial.cpio"
# The stock kernel gets the minimal command line.
ours_args="$(field '["kernel_args"]')"

echo "accelerator: $accel, vCPUs: $cpus, memory: ${mem} MiB, runs: $runs"
echo "kernel args (ours): $ours_args"
export A3S_HOME="$work/home"
# Rounds interleave the three commands so that drift in the machine's speed
# (shared hosts) hits all of them alike; each round is one hyperfine call.
box="$bin run --rm --accel $accel --cpus $cpus --memory ${mem}m --rootfs $rootfs ${BOX_OPTS:-} -- /bin/true"
bare="$qemu -kernel $share/vmlinux -append '$ours_args'"
stock="$qemu -kernel $stock_kernel -append 'console=ttyS0 quiet panic=-1 reboot=t'"
hyperfine -N -r 1 --style none -n box "$box" -n bare "$bare" -n stock "$stock" >/dev/null  # warm-up
for round in $(seq "$runs"); do
    hyperfine -N -r 1 --style none --export-json "$work/round-$round.json" \
        -n box "$box" -n bare "$bare" -n stock "$stock" >/dev/null
done

python3 - "$work"/round-*.json <<'PY'
import json, statistics, sys
times = {}
for path in sys.argv[1:]:
    for r in json.load(open(path))["results"]:
        times.setdefault(r["command"], []).extend(r["times"])
med = {k: statistics.median(v) for k, v in times.items()}
for k, v in times.items():
    print(f"{k:5}: median {med[k]:.3f} s  min {min(v):.3f}  max {max(v):.3f}  (n={len(v)})")
print(f"box / bare   = {med['box'] / med['bare']:.2f}   (target <= 1.25)")
print(f"bare / stock = {med['bare'] / med['stock']:.2f}   (target <= 0.50)")
PY
