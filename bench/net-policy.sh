#!/usr/bin/env bash
# Checks, on bare VMs, the egress allow-list recipe of docs/networking.md
# (functional, not timed): a bridge network namespace with a root uplink
# (veth + masquerade) to a namespace standing for the outside world, two
# boxes on the bridge, nft rules keyed on each box's TAP, and a toy DNS
# (bench/net-dns.py) that feeds the allowed answers into box 1's nft set.
#
#   outside netns: 198.51.100.10 ("ten"), 198.51.100.20 ("twenty") and
#                  169.254.169.254 ("metadata"), each a busybox httpd on :80
#   network netns: br0 10.88.0.1/24, DNS on 10.88.0.1:53, uplink vn
#   box 1 (10.88.0.2, tap1): policy "allowed.test" only; box 2 (10.88.0.3):
#   no policy
#
# usage: bench/net-policy.sh     (root; needs `make kernel`, install-deps --bench)
# Prints one line per check and exits non-zero when one fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/net-lib.sh

MEMORY_MIB=256
kernel=target/share/a3s-box/vmlinux
[[ $(id -u) == 0 ]] || { echo "net-policy.sh: run as root" >&2; exit 1; }
[[ -e "$kernel" ]] || { echo "net-policy.sh: $kernel missing: run make kernel" >&2; exit 1; }
for tool in qemu-system-x86_64 nft gcc python3 nsenter; do
    command -v "$tool" >/dev/null || { echo "net-policy.sh: $tool missing: scripts/install-deps.sh --bench" >&2; exit 1; }
done

work="$(mktemp -d /tmp/a3s-net-policy.XXXXXX)"
chmod 0755 "$work"
GUEST="$work/guest"
trap 'net_cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
mkdir -p "$GUEST"
cp "$kernel" "$GUEST/vmlinux"
net_build_guest "$GUEST"
gcc -O2 -pthread -Wall -o "$GUEST/net-helper" bench/net-helper.c
helper="$GUEST/net-helper"
tag="np$$" out="ns:np$$-o" net="ns:np$$-n"

# --- the outside world
net_netns_add "$tag-o"
for site in 198.51.100.10:ten 198.51.100.20:twenty 169.254.169.254:metadata; do
    cx "$out" ip addr add "${site%:*}/32" dev lo
    mkdir -p "$work/www-${site#*:}"
    echo "${site#*:}" >"$work/www-${site#*:}/index.html"
    spawn_in "$out" "$work/httpd-${site#*:}.log" busybox httpd -f -p "${site%:*}:80" -h "$work/www-${site#*:}"
done

# --- the network: bridge, root uplink, policy
net_netns_add "$tag-n"
bridge "$net" 1500 10.88.0.1/24
ip link add vo netns "$tag-o" type veth peer name vn netns "$tag-n"
cx "$out" ip addr add 10.255.0.1/30 dev vo
cx "$out" ip link set vo up
cx "$net" ip addr add 10.255.0.2/30 dev vn
cx "$net" ip link set vn up
cx "$net" ip route add default via 10.255.0.1
# Where br_netfilter is loaded (it is on hosts that run Docker or podman),
# bridged frames also traverse the IP hooks; switch that off in this netns
# (the setting is per netns) so box <-> box stays plain bridging.
cx "$net" sh -c 'for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e "$f" ] && echo 0 >"$f"; done; true'
cx "$net" nft -f - <<'EOF'
table ip a3s-nat {
    chain post {
        type nat hook postrouting priority 100
        oifname "vn" masquerade
    }
}
# Per box: its TAP fixes its MAC and address (no spoofing) and marks its
# packets; the mark survives from the bridge layer into the IP layer.
table bridge a3s {
    chain pre {
        type filter hook prerouting priority -200; policy accept
        iifname "tap1" ether saddr != 02:00:00:00:00:01 drop
        iifname "tap1" ether type ip ip saddr != 10.88.0.2 counter drop
        iifname "tap1" ether type arp arp saddr ip != 10.88.0.2 drop
        iifname "tap1" meta mark set 1
        iifname "tap2" ether saddr != 02:00:00:00:00:02 drop
        iifname "tap2" ether type ip ip saddr != 10.88.0.3 drop
        iifname "tap2" ether type arp arp saddr ip != 10.88.0.3 drop
        iifname "tap2" meta mark set 2
    }
}
table inet a3s {
    set allow4_1 { type ipv4_addr; flags timeout; }
    set cidr4_1 { type ipv4_addr; flags interval; }
    # Boxes reach the network namespace itself only for DNS.
    chain input {
        type filter hook input priority 0; policy accept
        iifname "br0" ct state established,related accept
        iifname "br0" meta l4proto { udp, tcp } th dport 53 accept
        iifname "br0" icmp type echo-request accept
        iifname "br0" reject with icmpx admin-prohibited
    }
    chain forward {
        type filter hook forward priority 0; policy accept
        ct state established,related accept
        iifname "br0" oifname "br0" accept
        meta mark 1 jump egress_1
    }
    chain egress_1 {
        ip daddr 169.254.0.0/16 reject with icmpx admin-prohibited
        meta l4proto { udp, tcp } th dport { 53, 853 } reject with icmpx admin-prohibited
        ip daddr @allow4_1 accept
        ip daddr @cidr4_1 accept
        meta l4proto tcp reject with tcp reset
        reject with icmpx admin-prohibited
    }
}
EOF
spawn_in "$net" "$work/dns.log" python3 bench/net-dns.py 10.88.0.1 \
    "allowed.test=198.51.100.10,blocked.test=198.51.100.20" "10.88.0.2=allow4_1:allowed.test"

