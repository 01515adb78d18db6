#!/bin/sh
# /init of the bare benchmark VM (bench/net-raw.sh). Configured by kernel
# command-line words, which the kernel hands to init as environment variables:
#   net_ip=ADDR/PFX  net_gw=ADDR  net_mtu=N   static eth0 (none: no NIC setup)
#   net_mode=serve   iperf3 server (5201), httpd (80), control port (7000)
#   net_mode=true    configure eth0 and power off at once (start-cost runs)
#   net_mode=dhcp    ask DHCP once, print what was offered, power off
# The control port runs one shell line per connection (bench only: the VM
# has nothing else on it and is reachable only from the bench's namespaces).
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
ip link set lo up
if [ -n "$net_ip" ]; then
    ip link set eth0 mtu "${net_mtu:-1500}" up
    ip addr add "$net_ip" dev eth0
    [ -n "$net_gw" ] && ip route add default via "$net_gw"
    # One frame out first (ARP for the gateway); not required by any backend.
    [ "$net_mode" = serve ] && [ -n "$net_gw" ] && ping -c 1 -W 1 "$net_gw" >/dev/null
fi
case "$net_mode" in
true)
    reboot -f
    ;;
dhcp)
    ip link set eth0 up
    udhcpc -i eth0 -n -q -f -s /bin/dhcp-print -t 5 -T 1
    echo "NET-LINK $(ip -o link show eth0)"
    reboot -f
    ;;
esac
iperf3 -s -D
httpd -p 80 -h /www
nc -ll -p 7000 -e /bin/ctl &
echo NET-READY
exec sleep 100000000
