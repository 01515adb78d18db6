#!/usr/bin/env bash
# Exec throughput benchmark (issue 5). 100 MB (10^8 bytes) through stdout, in one
# run, side by side:
#   a3s-box    `a3s-box exec BOX sh -c 'head -c 100000000 /dev/zero'`, read from
#              its stdout on the host
#   bare       the limit: the same QEMU command line as that box (kernel, kernel
#              arguments, machine, vCPUs, memory, devices, socket chardev) but with
#              a trivial initramfs whose /init writes the bytes straight into the
#              virtio-serial port with `dd bs=1000000` (the port driver takes up to
#              32 KiB a write); the host reads the port's unix socket
#   a3s-dd     `a3s-box exec BOX sh -c 'dd if=/dev/zero bs=1000000 count=100'`:
#              the exec path with the large writes of the bare case below.
#   bare-head  the same bare VM running the box's command, `head -c 100000000
#              /dev/zero`, into the port: busybox head writes 4 KiB at a time, and
#              under TCG the cost per write dominates
# Each round boots a bare VM up to the point where it waits for the host (so both
# VMs are up during all measurements), then times the three in alternating order.
# Reports MB/s over the whole command (a3s-box: from starting the CLI to its exit;
# bare: from the host's go-ahead byte to the last byte) and over the stream alone
# (first byte to last byte), and the ratios of a3s-box to each bare transfer.
#
# usage: bench/exec-throughput.sh [ROUNDS]   (needs `make setup`; A3S_BOX_BIN
#                                             overrides target/release/a3s-box)
# env:   CPUS, MEMORY_MIB (default: a3s-box run's defaults)
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${1:-5}"
bytes=100000000
source bench/lib.sh
box_assets exec-throughput.sh
for tool in cpio python3; do
    command -v "$tool" >/dev/null || { echo "exec-throughput.sh: $tool missing: scripts/install-deps.sh" >&2; exit 1; }
done

work="$(mktemp -d /tmp/a3s-bench-exec-tp.XXXXXX)"
export A3S_HOME="$work/home"
trap '"$bin" rm -f bench-exec-tp >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# Read-only root: the box then has no writable-layer disk, which the bare VM
# (booted from a copy of the box's QEMU command line) could not open while
# the box holds it. The exec path measured is the same.
opts=(--rootfs "$rootfs" --read-only)
[[ -n "${CPUS:-}" ]] && opts+=(--cpus "$CPUS")
[[ -n "${MEMORY_MIB:-}" ]] && opts+=(--memory "${MEMORY_MIB}m")
"$bin" run -d --name bench-exec-tp "${opts[@]}" -- sh -c 'while :; do sleep 1; done' >/dev/null
vm_pid="$("$bin" inspect bench-exec-tp | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])')"

# The bare initramfs: Debian's static busybox and an /init that finds the port
# by name, says it is ready, waits for the host's go-ahead, writes, powers off.
port_name="$(tr '\0' '\n' < "/proc/$vm_pid/cmdline" | sed -n 's/^virtserialport,.*name=\([^,]*\).*/\1/p')"
[[ -n "$port_name" ]] || { echo "exec-throughput.sh: no virtserialport in the box's QEMU command line" >&2; exit 1; }
mkdir -p "$work/initramfs/bin" "$work/initramfs/dev" "$work/initramfs/sys" "$work/bare"
cp "$rootfs/bin/busybox" "$work/initramfs/bin/busybox"
ln -s busybox "$work/initramfs/bin/sh"
cat >"$work/initramfs/init" <<EOF
#!/bin/sh
export PATH=/bin
/bin/busybox --install -s /bin
mount -t devtmpfs dev /dev
mount -t sysfs sys /sys
port=""
for _ in \$(seq 1000); do
    for p in /sys/class/virtio-ports/*; do
        [ "\$(cat "\$p/name" 2>/dev/null)" = "$port_name" ] && port="/dev/\${p##*/}"
    done
    [ -n "\$port" ] && break
    sleep 0.01
done
exec 3<>"\$port"
printf R >&3
while :; do
    case "\$(head -c 1 <&3)" in
        h) head -c $bytes /dev/zero >&3 ;;
        d) dd if=/dev/zero bs=1000000 count=$((bytes / 1000000)) 2>/dev/null >&3 ;;
        *) reboot -f ;;
    esac
done
EOF
chmod +x "$work/initramfs/init"
(cd "$work/initramfs" && find . | cpio -o -H newc --quiet >"$work/bare.cpio")

# The bare VM's command line: the box's, with our initramfs and our own sockets and console.
tr '\0' '\n' < "/proc/$vm_pid/cmdline" | sed \
    -e "/^-initrd$/{n;s#.*#$work/bare.cpio#}" \
    -e "s#^socket,id=agent,path=[^,]*#socket,id=agent,path=$work/bare/agent.sock#" \
    -e "s#^unix:[^,]*qmp.sock#unix:$work/bare/qmp.sock#" \
    -e "s#^file:.*console.log#file:$work/bare/console.log#" >"$work/bare.args"