NET_PFX=10.88.0
tap_vm "$net" 1 1 1500
tap_vm "$net" 2 1 1500
for n in 1 2; do
    wait_ready "$net" "10.88.0.$((n + 1)):7000" "$work/vm-$n.log" || {
        echo "net-policy.sh: box $n did not come up" >&2
        tail -n 5 "$work"/*.log >&2
        exit 1
    }
done

failed=0
# check NAME BOX WANT LINE: run LINE in box BOX; WANT is the expected output
# (a substring) or "!" for "fails"; prints the result and the time it took.
check() {
    local name="$1" box="$2" want="$3" line="$4" got t0 t1 ok
    t0=$(date +%s%N)
    got="$(CTL_TIMEOUT=20 ctl "$net" "10.88.0.$((box + 1)):7000" "$line; echo rc=\$?")"
    t1=$(date +%s%N)
    if [[ "$want" == "!" ]]; then
        [[ "$got" != *rc=0* ]] && ok=1 || ok=0
    else
        [[ "$got" == *"$want"* && "$got" == *rc=0* ]] && ok=1 || ok=0
    fi
    printf '%-4s %-58s %6.2f s\n' "$( ((ok)) && echo ok || echo FAIL)" "$name" \
        "$(awk -v d=$((t1 - t0)) 'BEGIN { print d / 1e9 }')"
    ((ok)) || { failed=1; echo "     got: $(echo "$got" | tr '\n' ' ')"; }
}
# busybox wget segfaults here (static glibc resolving); nc speaks HTTP enough.
wget_() { echo "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $1 80 | grep -v '^HTTP/1.[01] [^2]'"; }

check "box 1: allowed address before any lookup is refused" 1 "!" "$(wget_ 198.51.100.10)"
check "box 1: a name outside its policy does not resolve" 1 "!" "nslookup -type=a blocked.test 10.88.0.1"
check "box 1: an allowed name resolves" 1 198.51.100.10 "nslookup -type=a allowed.test 10.88.0.1"
check "box 1: ... and its answer is now reachable" 1 ten "$(wget_ 198.51.100.10)"
check "box 1: another address is refused" 1 "!" "$(wget_ 198.51.100.20)"
check "box 1: link-local metadata is refused" 1 "!" "$(wget_ 169.254.169.254)"
check "box 1: another resolver is refused" 1 "!" "nslookup -type=a allowed.test 198.51.100.20"
check "box 1: reaches box 2 on the same network" 1 xxxx "$(wget_ 10.88.0.3)"
check "box 2 (no policy): reaches any address" 2 twenty "$(wget_ 198.51.100.20)"
check "box 2: resolves any known name" 2 198.51.100.20 "nslookup -type=a blocked.test 10.88.0.1"
check "box 1: a forged source address is dropped at its TAP" 1 "!" \
    "ip addr add 10.88.0.9/32 dev eth0; ip route add 198.51.100.10/32 via 10.88.0.1 src 10.88.0.9; \
    $(wget_ 198.51.100.10); r=\$?; ip route del 198.51.100.10/32; ip addr del 10.88.0.9/32 dev eth0; (exit \$r)"
dropped="$(cx "$net" nft list chain bridge a3s pre | awk '/tap1/ && /ip saddr/ { for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }')"
if [[ "${dropped:-0}" -gt 0 ]]; then
    echo "ok   ... by the anti-spoofing rule ($dropped packets)"
else
    echo "FAIL ... by the anti-spoofing rule (counter ${dropped:-missing})"
    failed=1
fi
if cx "$net" nft list set inet a3s allow4_1 | grep -q '198.51.100.10 timeout'; then
    echo "ok   box 1's set holds the answer, with a timeout"
else
    echo "FAIL box 1's set holds the answer, with a timeout"
    failed=1
fi
exit "$failed"
