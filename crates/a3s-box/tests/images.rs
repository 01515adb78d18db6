//! The image verbs through the real binary, against Debian's docker-registry on loopback
//! with fixtures built by scripts/build-test-images.sh (umoci, skopeo).

#![allow(clippy::unwrap_used)]

mod common;
mod image_home;
mod registry;

use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use common::{stderr, stdout};
use image_home::Images;
use registry::{push, start_registry, PASS, USER};

#[test]
fn pull_list_tag_inspect_history_rmi() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/layers:1", None);
    let b = Images::new();
    let name = format!("{}/fixtures/layers:1", reg.addr);
    assert_eq!(b.ok(&["pull", "-q", &name]).trim(), name);
    let out = b.ok(&["pull", &name]);
    assert!(out.contains("Digest: sha256:"), "{out}");

    let ids = b.ok(&["images", "-q"]);
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 1);
    assert!(ids[0].len() == 12 && ids[0].bytes().all(|c| c.is_ascii_hexdigit()));
    let rows: serde_json::Value =
        serde_json::from_str(&b.ok(&["images", "--format", "json"])).unwrap();
    let row = &rows[0];
    assert_eq!(row["Repository"], format!("{}/fixtures/layers", reg.addr));
    assert_eq!(row["Tag"], "1");
    let digest = row["Digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"));
    assert!(row["ID"].as_str().unwrap().contains(ids[0]));
    assert!(b.ok(&["images", "--digests"]).contains(&digest));
    assert!(!b.ok(&["images"]).contains(&digest));

    let other = format!("{}/fixtures/other:2", reg.addr);
    b.ok(&["tag", &name, &other]);
    assert_eq!(b.ok(&["images", "-q"]).lines().count(), 1, "same image id");
    let v = b.inspect(&other);
    assert_eq!(v["Id"], row["ID"]);
    let tags = v["RepoTags"].as_array().unwrap();
    assert!(tags.contains(&name.clone().into()) && tags.contains(&other.clone().into()));
    assert!(v["RepoDigests"][0].as_str().unwrap().ends_with(&digest));
    assert_eq!(v["Config"]["Entrypoint"][0], "/bin/sh");
    assert_eq!(v["Config"]["WorkingDir"], "/data");
    assert!(v["Config"]["Env"]
        .as_array()
        .unwrap()
        .contains(&"FOO=bar".into()));
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    // By id, and through the top-level alias.
    let alias: serde_json::Value = serde_json::from_str(&b.ok(&["image-inspect", ids[0]])).unwrap();
    assert_eq!(alias[0]["Id"], v["Id"]);
    let history = b.ok(&["history", &name]);
    assert!(history.lines().count() >= 5, "{history}");

    let err = b.fails(&["image", "inspect", "nosuch:1"]);
    assert!(err.contains("no such image"), "{err}");
    let err = b.fails(&["rmi", ids[0]]);
    assert!(err.contains("referenced by"), "{err}");

    let out = b.ok(&["rmi", &other]);
    assert!(
        out.contains("Untagged:") && !out.contains("Deleted:"),
        "{out}"
    );
    assert!(b.blob_count() > 0);
    let out = b.ok(&["rmi", &name]);
    assert!(out.contains(&format!("Deleted: {digest}")), "{out}");
    assert_eq!(b.ok(&["images", "-q"]), "");
    assert_eq!(b.blob_count(), 0, "content goes with the last name");
    assert_eq!(b.unpacked_roots(), 0, "and so does the unpacked root");
    b.fails(&["rmi", &name]);
}

