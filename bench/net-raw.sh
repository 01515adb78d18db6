#!/usr/bin/env bash
# Network data planes for a box, measured on bare VMs (issue: Networking).
# No a3s-box binary: our guest kernel, a tiny busybox initramfs
# (bench/net-guest-init.sh) and QEMU, with each backend wired by hand:
#
#   slirp          -netdev user, hostfwd ports; 10.0.2.2 is the host's loopback
#   passt          passt over -netdev stream (socketpair: passt --fd), -t ports,
#                  gateway mapped to the host's loopback; guest MTU 65520
#   passt-1500     the same, guest MTU 1500
#   tap            TAP (vnet_hdr, fd handed to QEMU) on a bridge in a netns;
#                  the "host" is that netns (raw: no helper in the path)
#   tap-65520      the same with bridge and guest MTU 65520
#   tap-nooff      the same (MTU 1500) with csum/gso/tso off on the virtio-net device
#   tap-veth       root: bridge netns uplinked by veth + masquerade to a
#                  host netns (made here, standing for the host); ports and
#                  host-gateway by nft DNAT (route_localnet), all in-kernel
#   tap-veth-proxy the same with ports by bench/net-helper.c's splice proxy
#   tap-pasta      rootless (uid 65534): unshare --user --net holds the
#                  bridge; pasta is the uplink (its gateway = host loopback);
#                  ports by the splice proxy joining the user+net namespaces;
#                  the TAP passed out to QEMU running outside them (as a
#                  rootless supervisor would); bridge and guest MTU 65520
#   tap-pasta-1500 the same with bridge and guest MTU 1500
#   tap-pasta-fwd  as tap-pasta, ports by pasta -t + nft DNAT in the netns
#   b2b            box -> box: two VMs on one bridge (TAPs), and b2b-nooff
#   podman-bridge  podman run -p 127.0.0.1:H:C (rootful, netavark bridge)
#   podman-slirp   podman --network slirp4netns:allow_host_loopback=true -p
#                  (the rootless default: slirp4netns + rootlessport)
# Tests per backend, iperf3 200 MB, receiver-side MB/s:
#   port.in  host -> box through the published port
#   port.out box -> host through the published port's connection (-R)
#   gw.out   box -> host: the box connects to host-gateway (a host loopback
#            service)
#   gw.in    host -> box on that connection (-R)
#   http     ab -n 1000 -c 4 through the published port: median ms
# and the start cost: a VM that configures eth0 and powers off, per backend,
# against the same VM without a NIC.
#
# All traffic stays on loopback or inside namespaces made here; the EXIT trap
# ends every process and removes every namespace (TAPs go with them).
#
# usage: bench/net-raw.sh [ROUNDS]     (default 5; root; needs `make kernel`
#                                       and scripts/install-deps.sh --bench)
# env:   CPUS_LIST (default "1 2"), MEMORY_MIB (512), SIZE (iperf3 -n, 200M),
#        BACKENDS (space-separated subset, default all), START_ROUNDS
#        (default ROUNDS; 0 skips the start-cost part), RAW_OUT (keep every
#        figure), PORT_BASE (default 31000 + pid % 1000 * 8)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/net-lib.sh

rounds="${1:-5}"
cpus_list="${CPUS_LIST:-1 2}"
MEMORY_MIB="${MEMORY_MIB:-512}"
size="${SIZE:-200M}"
start_rounds="${START_ROUNDS:-$rounds}"
all_backends="slirp passt passt-1500 tap tap-65520 tap-nooff tap-veth tap-veth-proxy tap-pasta tap-pasta-1500 tap-pasta-fwd b2b b2b-nooff podman-bridge podman-slirp"
backends="${BACKENDS:-$all_backends}"
kernel=target/share/a3s-box/vmlinux

[[ $(id -u) == 0 ]] || { echo "net-raw.sh: run as root (namespaces, TAPs, podman)" >&2; exit 1; }
[[ -e "$kernel" ]] || { echo "net-raw.sh: $kernel missing: run make kernel" >&2; exit 1; }
for tool in qemu-system-x86_64 passt pasta iperf3 ab nft podman slirp4netns gcc python3 setpriv nsenter; do
    command -v "$tool" >/dev/null || { echo "net-raw.sh: $tool missing: scripts/install-deps.sh --bench" >&2; exit 1; }
done

