//! Bind mounts: a host directory shared both ways with owners and `:ro`,
//! and a single host file shared without the rest of its directory.

use std::os::unix::fs::MetadataExt;

use super::common::{rootfs, stderr, TestHome};
use super::ok;

#[test]
fn bind_mounts_share_both_ways_with_owners_and_read_only_is_enforced() {
    let b = TestHome::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("from-host"), "h\n").unwrap();
    std::os::unix::fs::chown(host.path().join("from-host"), Some(1234), Some(5678)).unwrap();
    let src = host.path().to_str().unwrap();
    let id = b.run_detached(
        &[
            "-v",
            &format!("{src}:/data"),
            "--mount",
            &format!("type=bind,source={src},target=/ro,readonly"),
        ],
        &["sleep", "600"],
    );
    b.wait_for(&id, 60, |v| v["State"]["Status"] == "running");
    let out = ok(&b.cli(&["exec", &id, "stat", "-c", "%u:%g %n", "/data/from-host"]));
    assert_eq!(out, "1234:5678 /data/from-host\n");
    ok(&b.cli(&[
        "exec",
        &id,
        "sh",
        "-c",
        "echo g > /data/from-box; chown 42:43 /data/from-box",
    ]));
    let m = std::fs::metadata(host.path().join("from-box")).unwrap();
    assert_eq!((m.uid(), m.gid()), (42, 43));
    assert_eq!(
        std::fs::read_to_string(host.path().join("from-box")).unwrap(),
        "g\n"
    );
    std::fs::write(host.path().join("later"), "now\n").unwrap();
    assert_eq!(
        ok(&b.cli(&["exec", &id, "cat", "/data/later", "/ro/later"])),
        "now\nnow\n"
    );
    let o = b.cli(&["exec", &id, "sh", "-c", "echo x > /ro/nope"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    assert!(!host.path().join("nope").exists());
    ok(&b.cli(&["rm", "-f", &id]));
    assert!(
        host.path().join("from-box").exists(),
        "rm leaves host files alone"
    );
}

/// A read-only bind of a directory that holds a3s-box's own home (as
/// `-v /:/host:ro` does): the share's daemon makes its socket there first.
#[test]
fn a_read_only_bind_may_hold_the_box_home() {
    let b = TestHome::new();
    let above = b
        .home
        .path()
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let name = b
        .home
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let o = b.run(
        &["-v", &format!("{above}:/up:ro")],
        &[
            "sh",
            "-c",
            &format!("ls -d /up/{name}; touch /up/x || echo refused"),
        ],
    );
    assert_eq!(ok(&o), format!("/up/{name}\nrefused\n"));
    assert!(!b.home.path().parent().unwrap().join("x").exists());
}

#[test]
fn a_single_host_file_is_shared_without_its_directory() {
    let b = TestHome::new();
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("app.conf");
    std::fs::write(&file, "v1\n").unwrap();
    std::os::unix::fs::chown(&file, Some(1234), Some(5678)).unwrap();
    std::fs::write(host.path().join("secret"), "do not share\n").unwrap();
    let f = file.to_str().unwrap();
    let id = b.run_detached(
        &[
            "-v",
            &format!("{f}:/etc/app.conf"),
            "-v",
            &format!("{f}:/deep/new/ro.conf:ro"),
        ],
        &["sleep", "600"],
    );
    b.wait_for(&id, 60, |v| v["State"]["Status"] == "running");
    assert_eq!(
        ok(&b.cli(&["exec", &id, "stat", "-c", "%u:%g %s", "/etc/app.conf"])),
        "1234:5678 3\n"
    );
    ok(&b.cli(&["exec", &id, "sh", "-c", "echo from-box >> /etc/app.conf"]));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "v1\nfrom-box\n");
    std::fs::write(&file, "v2\n").unwrap();
    assert_eq!(
        ok(&b.cli(&["exec", &id, "cat", "/etc/app.conf", "/deep/new/ro.conf"])),
        "v2\nv2\n"
    );
    let o = b.cli(&["exec", &id, "sh", "-c", "echo x >> /deep/new/ro.conf"]);
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    // Even root in the box, mounting the share itself, sees only the file.
    let listing = ok(&b.cli(&[
        "exec",
        &id,
        "sh",
        "-c",
        "mkdir -p /m && mount -t virtiofs a3s-fs0 /m && ls -a /m; touch /m/new 2>&1; umount /m",
    ]));
    assert!(listing.starts_with(".\n..\nfile\n"), "{listing}");
    assert!(!listing.contains("secret"), "{listing}");
    assert!(listing.contains("Read-only file system"), "{listing}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "v2\n");
    ok(&b.cli(&["rm", "-f", &id]));

    // Only directories and regular files can be shared.
    let mut c = b.cmd();
    c.args(["run", "--rm", "-v", "/dev/null:/x", "--rootfs"])
        .arg(rootfs())
        .args(["--", "true"]);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("neither a directory nor a regular file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn volumes_from_shares_another_boxes_volumes_and_binds() {
    let b = TestHome::new();
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("h"), "host\n").unwrap();
    let src = host.path().to_str().unwrap();
    let mut c = b.cmd();
    c.args(["create", "--name", "a", "--cpus", "1", "--memory", "128m"])
        .args(["-v", "vol:/data", "-v", &format!("{src}:/h"), "-v", "/anon"])
        .args(["--tmpfs", "/t", "--rootfs"])
        .arg(rootfs())
        .args(["--", "sh", "-c", "echo a > /data/x; echo a > /anon/y"]);
    ok(&c.output().unwrap());
    ok(&b.cli(&["start", "-a", "a"]));
    let read = "cat /data/x /anon/y /h/h; grep -c ' /t ' /proc/mounts; touch /data/no";
    let mut c = b.cmd();
    c.args(["create", "--name", "b", "--cpus", "1", "--memory", "128m"])
        .args(["--volumes-from", "a:ro", "--rootfs"])
        .arg(rootfs())
        .args(["--", "sh", "-c", read]);
    ok(&c.output().unwrap());
    let o = b.cli(&["start", "-a", "b"]);
    assert_eq!(super::common::stdout(&o), "a\na\nhost\n0\n");
    assert!(
        stderr(&o).contains("Read-only file system"),
        "{}",
        stderr(&o)
    );
    // The anonymous volume stays a's: removing b with -v keeps it.
    let before = ok(&b.cli(&["volume", "ls", "-q"]));
    assert_eq!(before.lines().count(), 2, "{before}");
    ok(&b.cli(&["rm", "-v", "b"]));
    assert_eq!(ok(&b.cli(&["volume", "ls", "-q"])), before);
    ok(&b.cli(&["rm", "-v", "a"]));
    assert_eq!(ok(&b.cli(&["volume", "ls", "-q"])), "vol\n");

    let o = b.cli(&[
        "create",
        "--volumes-from",
        "nope",
        "--rootfs",
        "/",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    let o = b.cli(&[
        "create",
        "--volumes-from",
        "a:rx",
        "--rootfs",
        "/",
        "--",
        "true",
    ]);
    assert!(
        stderr(&o).contains("unknown mode \"rx\": use BOX, BOX:ro or BOX:rw"),
        "{}",
        stderr(&o)
    );
}
