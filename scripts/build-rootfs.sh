#!/usr/bin/env bash
# Build a small root filesystem directory from Debian's busybox-static, used
# by `make demo`, the tests and the benchmarks. Offline: needs only the
# installed package.
#
# usage: scripts/build-rootfs.sh OUT_DIR
set -euo pipefail

out="${1:?usage: build-rootfs.sh OUT_DIR}"
busybox=/bin/busybox
[[ -x "$busybox" ]] \
    || { echo "build-rootfs: $busybox missing; install busybox-static (make setup)" >&2; exit 1; }
case "$(file -bL "$busybox")" in
    *"statically linked"*) ;;
    *) echo "build-rootfs: $busybox is not static; install busybox-static" >&2; exit 1 ;;
esac
version="$("$busybox" 2>&1 || true)"
version="${version%%$'\n'*}"

tmp="$(mktemp -d "$(dirname "$out")/.rootfs.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,home/tester,proc,sys,dev,run,var/tmp}
chmod 1777 "$tmp/tmp" "$tmp/var/tmp"
chmod 700 "$tmp/root"
cp "$busybox" "$tmp/bin/busybox"
for applet in $("$busybox" --list); do
    [[ "$applet" == busybox ]] && continue
    ln -sf busybox "$tmp/bin/$applet"
done
cat > "$tmp/etc/passwd" <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
tester:x:1000:1000:Test User:/home/tester:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > "$tmp/etc/group" <<'G'
root:x:0:
daemon:x:1:
staff:x:50:tester
tester:x:1000:
nogroup:x:65534:
G
chown 1000:1000 "$tmp/home/tester"
echo "a3s-box test rootfs (${version% multi-call*})" > "$tmp/etc/issue"
# A file that exists but is not executable, for exit-code 126 tests.
printf '#!/bin/sh\necho should-not-run\n' > "$tmp/bin/not-executable"
chmod 644 "$tmp/bin/not-executable"

rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "build-rootfs: $out ($(du -sh "$out" | cut -f1))" >&2