work="$(mktemp -d /tmp/a3s-bench-net.XXXXXX)"
chmod 0755 "$work"
GUEST="$work/guest"
results="$work/results"
base="${PORT_BASE:-$((31000 + $$ % 1000 * 8))}"
P1=$base P2=$((base + 1)) P3=$((base + 2)) P4=$((base + 3))
tag="nb$$"
podman=(podman --root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
    --runtime runc --cgroup-manager cgroupfs --events-backend none)
cleanup() {
    net_cleanup
    "${podman[@]}" rm -a -f -t 0 >/dev/null 2>&1 || true
    "${podman[@]}" rmi -a -f >/dev/null 2>&1 || true
    if [[ -n "${RAW_OUT:-}" && -f "$results" ]]; then cp "$results" "$RAW_OUT"; fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$GUEST"
cp "$kernel" "$GUEST/vmlinux"
net_build_guest "$GUEST"
gcc -O2 -pthread -Wall -o "$GUEST/net-helper" bench/net-helper.c
helper="$GUEST/net-helper"
touch "$results"

# --- backends: each sets HCTX (where the host side runs), PORT, CTLA, HTTP
# (published addresses as seen there), GWSRV (host-gateway service address
# there) and GWDST (the same service as the guest reaches it), and starts the
# VM(s). Everything they start or make is ended by down().

up_slirp() {
    vmlog a
    qemu_argv "$1" "net_ip=10.0.2.15/24 net_gw=10.0.2.2 net_mode=serve"
    spawn "$work/qemu.log" "${QEMU[@]}" -netdev "user,id=n0,net=10.0.2.0/24,host=10.0.2.2,\
hostfwd=tcp:127.0.0.1:$P1-:5201,hostfwd=tcp:127.0.0.1:$P2-:7000,hostfwd=tcp:127.0.0.1:$P3-:80" \
        -device "$(dev 1)"
    HCTX=host PORT=127.0.0.1:$P1 CTLA=127.0.0.1:$P2 HTTP=127.0.0.1:$P3
    GWSRV=127.0.0.1:$P4 GWDST=10.0.2.2:$P4
}

up_passt() { # CPUS MTU
    vmlog a
    qemu_argv "$1" "net_ip=10.0.2.15/24 net_gw=10.0.2.2 net_mtu=$2 net_mode=serve"
    spawn "$work/qemu.log" "$helper" pair 3 4 -- \
        passt -f -q -4 -1 --fd 3 -a 10.0.2.15 -n 24 -g 10.0.2.2 \
        -t "127.0.0.1/$P1:5201" -t "127.0.0.1/$P2:7000" -t "127.0.0.1/$P3:80" -u none \
        --- "${QEMU[@]}" -netdev stream,id=n0,server=off,addr.type=fd,addr.str=4 -device "$(dev 1)"
    HCTX=host PORT=127.0.0.1:$P1 CTLA=127.0.0.1:$P2 HTTP=127.0.0.1:$P3
    GWSRV=127.0.0.1:$P4 GWDST=10.0.2.2:$P4
}

up_tap() { # CPUS MTU [DEVICE-OPTIONS]
    net_netns_add "$tag-n"
    bridge "ns:$tag-n" "$2"
    tap_vm "ns:$tag-n" 1 "$1" "$2" "${3:-}"
    HCTX=ns:$tag-n PORT=10.89.0.2:5201 CTLA=10.89.0.2:7000 HTTP=10.89.0.2:80
    GWSRV=10.89.0.1:$P4 GWDST=10.89.0.1:$P4
}

up_tap_veth() { # CPUS nat|proxy
    local h="$tag-h" n="$tag-n"
    net_netns_add "$h"
    net_netns_add "$n"
    bridge "ns:$n"
    ip link add vh netns "$h" type veth peer name vn netns "$n"
    cx "ns:$h" ip addr add 10.255.0.1/30 dev vh
    cx "ns:$h" ip link set vh up
    cx "ns:$h" ip route add 10.89.0.0/24 via 10.255.0.2
    cx "ns:$n" ip addr add 10.255.0.2/30 dev vn
    cx "ns:$n" ip link set vn up
    cx "ns:$n" ip route add default via 10.255.0.1
    cx "ns:$n" nft -f - <<<'table ip a3s { chain post { type nat hook postrouting priority 100; oifname "vn" masquerade; }; }'
    # host-gateway: the uplink's host address stands for the host's loopback.
    cx "ns:$h" sysctl -qw net.ipv4.conf.vh.route_localnet=1
    local dnat=""
    if [[ "$2" == nat ]]; then
        dnat="chain out {
        type nat hook output priority -100
        ip daddr 127.0.0.1 tcp dport $P1 dnat to 10.89.0.2:5201
        ip daddr 127.0.0.1 tcp dport $P2 dnat to 10.89.0.2:7000
        ip daddr 127.0.0.1 tcp dport $P3 dnat to 10.89.0.2:80
    }"
    fi
    cx "ns:$h" nft -f - <<EOF
table ip a3s {
    chain pre {
        type nat hook prerouting priority -100
        iifname "vh" ip daddr 10.255.0.1 dnat to 127.0.0.1
    }
    $dnat
    chain post {
        type nat hook postrouting priority 100
        oifname "vh" ip saddr 127.0.0.0/8 masquerade
    }
}
EOF
    if [[ "$2" == proxy ]]; then
        local p t
        for p in "$P1:5201" "$P2:7000" "$P3:80"; do
            spawn_in "ns:$h" "$work/proxy-${p%:*}.log" "$helper" proxy "127.0.0.1:${p%:*}" \
                "10.89.0.2:${p#*:}" "/run/netns/$n"
        done
    fi
    tap_vm "ns:$n" 1 "$1" 1500
    HCTX=ns:$h PORT=127.0.0.1:$P1 CTLA=127.0.0.1:$P2 HTTP=127.0.0.1:$P3
    GWSRV=127.0.0.1:$P4 GWDST=10.255.0.1:$P4
}

