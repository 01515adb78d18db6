#!/usr/bin/env bash
# Build the A3S Box guest kernel from Debian's linux-source-6.12 package with
# kernel/patches/*.patch applied and kernel/a3s-guest.config merged onto
# tinyconfig. The result is cached by the hash of (config fragment, patches,
# kernel source package version, this script), so it builds once per
# machine; later calls only copy it.
#
# usage: scripts/build-kernel.sh OUT_DIR
#   OUT_DIR receives vmlinux (PVH ELF, what a3s-box boots), bzImage and config.
# env:   A3S_BOX_CACHE  cache root (default /var/cache/a3s-box)
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: build-kernel.sh OUT_DIR}"
fragment="$here/kernel/a3s-guest.config"
src_tar=/usr/src/linux-source-6.12.tar.xz
cache_root="${A3S_BOX_CACHE:-/var/cache/a3s-box}"

[[ -f "$src_tar" ]] || { echo "build-kernel: $src_tar missing; run scripts/install-deps.sh" >&2; exit 1; }

src_version="$(dpkg-query -W -f='${Version}' linux-source-6.12)"
patches=("$here"/kernel/patches/*.patch)
key="$( { cat "$fragment" "${patches[@]}" "$0"; echo "$src_version"; } | sha256sum | cut -c1-16)"
cache="$cache_root/kernel/$key"

if [[ ! -f "$cache/vmlinux" ]]; then
    echo "build-kernel: building guest kernel $key (linux-source $src_version); about 10 min on 2 cores" >&2
    work="$(mktemp -d "${TMPDIR:-/tmp}/a3s-kernel.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    tar -xf "$src_tar" -C "$work"
    ksrc="$(echo "$work"/linux-source-*)"
    for p in "${patches[@]}"; do
        patch -s -p1 -d "$ksrc" < "$p"
    done
    make -C "$ksrc" -s tinyconfig
    (cd "$ksrc" && ./scripts/kconfig/merge_config.sh -m -O . .config "$fragment" >/dev/null)
    make -C "$ksrc" -s olddefconfig
    # Every =y line of the fragment must survive olddefconfig (a missing
    # dependency silently drops an option otherwise).
    missing=0
    while IFS= read -r line; do
        grep -qx "$line" "$ksrc/.config" || { echo "build-kernel: option not set: $line" >&2; missing=1; }
    done < <(grep -E '^CONFIG_[A-Z0-9_]+=(y|[0-9]+)$' "$fragment")
    [[ $missing == 0 ]] || exit 1
    make -C "$ksrc" -s -j"$(nproc)" vmlinux bzImage
    mkdir -p "$cache.tmp"
    cp "$ksrc/vmlinux" "$cache.tmp/vmlinux"
    strip --strip-debug "$cache.tmp/vmlinux" 2>/dev/null || true
    cp "$ksrc/arch/x86/boot/bzImage" "$cache.tmp/bzImage"
    cp "$ksrc/.config" "$cache.tmp/config"
    rm -rf "$cache"
    mv "$cache.tmp" "$cache"
fi

mkdir -p "$out"
for f in vmlinux bzImage config; do
    cp "$cache/$f" "$out/$f.tmp" && mv "$out/$f.tmp" "$out/$f"
done
echo "build-kernel: $out/vmlinux ($key)" >&2
