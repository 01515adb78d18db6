//! `save`, `load` and `push` through the real binary, checked against skopeo (an
//! independent implementation of both archive formats and of the registry protocol).

#![allow(clippy::unwrap_used)]

mod common;
mod image_home;
mod registry;

use std::path::Path;
use std::process::{Command, Output};

use common::stderr;
use image_home::Images;
use registry::{push, require, start_registry, PASS, USER};

fn skopeo(args: &[&str]) -> Output {
    require("skopeo", "skopeo");
    let o = Command::new("skopeo").args(args).output().unwrap();
    assert!(o.status.success(), "skopeo {args:?}: {}", stderr(&o));
    o
}

fn skopeo_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&skopeo(args).stdout).unwrap()
}

#[test]
fn save_then_load_round_trips_in_both_formats() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/layers:1", None);
    let src = Images::new();
    let name = format!("{}/fixtures/layers:1", reg.addr);
    src.ok(&["pull", "-q", &name]);
    let want = src.inspect(&name);
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("docker.tar");
    let oci = dir.path().join("oci.tar");
    src.ok(&["save", "-o", docker.to_str().unwrap(), &name]);
    src.ok(&[
        "save",
        "--format",
        "oci",
        "-o",
        oci.to_str().unwrap(),
        &name,
    ]);

    // skopeo reads what we wrote.
    let d = skopeo_json(&["inspect", &format!("docker-archive:{}", docker.display())]);
    assert_eq!(d["Layers"].as_array().unwrap().len(), 4);
    let o = skopeo_json(&["inspect", &format!("oci-archive:{}:{name}", oci.display())]);
    assert_eq!(
        o["Digest"],
        want["RepoDigests"][0]
            .as_str()
            .unwrap()
            .split('@')
            .nth(1)
            .unwrap()
    );

    for (archive, keeps_manifest) in [(&docker, false), (&oci, true)] {
        let dst = Images::new();
        let out = dst.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out.trim(), format!("Loaded image: {name}"));
        let rows: serde_json::Value =
            serde_json::from_str(&dst.ok(&["images", "--format", "json"])).unwrap();
        assert_eq!(rows.as_array().unwrap().len(), 1, "{rows}");
        assert_eq!(rows[0]["Tag"], "1");
        let got = dst.inspect(&name);
        assert_eq!(got["Id"], want["Id"]);
        assert_eq!(got["RootFS"], want["RootFS"]);
        assert_eq!(got["Config"], want["Config"]);
        if keeps_manifest {
            assert_eq!(got["RepoDigests"], want["RepoDigests"]);
        }
        assert_eq!(
            dst.unpacked_roots(),
            1,
            "loaded images are unpacked like pulls"
        );
        // Loading again is harmless.
        dst.ok(&["load", "-q", "-i", archive.to_str().unwrap()]);
        assert_eq!(dst.ok(&["images", "-q"]).lines().count(), 1);
    }

    // stdout and stdin.
    let piped = dir.path().join("piped.tar");
    let o = src
        .cmd(&["save", &name])
        .stdout(std::fs::File::create(&piped).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dst = Images::new();
    let o = dst
        .cmd(&["load"])
        .stdin(std::fs::File::open(&piped).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(dst.inspect(&name)["Id"], want["Id"]);
}

#[test]
fn archives_written_by_skopeo_load() {
    let reg = start_registry(false);
    push(&reg, "layers", "x:1", None);
    let dir = tempfile::tempdir().unwrap();
    let src = format!("docker://{}/x:1", reg.addr);
    let docker = dir.path().join("docker.tar");
    let oci = dir.path().join("oci.tar");
    let tls = "--src-tls-verify=false";
    skopeo(&[
        "copy",
        "-q",
        tls,
        &src,
        &format!("docker-archive:{}:x:1", docker.display()),
    ]);
    skopeo(&[
        "copy",
        "-q",
        tls,
        &src,
        &format!("oci-archive:{}:x:1", oci.display()),
    ]);
    let want = skopeo_json(&["inspect", "--config", "--tls-verify=false", &src]);
    for archive in [&docker, &oci] {
        let b = Images::new();
        let out = b.ok(&["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out.trim(), "Loaded image: x:1", "{}", archive.display());
        let got = b.inspect("x:1");
        assert_eq!(got["RootFS"]["Layers"], want["rootfs"]["diff_ids"]);
        assert_eq!(got["Config"]["Entrypoint"][0], "/bin/sh");
        assert_eq!(b.unpacked_roots(), 1);
    }
}

/// A tarball written by python's tarfile with the given members (name, data or link).
fn hostile_tar(path: &Path, script: &str) {
    let o = Command::new("python3")
        .arg("-c")
        .arg(format!(
            "import io, tarfile\nt = tarfile.open({:?}, 'w')\n\
             def add(name, data=b'', link=None):\n\
             \x20   i = tarfile.TarInfo(name)\n\
             \x20   if link is not None:\n\
             \x20       i.type, i.linkname = tarfile.SYMTYPE, link\n\
             \x20   i.size = len(data)\n\
             \x20   t.addfile(i, io.BytesIO(data))\n{script}\nt.close()\n",
            path.display().to_string()
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn escaping_or_corrupt_archives_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let b = Images::new();
    let cases = [
        ("dotdot", "add('../escape.json', b'{}')\nadd('manifest.json', b'[]')", "escapes"),
        ("absolute", "add('/tmp/escape.json', b'{}')", "escapes"),
        (
            "symlink",
            "add('l/layer.tar', link='../../etc/passwd')\nadd('manifest.json', b'[]')",
            "escapes",
        ),
        (
            "corrupt-blob",
            &format!(
                "add('oci-layout', b'{{}}')\nadd('index.json', b'{{}}')\nadd('blobs/sha256/{}', b'not this')",
                "0".repeat(64)
            ),
            "digest mismatch",
        ),
        ("empty", "add('README', b'hi')", "neither a Docker archive"),
        (
            "wrong-layer",
            "import hashlib, json\n\
             real = 'sha256:' + hashlib.sha256(b'real').hexdigest()\n\
             add('c.json', json.dumps({'rootfs': {'diff_ids': [real]}}).encode())\n\
             add('l/layer.tar', b'fake')\n\
             add('manifest.json', json.dumps([{'Config': 'c.json', 'RepoTags': ['evil:1'], \
             'Layers': ['l/layer.tar']}]).encode())",
            "the image config says",
        ),
        (
            "misnamed-config",
            "add('1111111111111111111111111111111111111111111111111111111111111111.json', b'{}')",
            "is named for",
        ),
    ];
    for (name, script, expect) in cases {
        let path = dir.path().join(format!("{name}.tar"));
        hostile_tar(&path, script);
        let err = b.fails(&["load", "-i", path.to_str().unwrap()]);
        assert!(err.contains(expect), "{name}: {err}");
    }
    assert!(!dir.path().join("escape.json").exists());
    assert!(!Path::new("/tmp/escape.json").exists());
    assert_eq!(b.ok(&["images", "-q"]), "");
    let blobs = b.home.home.path().join("images/store/blobs/sha256");
    let count = std::fs::read_dir(&blobs).unwrap().count();
    assert!(
        count <= 3,
        "only small verified leftovers for prune: {count}"
    );
}

#[test]
fn pushed_images_pull_back_with_skopeo() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/layers:1", None);
    let b = Images::new();
    let name = format!("{}/fixtures/layers:1", reg.addr);
    b.ok(&["pull", "-q", &name]);
    let digest = b.inspect(&name)["RepoDigests"][0]
        .as_str()
        .unwrap()
        .split('@')
        .nth(1)
        .unwrap()
        .to_owned();
    let dest = format!("{}/pushed/copy:2", reg.addr);
    let out = b.ok(&["push", &name, &dest]);
    assert!(out.contains(&digest), "{out}");
    let out = b.ok(&["push", &name, &dest]);
    assert!(out.contains("0 blobs uploaded"), "{out}");
    let v = skopeo_json(&["inspect", "--tls-verify=false", &format!("docker://{dest}")]);
    assert_eq!(v["Digest"], digest);
    let dir = tempfile::tempdir().unwrap();
    let layout = format!("oci:{}:copy", dir.path().join("layout").display());
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{dest}"),
        &layout,
    ]);

    // Behind htpasswd: refused until login.
    let auth = start_registry(true);
    let dest = format!("{}/secure/copy:3", auth.addr);
    let err = b.fails(&["push", &name, &dest]);
    assert!(err.contains("unauthorized"), "{err}");
    b.ok(&["login", "-u", USER, "-p", PASS, &auth.addr]);
    b.ok(&["push", "-q", &name, &dest]);
    let creds = format!("{USER}:{PASS}");
    let v = skopeo_json(&[
        "inspect",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("docker://{dest}"),
    ]);
    assert_eq!(v["Digest"], digest);
}