# rootless_ns: a user+net namespace owned by uid 65534, held by a sleep;
# its pid in $HOLDER.
rootless_ns() {
    spawn "$work/holder.log" setpriv --reuid="$NET_UID" --regid="$NET_UID" --clear-groups -- \
        unshare --user --map-root-user --net -- sleep 100000000
    HOLDER=$REPLY
    local i
    for i in $(seq 100); do
        [[ "$(readlink "/proc/$HOLDER/ns/net" 2>/dev/null)" != "$(readlink /proc/self/ns/net)" ]] && return 0
        sleep 0.02
    done
    echo "net-raw.sh: rootless namespace did not appear" >&2
    return 1
}

up_tap_pasta() { # CPUS proxy|fwd MTU
    rootless_ns
    local u="user:$HOLDER" fwd=(-t none)
    cx "$u" ip link set lo up
    bridge "$u" "$3"
    if [[ "$2" == fwd ]]; then
        fwd=(-t "127.0.0.1/$P1" -t "127.0.0.1/$P2" -t "127.0.0.1/$P3")
        cx "$u" sysctl -qw net.ipv4.conf.all.route_localnet=1
        cx "$u" sysctl -qw net.ipv4.conf.br0.route_localnet=1
        cx "$u" nft -f - <<EOF
table ip a3sfwd {
    chain out {
        type nat hook output priority -100
        ip daddr 127.0.0.1 tcp dport $P1 dnat to 10.89.0.2:5201
        ip daddr 127.0.0.1 tcp dport $P2 dnat to 10.89.0.2:7000
        ip daddr 127.0.0.1 tcp dport $P3 dnat to 10.89.0.2:80
    }
    chain post {
        type nat hook postrouting priority 100
        oifname "br0" ip saddr 127.0.0.0/8 masquerade
    }
}
EOF
    fi
    spawn "$work/pasta.log" setpriv --reuid="$NET_UID" --regid="$NET_UID" --clear-groups -- \
        pasta -f -q -4 --config-net -I up0 -a 10.255.0.2 -n 30 -g 10.255.0.1 \
        "${fwd[@]}" -u none -T none -U none "$HOLDER"
    local i
    for i in $(seq 100); do
        cx "$u" ip -4 -o addr show dev up0 2>/dev/null | grep -q 10.255.0.2 && break
        sleep 0.02
    done
    cx "$u" nft -f - <<<'table ip a3s { chain post { type nat hook postrouting priority 100; oifname "up0" masquerade; }; }'
    if [[ "$2" == proxy ]]; then
        local p
        for p in "$P1:5201" "$P2:7000" "$P3:80"; do
            spawn "$work/proxy-${p%:*}.log" setpriv --reuid="$NET_UID" --regid="$NET_UID" --clear-groups -- \
                "$helper" proxy "127.0.0.1:${p%:*}" "10.89.0.2:${p#*:}" \
                "/proc/$HOLDER/ns/net" "/proc/$HOLDER/ns/user"
        done
    fi
    tap_vm_rootless "$HOLDER" 1 "$1" "$3"
    HCTX=host PORT=127.0.0.1:$P1 CTLA=127.0.0.1:$P2 HTTP=127.0.0.1:$P3
    GWSRV=127.0.0.1:$P4 GWDST=10.255.0.1:$P4
}