#[test]
fn rmi_refuses_an_image_a_box_uses_and_prune_cleans_up() {
    let reg = start_registry(false);
    push(&reg, "multiarch", "fixtures/multi:1", None);
    let b = Images::new();
    let name = format!("{}/fixtures/multi:1", reg.addr);
    b.ok(&["pull", "-q", "--platform", "linux/arm64", &name]);
    let v = b.inspect(&name);
    assert_eq!(v["Architecture"], "arm64");
    let digest = v["RepoDigests"][0]
        .as_str()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();

    // The index blob is stored but no name reaches it: prune removes it.
    let before = b.blob_count();
    let out = b.ok(&["image", "prune"]);
    assert!(out.contains("Deleted blobs: 1"), "{out}");
    assert_eq!(b.blob_count(), before - 1);
    // An orphan unpacked root goes too.
    let orphan = b.images_dir().join(format!("rootfs/{}", "ab".repeat(32)));
    std::fs::create_dir_all(orphan.join("bin")).unwrap();
    std::fs::set_permissions(orphan.join("bin"), std::fs::Permissions::from_mode(0o555)).unwrap();

    // A box booting the image's root keeps rmi from deleting it.
    let root = b.images_dir().join(format!("rootfs/{digest}"));
    std::fs::create_dir_all(&root).unwrap();
    b.ok(&[
        "create",
        "--name",
        "user",
        "--rootfs",
        root.to_str().unwrap(),
        "--",
        "true",
    ]);
    let err = b.fails(&["rmi", &name]);
    assert!(err.contains("in use by box user"), "{err}");
    let out = b.ok(&["rmi", "-f", &name]);
    assert!(out.contains("Deleted:"), "{out}");
    assert!(root.is_dir(), "a box's root stays while the box exists");
    b.ok(&["image", "prune"]);
    assert!(root.is_dir() && !orphan.exists());
    b.ok(&["rm", "user"]);
    let out = b.ok(&["image", "prune"]);
    assert!(out.contains("Deleted unpacked images: 1"), "{out}");
    assert!(!root.exists());
}

#[test]
fn login_then_pull_from_an_htpasswd_registry() {
    let reg = start_registry(true);
    push(
        &reg,
        "amd64",
        "private/app:1",
        Some(&format!("{USER}:{PASS}")),
    );
    let b = Images::new();
    let name = format!("{}/private/app:1", reg.addr);
    let err = b.fails(&["pull", "-q", &name]);
    assert!(err.contains("unauthorized"), "{err}");
    let err = b.fails(&["login", "-u", USER, "-p", "wrong", &reg.addr]);
    assert!(err.contains("incorrect username or password"), "{err}");

    let mut child = b
        .home
        .cmd()
        .env("DOCKER_CONFIG", b.docker_config.path())
        .args(["login", "-u", USER, "--password-stdin", &reg.addr])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{PASS}").unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("Login Succeeded"));
    let auth = b.home.home.path().join("auth.json");
    let mode = std::fs::metadata(&auth).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    assert_eq!(b.ok(&["pull", "-q", &name]).trim(), name);
    b.ok(&["logout", &reg.addr]);
    b.ok(&["rmi", &name]);
    b.fails(&["pull", "-q", &name]);
}

#[test]
fn concurrent_pulls_share_one_store_and_one_unpacked_root() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/shared:1", None);
    let b = Images::new();
    let name = format!("{}/fixtures/shared:1", reg.addr);
    let children: Vec<_> = (0..3)
        .map(|_| {
            b.home
                .cmd()
                .env("DOCKER_CONFIG", b.docker_config.path())
                .args(["pull", "-q", &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let roots: Vec<String> = std::fs::read_dir(b.images_dir().join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(roots.len(), 1, "one unpacked root, no leftovers: {roots:?}");
    let root = b.images_dir().join("rootfs").join(&roots[0]);
    assert!(root.join("bin/busybox").is_file() && !root.join("etc/deleted.txt").exists());
    let tmp = std::fs::read_dir(b.images_dir().join("store/tmp"))
        .unwrap()
        .count();
    assert_eq!(tmp, 0);
}

#[test]
fn a_hostile_image_is_refused_and_leaves_no_root() {
    let reg = start_registry(false);
    push(&reg, "hostile", "fixtures/hostile:1", None);
    let b = Images::new();
    let err = b.fails(&["pull", "-q", &format!("{}/fixtures/hostile:1", reg.addr)]);
    assert!(err.contains("outside the root"), "{err}");
    assert_eq!(b.unpacked_roots(), 0);
    let hidden = std::fs::read_dir(b.images_dir().join("rootfs"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(hidden, 0, "no partial unpack left behind");
    assert!(!std::path::Path::new("/tmp/a3s-hostile-owned").exists());
}
