# Shared by bench/net-raw.sh (sourced from the repository root): the bare
# benchmark VM, process and namespace bookkeeping, and the measurements.
# Every process is started in its own session and recorded; every namespace
# is recorded; net_cleanup (the EXIT trap) ends and removes them by id.

NET_KARGS="console=ttyS0 quiet panic=-1 reboot=t tsc=reliable no_timer_check 8250.nr_uarts=1 random.trust_cpu=on noapictimer noreplace-smp"
NET_PIDS=()    # session leaders started by spawn
NET_NETNS=()   # named network namespaces made by net_netns_add
NET_UID=65534  # the unprivileged user of the rootless variants

# net_build_guest DIR: DIR/initrd.cpio (busybox-static, iperf3 and its
# libraries, /init from net-guest-init.sh) and DIR/rootfs.tar (the same tree
# for podman, started with /bin/serve).
net_build_guest() {
    local dir="$1" root="$1/root" lib
    mkdir -p "$root"/{bin,proc,sys,dev,tmp,www}
    cp /bin/busybox "$root/bin/busybox"
    for a in $(/bin/busybox --list); do
        [[ "$a" == busybox ]] || ln -sf busybox "$root/bin/$a"
    done
    cp /usr/bin/iperf3 "$root/bin/iperf3"
    for lib in $(ldd /usr/bin/iperf3 | grep -o '/[^ ]*'); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    cp bench/net-guest-init.sh "$root/init"
    printf '#!/bin/sh\nread -r line\neval "$line" 2>&1\n' >"$root/bin/ctl"
    printf '#!/bin/sh\necho "NET-DHCP $1 ip=$ip mask=$mask router=$router dns=$dns mtu=$mtu"\n' >"$root/bin/dhcp-print"
    printf '#!/bin/sh\niperf3 -s -D\nhttpd -p 80 -h /www\nexec nc -ll -p 7000 -e /bin/ctl\n' >"$root/bin/serve"
    chmod 0755 "$root/init" "$root/bin/ctl" "$root/bin/dhcp-print" "$root/bin/serve"
    head -c 100 /dev/zero | tr '\0' x >"$root/www/index.html"
    (cd "$root" && find . | cpio -o -H newc --quiet >"$dir/initrd.cpio")
    tar -C "$root" --exclude ./init -cf "$dir/rootfs.tar" .
    chmod -R a+rX "$dir"
}

# spawn LOG CMD...: start CMD in a session of its own, output to LOG; the
# pid (= process group) lands in $REPLY and in NET_PIDS.
spawn() {
    local log="$1"
    shift
    setsid "$@" >"$log" 2>&1 </dev/null &
    REPLY=$!
    NET_PIDS+=("$REPLY")
}

# stop_pid PID...: end those sessions (TERM, then KILL after 2 s).
stop_pid() {
    local pid i
    for pid in "$@"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    for pid in "$@"; do
        for i in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
        kill -KILL -- "-$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

net_netns_add() {
    ip netns add "$1"
    NET_NETNS+=("$1")
    ip netns exec "$1" ip link set lo up
}

net_cleanup() {
    local pid ns
    for pid in "${NET_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
    for pid in "${NET_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    for ns in "${NET_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}

# cx CTX CMD...: run CMD where CTX says: host | ns:NAME (a named netns) |
# user:PID (the rootless user+net namespaces of PID, as root inside them).
# cx_prefix CTX puts the words that do so in the array CXP.
cx_prefix() {
    case "$1" in
    host) CXP=() ;;
    ns:*) CXP=(nsenter --net="/run/netns/${1#ns:}" --) ;;  # not ip netns exec: it hides /sys/fs/cgroup
    user:*) CXP=(setpriv --reuid="$NET_UID" --regid="$NET_UID" --clear-groups --
        nsenter --preserve-credentials -t "${1#user:}" -U -n --) ;;
    esac
}
cx() {
    cx_prefix "$1"
    shift
    "${CXP[@]}" "$@"
}

# spawn_in CTX LOG CMD...: spawn CMD in CTX.
spawn_in() {
    local log="$2"
    cx_prefix "$1"
    shift 2
    spawn "$log" "${CXP[@]}" "$@"
}

# ctl CTX IP:PORT LINE: run LINE in the guest through its control port and
# print its output (gives up after $CTL_TIMEOUT s, default 180).
ctl() {
    cx "$1" timeout "${CTL_TIMEOUT:-180}" bash -c 'exec 3<>"/dev/tcp/${0%:*}/${0#*:}" || exit 1
        echo "$1" >&3; cat <&3' "$2" "$3" 2>/dev/null || true
}