up_b2b() { # CPUS [DEVICE-OPTIONS]
    net_netns_add "$tag-n"
    bridge "ns:$tag-n"
    tap_vm "ns:$tag-n" 1 "$1" 1500 "${2:-}"
    tap_vm "ns:$tag-n" 2 "$1" 1500 "${2:-}"
    HCTX=ns:$tag-n CTLA=10.89.0.2:7000
    wait_ready "$HCTX" 10.89.0.3:7000 "$work/vm-2.log" || true
}

up_podman() { # bridge|slirp
    local h="$tag-h" net=()
    net_netns_add "$h"
    [[ "$1" == slirp ]] && net=(--network slirp4netns:allow_host_loopback=true)
    # The limits as bench/exec.sh sets them (runc cannot raise them here).
    cx "ns:$h" "${podman[@]}" run -d --name "$tag-ctr" "${net[@]}" \
        --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
        -p "127.0.0.1:$P1:5201" -p "127.0.0.1:$P2:7000" -p "127.0.0.1:$P3:80" \
        localhost/a3s-bench-net:busybox /bin/serve >/dev/null
    HCTX=ns:$h PORT=127.0.0.1:$P1 CTLA=127.0.0.1:$P2 HTTP=127.0.0.1:$P3
    if [[ "$1" == slirp ]]; then
        GWSRV=127.0.0.1:$P4 GWDST=10.0.2.2:$P4
    else # the bridge cannot reach the host's loopback: its gateway address instead
        local gw
        gw="$(cx "ns:$h" "${podman[@]}" inspect -f '{{.NetworkSettings.Gateway}}' "$tag-ctr")"
        GWSRV=$gw:$P4 GWDST=$gw:$P4
    fi
}

down() {
    "${podman[@]}" rm -f -t 0 "$tag-ctr" >/dev/null 2>&1 || true
    stop_pid "${NET_PIDS[@]}"
    NET_PIDS=()
    local ns
    for ns in "${NET_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    NET_NETNS=()
    rm -f "$work"/vm-*.log
}

up() { # BACKEND CPUS
    case "$1" in
    slirp) up_slirp "$2" ;;
    passt) up_passt "$2" 65520 ;;
    passt-1500) up_passt "$2" 1500 ;;
    tap) up_tap "$2" 1500 ;;
    tap-65520) up_tap "$2" 65520 ;;
    tap-nooff) up_tap "$2" 1500 "$NOOFF" ;;
    tap-veth) up_tap_veth "$2" nat ;;
    tap-veth-proxy) up_tap_veth "$2" proxy ;;
    tap-pasta) up_tap_pasta "$2" proxy 65520 ;;
    tap-pasta-1500) up_tap_pasta "$2" proxy 1500 ;;
    tap-pasta-fwd) up_tap_pasta "$2" fwd 65520 ;;
    b2b) up_b2b "$2" ;;
    b2b-nooff) up_b2b "$2" "$NOOFF" ;;
    podman-bridge) up_podman bridge ;;
    podman-slirp) up_podman slirp ;;
    *) echo "net-raw.sh: unknown backend $1" >&2; exit 1 ;;
    esac
}

record() { echo "$1 $2 $3 $4" >>"$results"; }

