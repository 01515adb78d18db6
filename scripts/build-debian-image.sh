#!/usr/bin/env bash
# Build a minimal Debian 12 image for the tests: mmdebstrap (variant minbase)
# with python3, iproute2, netcat-openbsd, curl, procps and ca-certificates,
# packed as one layer into an OCI image layout by umoci, tagged `debian`.
# Packages come from the archive this machine's apt uses (read from its apt
# configuration with `apt-get indextargets`; no host name is written here).
# The layout is cached under A3S_BOX_CACHE/images/debian-<hash of this
# script>, so it is built once per machine; later calls only copy it.
#
# usage: scripts/build-debian-image.sh OUT_DIR
#   OUT_DIR receives oci/ (OCI image layout, tag `debian`).
#   Push it with: skopeo copy --dest-tls-verify=false oci:OUT_DIR/oci:debian docker://...
# env:   A3S_BOX_CACHE  cache root (default /var/cache/a3s-box)
# Needs root (mmdebstrap's root mode keeps file owners without subuids).
set -euo pipefail

out="${1:?usage: build-debian-image.sh OUT_DIR}"
suite=bookworm
packages=python3,iproute2,netcat-openbsd,curl,procps,ca-certificates
cache_root="${A3S_BOX_CACHE:-/var/cache/a3s-box}"
key="$(sha256sum "$0" | cut -c1-16)"
cache="$cache_root/images/debian-$key"
work=""

need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "build-debian-image: '$1' not found; install Debian package '$2' (scripts/install-deps.sh)" >&2
        exit 2
    }
}

# The host's apt sources for $suite: "deb URI SUITE COMPONENTS" lines.
host_sources() {
    apt-get indextargets --format '$(TARGET_OF) $(IDENTIFIER) $(REPO_URI) $(RELEASE) $(COMPONENT)' |
        awk -v suite="$suite" '$1 == "deb" && $2 == "Packages" && ($4 == suite || index($4, suite "-") == 1) {
            key = $3 " " $4
            if (!(key in comps)) { order[++n] = key; comps[key] = $5 }
            else if (index(" " comps[key] " ", " " $5 " ") == 0) comps[key] = comps[key] " " $5
        }
        END { for (i = 1; i <= n; i++) print "deb " order[i] " " comps[order[i]] }'
}

build() {
    need mmdebstrap mmdebstrap
    need umoci umoci
    [[ $(id -u) == 0 ]] || { echo "build-debian-image: run as root" >&2; exit 1; }
    local sources=() line opts=() opt value
    while IFS= read -r line; do sources+=("$line"); done < <(host_sources)
    ((${#sources[@]} > 0)) || {
        echo "build-debian-image: no '$suite' source in this machine's apt configuration" >&2
        exit 1
    }
    # Host apt settings the archive may need (a snapshot archive has expired
    # Release files; a proxy).
    for opt in Acquire::Check-Valid-Until Acquire::Check-Date Acquire::http::Proxy Acquire::https::Proxy; do
        value="$(apt-config shell v "$opt" | sed -n "s/^v='\(.*\)'$/\1/p")"
        [[ -n "$value" ]] && opts+=(--aptopt="$opt \"$value\"")
    done

    work="$(mktemp -d "${TMPDIR:-/tmp}/a3s-debian.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    echo "build-debian-image: mmdebstrap $suite ($packages)" >&2
    # Small: no documentation, manual pages or translations (copyright files
    # stay); mmdebstrap already drops the package lists and the .deb cache.
    mmdebstrap --quiet --mode=root --variant=minbase --include="$packages" "${opts[@]}" \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin "$1"/var/cache/debconf/*-old "$1"/var/log/*.log "$1"/var/log/apt/*' \
        "$suite" "$work/root" "${sources[@]}"
    # An image carries no device nodes (the runtime gives /dev) and none of
    # this machine's settings: no nameserver, no host name.
    if findmnt -rn -o TARGET | grep -q "^$work/root"; then
        echo "build-debian-image: something is still mounted under $work/root" >&2
        exit 1
    fi
    find "$work/root/dev" -mindepth 1 -delete
    : >"$work/root/etc/resolv.conf"
    rm -f "$work/root/etc/hostname"
    mkdir -p "$work/img"
    (
        cd "$work/img"
        umoci init --layout oci
        umoci new --image oci:debian
        umoci config --image oci:debian --os linux --architecture amd64 \
            --config.cmd /bin/bash \
            --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
            --config.env LANG=C.UTF-8
        umoci insert --image oci:debian "$work/root" /
        umoci gc --layout oci
    )
    mkdir -p "$cache_root/images"
    rm -rf "$cache.tmp"
    mv "$work/img" "$cache.tmp"
    mv "$cache.tmp" "$cache"
}

if [[ ! -f "$cache/oci/index.json" ]]; then
    mkdir -p "$cache_root/images"
    # One build per machine even when several test binaries ask at once.
    exec 9>"$cache_root/images/.debian.lock"
    flock 9
    [[ -f "$cache/oci/index.json" ]] || build
fi

mkdir -p "$out"
rm -rf "$out/oci.tmp"
cp -a "$cache/oci" "$out/oci.tmp"
rm -rf "$out/oci"
mv "$out/oci.tmp" "$out/oci"
echo "build-debian-image: $out/oci (tag debian, $(du -sh "$cache/oci" | cut -f1); $key)" >&2
