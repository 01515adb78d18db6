# Shared by the bench scripts (sourced from the repository root).

# box_assets NAME: set $bin (A3S_BOX_BIN or target/release/a3s-box) and
# $rootfs, export A3S_BOX_ASSETS, and stop with a hint when the built
# binaries, the test root or the guest assets are missing, or the binary
# has no `exec`. NAME prefixes the messages.
box_assets() {
    local name="$1" need
    bin="$(realpath "${A3S_BOX_BIN:-target/release/a3s-box}")"
    rootfs="$PWD/target/share/a3s-box/rootfs-busybox"
    export A3S_BOX_ASSETS="${A3S_BOX_ASSETS:-$PWD/target/share/a3s-box}"
    for need in "$bin" "$(dirname "$bin")/a3s-box-shim" "$rootfs/bin/busybox" "$A3S_BOX_ASSETS/initramfs.cpio"; do
        [[ -e "$need" ]] || { echo "$name: $need missing: run make setup" >&2; exit 1; }
    done
    "$bin" exec --help >/dev/null 2>&1 || { echo "$name: $bin has no exec: run make release" >&2; exit 1; }
}