measure() { # BACKEND CPUS
    local b="$1" c="$2" v
    if [[ "$b" == b2b* ]]; then
        record "$b" "$c" b2b.out "$(ctl "$HCTX" "$CTLA" "iperf3 -c 10.89.0.3 -n $size -J" | mbps)"
        record "$b" "$c" b2b.in "$(ctl "$HCTX" "$CTLA" "iperf3 -c 10.89.0.3 -n $size -J -R" | mbps)"
        return
    fi
    spawn_in "$HCTX" "$work/iperf-gw.log" iperf3 -s -B "${GWSRV%:*}" -p "${GWSRV#*:}"
    record "$b" "$c" port.in "$(cx "$HCTX" timeout 180 iperf3 -c "${PORT%:*}" -p "${PORT#*:}" -n "$size" -J | mbps)"
    record "$b" "$c" port.out "$(cx "$HCTX" timeout 180 iperf3 -c "${PORT%:*}" -p "${PORT#*:}" -n "$size" -J -R | mbps)"
    record "$b" "$c" gw.out "$(ctl "$HCTX" "$CTLA" "iperf3 -c ${GWDST%:*} -p ${GWDST#*:} -n $size -J" | mbps)"
    record "$b" "$c" gw.in "$(ctl "$HCTX" "$CTLA" "iperf3 -c ${GWDST%:*} -p ${GWDST#*:} -n $size -J -R" | mbps)"
    rm -f "$work/ab.csv"
    cx "$HCTX" timeout 180 ab -q -n 1000 -c 4 -e "$work/ab.csv" "http://$HTTP/" >/dev/null 2>&1 || true
    v="$(awk -F, '$1 == 50 { print $2 }' "$work/ab.csv" 2>/dev/null)"
    record "$b" "$c" http.p50ms "${v:-fail}"
}

run_backend() { # BACKEND CPUS
    local t0=$SECONDS
    up "$1" "$2"
    if wait_ready "$HCTX" "$CTLA" "$work"/vm-[12a].log; then
        # The virtio-net feature bits the guest driver accepted (bit 0 csum,
        # 1 guest csum, 7/8 guest tso4/6, 11/12 host tso4/6, 15 mrg_rxbuf).
        [[ "$1" == podman-* ]] || features["$1"]="$(ctl "$HCTX" "$CTLA" 'cat /sys/class/net/eth0/device/features')"
        measure "$1" "$2"
    else
        echo "net-raw.sh: $1 ($2 vCPU) did not come up; logs:" >&2
        tail -n 5 "$work"/*.log >&2 || true
        record "$1" "$2" ready fail
    fi
    down
    record "$1" "$2" elapsed $((SECONDS - t0))
}

declare -A features
echo "net-raw.sh: $(qemu-system-x86_64 --version | head -1); rounds $rounds; vCPUs $cpus_list; ${MEMORY_MIB} MiB; $size per transfer"
if [[ " $backends " == *" podman-"* ]]; then
    "${podman[@]}" import -q "$GUEST/rootfs.tar" localhost/a3s-bench-net:busybox >/dev/null
fi

# What passt's DHCP hands the guest (MTU) before anything is measured.
vmlog dhcp
qemu_argv 1 "net_mode=dhcp"
timeout 60 "$helper" pair 3 4 -- passt -f -q -4 -1 --fd 3 -a 10.0.2.15 -n 24 -g 10.0.2.2 -u none \
    --- "${QEMU[@]}" -netdev stream,id=n0,server=off,addr.type=fd,addr.str=4 -device "$(dev 1)" \
    >/dev/null 2>&1 || true
echo "passt DHCP (default -m): $(grep -ho 'NET-DHCP bound.*' "$VMLOG" | head -1 | sed 's/NET-DHCP bound //')"
echo "guest link: $(grep -ho 'NET-LINK.*' "$VMLOG" | grep -o 'mtu [0-9]*')"

for round in $(seq "$rounds"); do
    for c in $cpus_list; do
        for b in $backends; do
            [[ "$b" == podman-* && "$c" != "${cpus_list%% *}" ]] && continue  # native: once
            run_backend "$b" "$c"
        done
    done
    echo "round $round done" >&2
done

for b in "${!features[@]}"; do echo "virtio-net features accepted, $b: ${features[$b]}"; done

# --- start cost: a VM that configures eth0 and powers off at once.
start_once() { # VARIANT CPUS -> seconds in START_S
    local v="$1" c="$2" t0 t1 pid
    local net="net_ip=10.0.2.15/24 net_gw=10.0.2.2 net_mode=true"
    vmlog s
    t0=$(date +%s%N)
    case "$v" in
    none)
        qemu_argv "$c" "net_mode=true"
        spawn "$work/qemu.log" "${QEMU[@]}" ;;
    slirp)
        qemu_argv "$c" "$net"
        spawn "$work/qemu.log" "${QEMU[@]}" -netdev user,id=n0 -device "$(dev 1)" ;;
    passt-noconf) # the NIC and passt, but the guest leaves eth0 alone
        qemu_argv "$c" "net_mode=true"
        spawn "$work/qemu.log" "$helper" pair 3 4 -- passt -f -q -4 -1 --fd 3 -a 10.0.2.15 -n 24 \
            -g 10.0.2.2 -u none --- "${QEMU[@]}" -netdev stream,id=n0,server=off,addr.type=fd,addr.str=4 \
            -device "$(dev 1)" ;;
    passt)
        qemu_argv "$c" "$net"
        spawn "$work/qemu.log" "$helper" pair 3 4 -- passt -f -q -4 -1 --fd 3 -a 10.0.2.15 -n 24 \
            -g 10.0.2.2 -u none --- "${QEMU[@]}" -netdev stream,id=n0,server=off,addr.type=fd,addr.str=4 \
            -device "$(dev 1)" ;;
    tap-box) # the network exists already: per box, a TAP and the VM
        qemu_argv "$c" "net_ip=10.89.0.2/24 net_gw=10.89.0.1 net_mode=true"
        spawn_in "ns:$tag-s" "$work/qemu.log" "$helper" tap tap1 br0 1500 3 -- \
            "${QEMU[@]}" -netdev tap,id=n0,fd=3 -device "$(dev 1)" ;;
    esac
    pid=$REPLY
    wait "$pid" || true
    t1=$(date +%s%N)
    stop_pid "${NET_PIDS[@]}"
    NET_PIDS=()
    START_S="$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }')"
}

if ((start_rounds > 0)); then
    net_netns_add "$tag-s"
    bridge "ns:$tag-s"
    mkdir -p "$work/run" && chmod 1777 "$work/run"  # passt drops to nobody before it binds
    for round in $(seq "$start_rounds"); do
        for c in $cpus_list; do
            for v in none slirp passt-noconf passt tap-box; do
                start_once "$v" "$c"
                record "start-$v" "$c" seconds "$START_S"
            done
        done
        # The per-network and per-helper steps alone (no VM).
        t0=$(date +%s%N)
        net_netns_add "$tag-t"
        bridge "ns:$tag-t"
        t1=$(date +%s%N)
        ip netns del "$tag-t"
        NET_NETNS=("$tag-s")
        record setup-netns-bridge - seconds "$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }')"
        t0=$(date +%s%N)
        cx "ns:$tag-s" "$helper" tap tap9 br0 1500 3 -- true
        t1=$(date +%s%N)
        record setup-tap - seconds "$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }')"
        t0=$(date +%s%N)
        spawn "$work/passt-sock.log" passt -f -q -4 -s "$work/run/p.sock" -a 10.0.2.15 -n 24 -g 10.0.2.2 -u none
        for i in $(seq 5000); do [[ -S "$work/run/p.sock" ]] && break; sleep 0.001; done
        t1=$(date +%s%N)
        stop_pid "$REPLY"
        NET_PIDS=()
        rm -f "$work/run/p.sock"
        record setup-passt-socket - seconds "$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }')"
        t0=$(date +%s%N)
        rootless_ns
        t1=$(date +%s%N)
        spawn "$work/pasta.log" setpriv --reuid="$NET_UID" --regid="$NET_UID" --clear-groups -- \
            pasta -f -q -4 --config-net -I up0 -a 10.255.0.2 -n 30 -g 10.255.0.1 -t none -u none \
            -T none -U none "$HOLDER"
        # pasta configures up0 through netlink from outside; poll with one
        # setns'd shell rather than an nsenter per try.
        cx "user:$HOLDER" sh -c 'i=0; until ip -4 -o addr show dev up0 2>/dev/null | grep -q 10.255.0.2 \
            || [ $i -ge 5000 ]; do i=$((i + 1)); sleep 0.001; done'
        t2=$(date +%s%N)
        stop_pid "${NET_PIDS[@]}"
        NET_PIDS=()
        record setup-rootless-ns - seconds "$(awk -v d=$((t1 - t0)) 'BEGIN { printf "%.4f", d / 1e9 }')"
        record setup-pasta-uplink - seconds "$(awk -v d=$((t2 - t1)) 'BEGIN { printf "%.4f", d / 1e9 }')"
    done
fi

python3 bench/net-report.py "$results" "$cpus_list"
