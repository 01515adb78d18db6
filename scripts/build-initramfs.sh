#!/usr/bin/env bash
# Build a3s-box-guest-init as a static release binary and pack it as the
# guest initramfs: an uncompressed newc cpio holding /init (the binary), the
# empty mountpoints dev proc sys run tmp, and /dev/console (char 5:1) so the
# kernel can give PID 1 its console before devtmpfs is mounted.
#
# usage: scripts/build-initramfs.sh OUT_DIR
#   OUT_DIR receives initramfs.cpio (written atomically).
# env:   CARGO            cargo to run (default: cargo)
#        CARGO_TARGET_DIR where cargo builds (default: <repo>/target)
# Needs root for mknod (the archive records the node as root:root 0600).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:?usage: build-initramfs.sh OUT_DIR}"
target=x86_64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$here/target}"
bin="$target_dir/$target/release/a3s-box-guest-init"

# glibc static: there is no musl target here. The target triple keeps these
# RUSTFLAGS from invalidating the host build's cache.
(cd "$here" && RUSTFLAGS="-C target-feature=+crt-static" nice -n 10 "${CARGO:-cargo}" build \
    --release -p a3s-box-guest-init --target "$target")

# PID 1 starts before any filesystem with a dynamic loader exists.
info="$(file -b "$bin")"
case "$info" in
    *"statically linked"* | *"static-pie linked"*) ;;
    *) echo "build-initramfs: $bin is not statically linked: $info" >&2; exit 1 ;;
esac

stage="$(mktemp -d "${TMPDIR:-/tmp}/a3s-initramfs.XXXXXX")"
trap 'rm -rf "$stage"' EXIT
mkdir -m 0755 "$stage"/{dev,proc,sys,run,tmp}
strip -o "$stage/init" "$bin"
chmod 0755 "$stage/init"
mknod -m 0600 "$stage/dev/console" c 5 1 || {
    echo "build-initramfs: mknod /dev/console failed (needs root)" >&2
    exit 1
}
# Fixed times and sorted names: the same binary gives the same archive.
find "$stage" -exec touch -h -d @0 {} +

mkdir -p "$out"
tmp="$out/initramfs.cpio.tmp"
(cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio --quiet -o -H newc --owner 0:0 --reproducible) >"$tmp"
mv -f "$tmp" "$out/initramfs.cpio"
echo "build-initramfs: $out/initramfs.cpio ($(stat -c %s "$out/initramfs.cpio") bytes; init $(stat -c %s "$stage/init") bytes)" >&2