grep -q -- "$work/bare/agent.sock" "$work/bare.args" \
    || { echo "exec-throughput.sh: could not rewrite the box's QEMU command line" >&2; exit 1; }
echo "QEMU: $(tail -n +2 "$work/bare.args" | tr '\n' ' ' | grep -o -- '-accel [a-z]* .*-smp [0-9]*'); rounds: $rounds"

python3 - "$work" "$rounds" "$bytes" "$bin" <<'PY'
import atexit, socket, statistics, subprocess, sys, time
work, rounds, total, bin_ = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
qemu_args = open(f"{work}/bare.args").read().splitlines()
sock_path = f"{work}/bare/agent.sock"
CHUNK = 1 << 20
vms = []  # bare VMs started here: none may outlive the script
atexit.register(lambda: [vm.kill() for vm in vms if vm.poll() is None])

def drain(read):
    """Read `total` bytes (or to EOF); check they are zeros; return (t_first, t_last)."""
    got, first = 0, None
    while got < total:
        data = read(min(CHUNK, total - got))
        if not data:
            break
        if first is None:
            first = time.perf_counter()
        if data.count(0) != len(data):
            sys.exit("exec-throughput.sh: a non-zero byte came through")
        got += len(data)
    if got != total:
        sys.exit(f"exec-throughput.sh: {got} bytes came through, not {total}")
    return first, time.perf_counter()

def boot_bare():
    """Start the bare VM; return it with its socket once the guest waits for the go-ahead."""
    vm = subprocess.Popen(qemu_args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    vms.append(vm)
    deadline = time.monotonic() + 120
    while True:
        try:
            s = socket.socket(socket.AF_UNIX)
            s.connect(sock_path)
            break
        except OSError:
            s.close()
            if vm.poll() is not None or time.monotonic() > deadline:
                sys.exit("exec-throughput.sh: the bare VM did not start; console: " + console())
            time.sleep(0.01)
    s.settimeout(120)
    if s.recv(1) != b"R":
        sys.exit("exec-throughput.sh: the bare VM did not get ready; console: " + console())
    return vm, s

def console():
    try:
        return open(f"{work}/bare/console.log", errors="replace").read()[-2000:]
    except OSError:
        return "(none)"

def bare(s, how):
    """One transfer in the waiting bare VM: b"d" large writes, b"h" the same head command."""
    t0 = time.perf_counter()
    s.sendall(how)
    first, last = drain(s.recv)
    return last - t0, last - first

def ours(command=f"head -c {total} /dev/zero"):
    t0 = time.perf_counter()
    p = subprocess.Popen([bin_, "exec", "bench-exec-tp", "sh", "-c", command],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    first, last = drain(p.stdout.read1)
    if p.stdout.read(1) or p.wait() != 0:
        sys.exit("exec-throughput.sh: a3s-box exec wrote too much or failed")
    return time.perf_counter() - t0, last - first

def power_off(vm, s):
    s.sendall(b"q")
    s.close()
    try:
        vm.wait(timeout=60)
    except subprocess.TimeoutExpired:
        vm.kill(); vm.wait()

ours()  # warm-up
names = ["a3s-box", "a3s-dd", "bare", "bare-head"]
res = {name: [] for name in names}
dd = f"dd if=/dev/zero bs=1000000 count={total // 1000000} 2>/dev/null"
for r in range(rounds):
    vm, s = boot_bare()
    runs = {"a3s-box": ours, "a3s-dd": lambda: ours(dd),
            "bare": lambda: bare(s, b"d"), "bare-head": lambda: bare(s, b"h")}
    for name in (names if r % 2 == 0 else names[::-1]):
        res[name].append(runs[name]())
    power_off(vm, s)

mb = total / 1e6
med = {}
for name, runs in res.items():
    whole = [mb / w for w, _ in runs]
    stream = [mb / st for _, st in runs]
    med[name] = (statistics.median(whole), statistics.median(stream))
    fmt = lambda xs: " ".join(f"{x:.0f}" for x in xs)
    print(f"{name:9} MB/s whole command: median {med[name][0]:6.1f} [{fmt(whole)}]   "
          f"stream: median {med[name][1]:6.1f} [{fmt(stream)}]")
for ours_, ref in [("a3s-box", "bare-head"), ("a3s-dd", "bare")]:
    print(f"ratio {ours_} / {ref} (same writer): whole command {med[ours_][0] / med[ref][0]:.2f}, "
          f"stream {med[ours_][1] / med[ref][1]:.2f}")
PY