# wait_ready CTX IP:PORT [VMLOG...]: until each VM's console says NET-READY
# and the control port answers (60 s). A connection made before the guest is
# up can hang for good behind passt (no SYN retry towards a guest it has not
# heard from yet), hence the console first and short probes.
wait_ready() {
    local ctx="$1" addr="$2" i log
    shift 2
    for log in "$@"; do
        [[ -e "$log" ]] || continue
        for i in $(seq 600); do
            grep -q NET-READY "$log" && break
            sleep 0.1
        done
    done
    for i in $(seq 60); do
        [[ "$(CTL_TIMEOUT=3 ctl "$ctx" "$addr" 'echo ok')" == ok ]] && return 0
        sleep 0.2
    done
    return 1
}

# mbps: receiver-side MB/s (and seconds) from an iperf3 -J report on stdin.
mbps() {
    python3 -c '
import json, sys
try:
    e = json.load(sys.stdin)["end"]["sum_received"]
    print("%.1f" % (e["bytes"] / e["seconds"] / 1e6))
except Exception:
    print("fail")'
}

# qemu_argv CPUS APPEND: the bare VM (same machine line as a3s-box) into the
# array QEMU; the caller adds the network arguments.
qemu_argv() {
    QEMU=(qemu-system-x86_64 -M microvm,x-option-roms=off,isa-serial=on,acpi=off
        -accel tcg -cpu max,-erms,-fsrm -m "${MEMORY_MIB}M" -smp "$1"
        -nodefaults -no-user-config -nographic -no-reboot -serial "file:$VMLOG"
        -kernel "$GUEST/vmlinux" -initrd "$GUEST/initrd.cpio"
        -append "$NET_KARGS $2")
}

# The virtio-net offloads (all on by default; QEMU offers them when the
# backend carries a vnet header, i.e. TAP with vnet_hdr=on).
NOOFF=csum=off,guest_csum=off,gso=off,guest_tso4=off,guest_tso6=off,guest_ecn=off,guest_ufo=off,host_tso4=off,host_tso6=off,host_ecn=off,host_ufo=off

# VM plumbing shared by the scripts; they set $work (scratch directory,
# world-readable), $helper (built bench/net-helper.c) and $GUEST.
vmlog() { VMLOG="$work/vm-$1.log"; : >"$VMLOG"; chmod 0666 "$VMLOG"; }
dev() { echo "virtio-net-device,netdev=n0,mac=02:00:00:00:00:0$1${2:+,$2}"; }

# bridge CTX [MTU] [ADDR/PFX]: br0 (default 10.89.0.1/24) in that namespace,
# forwarding on. A bridge takes the smallest MTU of its ports: its TAPs are
# given the bridge's.
bridge() {
    cx "$1" ip link add br0 mtu "${2:-1500}" type bridge
    cx "$1" ip addr add "${3:-10.89.0.1/24}" dev br0
    cx "$1" ip link set br0 up
    cx "$1" sysctl -qw net.ipv4.ip_forward=1
}

# tap_vm CTX N CPUS MTU [DEVICE-OPTIONS]: VM number N at $NET_PFX.(N+1)
# (NET_PFX default 10.89.0; gateway $NET_PFX.1) on br0 in CTX, its TAP
# (tapN) made by the helper and handed over as fd 3. QEMU 7.2 reads the
# vnet header setting off the fd (vnet_hdr= is refused together with fd=).
tap_vm() {
    local ctx="$1" n="$2" pfx="${NET_PFX:-10.89.0}"
    vmlog "$n"
    qemu_argv "$3" "net_ip=$pfx.$((n + 1))/24 net_gw=$pfx.1 net_mtu=$4 net_mode=serve"
    spawn_in "$ctx" "$work/qemu-$n.log" "$helper" tap "tap$n" br0 "$4" 3 -- \
        "${QEMU[@]}" -netdev tap,id=n0,fd=3 -device "$(dev "$n" "${5:-}")"
}

# tap_vm_rootless HOLDER N CPUS MTU: as tap_vm, the way a rootless supervisor
# would do it: the TAP is made inside HOLDER's user+net namespaces and passed
# over a unix socket to QEMU, which runs as $NET_UID outside them.
tap_vm_rootless() {
    local holder="$1" n="$2" pfx="${NET_PFX:-10.89.0}" sock="$work/run/tap$2.sock" i
    mkdir -p "$work/run" && chmod 1777 "$work/run"
    vmlog "$n"
    qemu_argv "$3" "net_ip=$pfx.$((n + 1))/24 net_gw=$pfx.1 net_mtu=$4 net_mode=serve"
    spawn "$work/qemu-$n.log" setpriv --reuid="$NET_UID" --regid="$NET_UID" --clear-groups -- \
        "$helper" tap-recv "$sock" 3 -- "${QEMU[@]}" -netdev tap,id=n0,fd=3 -device "$(dev "$n")"
    for i in $(seq 500); do [[ -S "$sock" ]] && break; sleep 0.01; done
    cx "user:$holder" "$helper" tap-send "$sock" "tap$n" br0 "$4"
}
