#!/usr/bin/env bash
# Install the Debian packages A3S Box needs (idempotent: installs only what
# is missing). Run as root (or with sudo available).
#
# usage: scripts/install-deps.sh [--bench]
#   --bench  also install what the benchmarks compare against
set -euo pipefail

packages=(
    qemu-system-x86      # the VMM
    libseccomp-dev libcap-ng-dev  # build of a3s-box-fs (virtio-fs daemon: seccomp, capabilities)
    e2fsprogs erofs-utils  # mkfs.ext4, mkfs.erofs: root filesystem images
    busybox-static       # the demo / test root filesystem
    linux-source-6.12    # guest kernel source
    flex bison bc libelf-dev libssl-dev lz4 xz-utils cpio file make gcc patch  # kernel and initramfs build
    docker-registry umoci skopeo apache2-utils zstd python3 openssl procps tmux  # tests: registries, fixtures, token server, pgrep, terminals
    nftables iproute2 passt  # networking: the egress firewall (nft), namespaces (ip), the uplink (pasta)
    dnsmasq-base         # tests: an upstream DNS server on loopback (the binary only, no system service)
    mmdebstrap           # tests: the Debian 12 fixture image (scripts/build-debian-image.sh)
)
if [[ "${1:-}" == "--bench" ]]; then
    packages+=(
        hyperfine linux-image-cloud-amd64  # boot.sh: timing, the stock kernel
        podman runc                        # exec.sh: the container baseline (local image, no registry)
        passt iproute2 nftables iperf3     # net-raw.sh, net-policy.sh: data planes, uplinks, policy, load
        slirp4netns netavark iptables      # net-raw.sh: podman's network baselines (bridge, slirp4netns)
    )
fi

missing=()
for p in "${packages[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
    echo "install-deps: all packages present" >&2
    exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
sudo=""
[[ $(id -u) == 0 ]] || sudo=sudo
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
