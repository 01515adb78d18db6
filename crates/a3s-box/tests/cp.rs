//! `cp`, `top` and `stats` through the real binary against boxes running in
//! real VMs.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Stdio;

use common::{stderr, stdout, TestHome};

const IDLE: &[&str] = &["sh", "-c", "while :; do sleep 1; done"];

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    stdout(o)
}

fn tree(root: &Path) {
    std::fs::create_dir_all(root.join("sub/deep")).unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o4751)).unwrap();
    std::fs::write(root.join("sub/deep/data"), vec![7u8; 300_000]).unwrap();
    std::fs::set_permissions(root.join("sub"), std::fs::Permissions::from_mode(0o710)).unwrap();
    symlink("sub/deep/data", root.join("link")).unwrap();
    std::os::unix::fs::chown(root.join("sub/deep/data"), Some(1234), Some(4321)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    std::fs::File::options()
        .write(true)
        .open(root.join("sub/deep/data"))
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn same_tree(a: &Path, b: &Path) {
    for rel in ["run.sh", "sub", "sub/deep", "sub/deep/data", "link"] {
        let (ma, mb) = (
            std::fs::symlink_metadata(a.join(rel)).unwrap(),
            std::fs::symlink_metadata(b.join(rel)).unwrap(),
        );
        assert_eq!(ma.mode(), mb.mode(), "mode of {rel}");
        assert_eq!((ma.uid(), ma.gid()), (mb.uid(), mb.gid()), "owner of {rel}");
        if ma.is_file() {
            assert_eq!(
                std::fs::read(a.join(rel)).unwrap(),
                std::fs::read(b.join(rel)).unwrap()
            );
            assert_eq!(ma.mtime(), mb.mtime(), "mtime of {rel}");
        }
    }
    assert_eq!(
        std::fs::read_link(b.join("link")).unwrap(),
        Path::new("sub/deep/data")
    );
}

#[test]
fn cp_round_trips_a_tree_with_modes_owners_mtimes_and_links() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], IDLE);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    tree(&src);

    // Host → box: a new name, then into an existing directory.
    ok(&b.cli(&["cp", src.to_str().unwrap(), "x:/tmp/copied"]));
    ok(&b.cli(&["cp", src.to_str().unwrap(), "x:/tmp"]));
    let listing = ok(&b.cli(&[
        "exec", "x", "sh", "-c",
        "stat -c '%a %u:%g %Y %n' /tmp/copied/run.sh /tmp/copied/sub /tmp/copied/sub/deep/data /tmp/src/run.sh; readlink /tmp/copied/link",
    ]));
    assert!(listing.contains("4751 0:0"), "{listing}");
    assert!(listing.contains("710 0:0"), "{listing}");
    assert!(
        listing.contains("644 1234:4321 1000000000 /tmp/copied/sub/deep/data"),
        "{listing}"
    );
    assert!(listing.contains("/tmp/src/run.sh"), "{listing}");
    assert!(listing.ends_with("sub/deep/data\n"), "{listing}");

    // Box → host, and the result is the tree we started from.
    let back = work.path().join("back");
    ok(&b.cli(&["cp", "x:/tmp/copied", back.to_str().unwrap()]));
    same_tree(&src, &back);
    // A single file into an existing host directory.
    ok(&b.cli(&["cp", "x:/etc/passwd", work.path().to_str().unwrap()]));
    assert!(std::fs::read_to_string(work.path().join("passwd"))
        .unwrap()
        .contains("root:"));

    // `-`: a tar stream out, and one in.
    let o = b.cli(&["cp", "x:/tmp/copied/sub", "-"]);
    let tar = ok_bytes(&o);
    let names = list_tar(&tar);
    assert!(names.contains("sub/deep/data"), "{names}");
    let mut child = b
        .cmd()
        .args(["cp", "-", "x:/tmp"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&tar).unwrap();
    assert!(child.wait().unwrap().success());
    ok(&b.cli(&["exec", "x", "test", "-f", "/tmp/sub/deep/data"]));

    // Errors say what is wrong.
    let o = b.cli(&["cp", "x:/nope", work.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("no such file"), "{}", stderr(&o));
    let o = b.cli(&["cp", "/etc/hostname", "/tmp/x"]);
    assert_eq!(o.status.code(), Some(125));
    b.cli(&["rm", "-f", "x"]);
}

fn ok_bytes(o: &std::process::Output) -> Vec<u8> {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    o.stdout.clone()
}

fn list_tar(bytes: &[u8]) -> String {
    let mut child = std::process::Command::new("tar")
        .arg("-t")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    stdout(&child.wait_with_output().unwrap())
}

#[test]
fn top_and_stats_describe_a_running_box() {
    let b = TestHome::new();
    b.run_detached(
        &["--name", "x"],
        &["sh", "-c", "sleep 777 & while :; do sleep 1; done"],
    );
    let top = ok(&b.cli(&["top", "x"]));
    assert!(top.starts_with("UID"), "{top}");
    assert!(top.contains("sleep 777"), "{top}");
    let custom = ok(&b.cli(&["top", "x", "-o", "pid,comm"]));
    assert!(
        custom.contains("COMMAND") && custom.contains("sleep"),
        "{custom}"
    );

    let json = ok(&b.cli(&["stats", "--no-stream", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert_eq!(v["name"], "x");
    assert!(v["pids"].as_u64().unwrap() >= 3, "{v}");
    assert_eq!(v["mem_limit_bytes"], 128 * 1024 * 1024);
    let used = v["mem_usage_bytes"].as_u64().unwrap();
    assert!(used > 1_000_000 && used < 128 * 1024 * 1024, "{v}");
    assert!(v["cpu_percent"].as_f64().unwrap() >= 0.0);
    let table = ok(&b.cli(&["stats", "--no-stream", "x"]));
    assert!(
        table.starts_with("BOX ID") && table.contains(" x "),
        "{table}"
    );
    b.cli(&["rm", "-f", "x"]);
}

#[test]
fn cp_works_on_a_stopped_box_through_its_writable_layer() {
    let b = TestHome::new();
    b.run_detached(
        &["--name", "x"],
        &["sh", "-c", "echo kept > /etc/marker; exec sleep 1000"],
    );
    std::thread::sleep(std::time::Duration::from_secs(1));
    ok(&b.cli(&["stop", "-t", "1", "x"]));
    let work = tempfile::tempdir().unwrap();
    ok(&b.cli(&["cp", "x:/etc/marker", work.path().to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(work.path().join("marker")).unwrap(),
        "kept\n"
    );
    std::fs::write(work.path().join("in.txt"), "from the host\n").unwrap();
    ok(&b.cli(&[
        "cp",
        work.path().join("in.txt").to_str().unwrap(),
        "x:/root/",
    ]));
    // Still stopped, and the file is there when it runs again.
    assert_eq!(b.inspect("x")["State"]["Status"], "exited");
    ok(&b.cli(&["start", "x"]));
    assert_eq!(
        ok(&b.cli(&["exec", "x", "cat", "/root/in.txt"])),
        "from the host\n"
    );
    b.cli(&["rm", "-f", "x"]);
}
