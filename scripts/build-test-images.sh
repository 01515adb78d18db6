#!/usr/bin/env bash
# Build the image fixtures for the image tests into an OCI layout, with tools that are
# independent of our code: umoci (layers, whiteouts, opaque dirs, config), python3 (a
# hand-written index, a zstd layer, a hostile layer) and busybox-static's binary.
#
#   scripts/build-test-images.sh OUT_DIR
#
# Tags in OUT_DIR/oci: layers, amd64, arm64, multiarch (index), zstd, hostile.
# Push them with: skopeo copy --dest-tls-verify=false [--all] oci:OUT_DIR/oci:TAG docker://...
set -euo pipefail

out=${1:?usage: build-test-images.sh OUT_DIR}
need() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "build-test-images: '$1' not found; install Debian package '$2'" >&2
        exit 2
    }
}
need umoci umoci
need python3 python3
need zstd zstd
busybox=/bin/busybox
if ! file -L "$busybox" 2>/dev/null | grep -q static && ! ldd "$busybox" 2>&1 | grep -q "not a dynamic"; then
    echo "build-test-images: $busybox is not static; install Debian package 'busybox-static'" >&2
    exit 2
fi

rm -rf "$out" && mkdir -p "$out"
cd "$out"
umoci init --layout oci

# --- layers: whiteout, opaque dir, hardlink, setuid, >= 20 MB file, unicode names ---
umoci new --image oci:layers
umoci config --image oci:layers --config.entrypoint /bin/sh --config.cmd -c \
    --config.cmd 'echo hello' --config.env FOO=bar --config.workingdir /data \
    --config.user 0:0 --os linux --architecture amd64
mkdir -p l1/bin l1/etc l1/data/old
cp "$busybox" l1/bin/busybox
ln -s busybox l1/bin/sh
echo gone >l1/etc/deleted.txt
echo kept >l1/etc/kept.txt
echo old >l1/data/old/file
umoci insert --image oci:layers l1 /
umoci insert --image oci:layers --whiteout /etc/deleted.txt
mkdir -p l3 && echo new >l3/new-file
umoci insert --image oci:layers --opaque l3 /data
mkdir -p "l4/misc/日本語 ☃" l4/usr/bin
echo linked >l4/misc/hard-a
ln l4/misc/hard-a l4/misc/hard-b
echo suid >l4/usr/bin/suid-tool && chmod 4755 l4/usr/bin/suid-tool
echo unicode >"l4/misc/日本語 ☃/ファイル name with spaces.txt"
head -c $((21 * 1024 * 1024)) /dev/urandom >l4/misc/big.bin
sha256sum l4/misc/big.bin | cut -d' ' -f1 >big.sha256
umoci insert --image oci:layers l4 /

# --- two single-platform images for the index ---
for arch in amd64 arm64; do
    umoci new --image "oci:$arch"
    umoci config --image "oci:$arch" --os linux --architecture "$arch" --config.cmd /bin/true
    mkdir -p "p-$arch" && echo "$arch" >"p-$arch/arch"
    if [[ "$arch" == amd64 ]]; then
        # Runnable on this host: the VM tests boot it (and the zstd image built on it).
        mkdir -p p-amd64/bin && cp "$busybox" p-amd64/bin/busybox
        for applet in sh cat true; do ln -s busybox "p-amd64/bin/$applet"; done
    fi
    umoci insert --image "oci:$arch" "p-$arch" /
done

python3 - <<'PY'
import gzip, hashlib, io, json, os, subprocess, tarfile

LAYOUT = "oci"

def blob_put(data):
    d = hashlib.sha256(data).hexdigest()
    with open(f"{LAYOUT}/blobs/sha256/{d}", "wb") as f:
        f.write(data)
    return f"sha256:{d}"

def blob_get(digest):
    with open(f"{LAYOUT}/blobs/sha256/{digest.split(':')[1]}", "rb") as f:
        return f.read()

def index():
    with open(f"{LAYOUT}/index.json") as f:
        return json.load(f)

def tag_desc(tag):
    for m in index()["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m
    raise SystemExit(f"no tag {tag}")

def set_tag(tag, desc):
    idx = index()
    idx["manifests"] = [m for m in idx["manifests"]
                        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != tag]
    desc = dict(desc, annotations={"org.opencontainers.image.ref.name": tag})
    idx["manifests"].append(desc)
    with open(f"{LAYOUT}/index.json", "w") as f:
        json.dump(idx, f)

def add_layer(base, tag, tar_bytes, compressed, media_type):
    man = json.loads(blob_get(tag_desc(base)["digest"]))
    cfg = json.loads(blob_get(man["config"]["digest"]))
    cfg["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(tar_bytes).hexdigest())
    cfg_bytes = json.dumps(cfg).encode()
    man["config"] = dict(man["config"], digest=blob_put(cfg_bytes), size=len(cfg_bytes))
    man["layers"].append({"mediaType": media_type, "digest": blob_put(compressed), "size": len(compressed)})
    man_bytes = json.dumps(man).encode()
    set_tag(tag, {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                  "digest": blob_put(man_bytes), "size": len(man_bytes)})

def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data, link in entries:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o644, 1600000000
            info.linkname = link
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()

# zstd: one extra zstd layer on top of the amd64 image
z = tar_of([("zstd-dir/", tarfile.DIRTYPE, b"", ""), ("zstd-dir/hello.txt", tarfile.REGTYPE, b"from zstd\n", "")])
zc = subprocess.run(["zstd", "-q", "-c"], input=z, capture_output=True, check=True).stdout
add_layer("amd64", "zstd", z, zc, "application/vnd.oci.image.layer.v1.tar+zstd")

# hostile: a symlink pointing out of the root, then a write through it, and a ../ entry
h = tar_of([("fine.txt", tarfile.REGTYPE, b"ok\n", ""),
            ("escape", tarfile.SYMTYPE, b"", "../../../../../../tmp"),
            ("escape/a3s-hostile-owned", tarfile.REGTYPE, b"pwned\n", ""),
            ("../a3s-hostile-dotdot", tarfile.REGTYPE, b"pwned\n", "")])
add_layer("amd64", "hostile", h, gzip.compress(h), "application/vnd.oci.image.layer.v1.tar+gzip")

# multiarch: an OCI index over the amd64 and arm64 manifests
mans = []
for arch in ("amd64", "arm64"):
    d = dict(tag_desc(arch))
    d.pop("annotations", None)
    d["platform"] = {"os": "linux", "architecture": arch}
    mans.append(d)
ib = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": mans}).encode()
set_tag("multiarch", {"mediaType": "application/vnd.oci.image.index.v1+json",
                      "digest": blob_put(ib), "size": len(ib)})
PY
rm -rf l1 l3 l4 p-amd64 p-arm64
echo "build-test-images: fixtures in $out/oci"
