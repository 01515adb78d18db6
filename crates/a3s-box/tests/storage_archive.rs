//! `export`, `commit` and `cp` keep hardlinks and extended attributes:
//! through the real binary and real VMs, from a box made from an image (so
//! `commit` writes the box's own layer).
//!
//! The test rootfs's busybox has no `setfattr`, so the attributes are set
//! on the host and copied into the box with `cp`, which covers the way in
//! (`tar-extract`) too.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use a3s_box_archive::read::{self, EntryType, Member, ReadError};
use a3s_box_archive::xattrs;
use common::{ok, rootfs, TestHome};

/// The attributes the host gives `/data/x`: a `user.*` one, and a file
/// capability (`cap_net_raw+ep`) when the test runs as root.
fn host_xattrs() -> Vec<(String, Vec<u8>)> {
    let mut attrs = vec![("user.origin".to_owned(), b"from-host".to_vec())];
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        // vfs_cap_data revision 2, effective; permitted = bit 13 (CAP_NET_RAW).
        let mut cap = 0x0200_0001_u32.to_le_bytes().to_vec();
        for word in [1u32 << 13, 0, 0, 0] {
            cap.extend_from_slice(&word.to_le_bytes());
        }
        attrs.insert(0, ("security.capability".to_owned(), cap));
    }
    attrs
}

/// The members of the tar file at `path`, by name.
fn members(path: &Path) -> HashMap<String, Member> {
    let file = std::fs::File::open(path).unwrap();
    let mut out = HashMap::new();
    read::for_each(file, |m, _| {
        out.insert(m.name.display().to_string(), m);
        Ok::<_, ReadError>(())
    })
    .unwrap();
    out
}

fn sorted_xattrs(m: &Member) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = m
        .xattrs
        .iter()
        .map(|(n, v)| (n.to_str().unwrap().to_owned(), v.clone()))
        .collect();
    v.sort();
    v
}

/// `DIR/a` and `DIR/b` are one file with two names; `DIR/x` has the host's
/// attributes.
fn assert_copied(dir: &Path) {
    let meta = |p: &str| std::fs::metadata(dir.join(p)).unwrap();
    assert_eq!(meta("a").ino(), meta("b").ino(), "a and b are hard links");
    assert_eq!(meta("a").nlink(), 2);
    assert_eq!(std::fs::read(dir.join("b")).unwrap(), b"hello\n");
    assert_eq!(xattrs::read(&dir.join("x")).records, host_xattrs());
}

/// `stat -c '%h %i'` of `/data/a` and `/data/b`: two links, one inode.
fn assert_one_inode(stat: &str) {
    let lines: Vec<&str> = stat.lines().collect();
    assert_eq!(lines.len(), 2, "{stat}");
    assert_eq!(lines[0], lines[1], "same inode: {stat}");
    assert!(lines[0].starts_with("2 "), "two links: {stat}");
}

#[test]
fn export_commit_and_cp_keep_hardlinks_and_xattrs() {
    let b = TestHome::new();
    let work = tempfile::tempdir().unwrap();
    let host = work.path().join("host");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("x"), "x\n").unwrap();
    for (name, value) in host_xattrs() {
        let kept = xattrs::set(&host.join("x"), OsStr::new(&name), &value).unwrap();
        assert!(
            kept,
            "{} keeps no extended attributes",
            work.path().display()
        );
    }

    // An image of the test rootfs, and a box from it.
    let base = work.path().join("base.tar");
    let made = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs())
        .arg("-cf")
        .arg(&base)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    ok(&b.cli(&["import", base.to_str().unwrap(), "base:1"]));
    let small = ["--cpus", "1", "--memory", "128m"];
    let o = b
        .cmd()
        .args(["run", "-d", "--name", "arch"])
        .args(small)
        .args(["base:1", "sleep", "600"])
        .output()
        .unwrap();
    ok(&o);
    b.wait_for("arch", 60, |v| v["State"]["Status"] == "running");
    let sh = "mkdir /data && echo hello > /data/a && ln /data/a /data/b";
    ok(&b.cli(&["exec", "arch", "sh", "-c", sh]));
    ok(&b.cli(&["cp", host.join("x").to_str().unwrap(), "arch:/data/x"]));
    let stat = ["stat", "-c", "%h %i", "/data/a", "/data/b"];
    assert_one_inode(&ok(&b.cli(&[&["exec", "arch"][..], &stat].concat())));

    // export: `b` is a hardlink to `a`, `x` carries the attributes.
    let exported = work.path().join("export.tar");
    ok(&b.cli(&["export", "-o", exported.to_str().unwrap(), "arch"]));
    let tar = members(&exported);
    assert_eq!(tar["data/a"].kind, EntryType::Regular);
    assert_eq!(tar["data/b"].kind, EntryType::Link);
    assert_eq!(tar["data/b"].link.as_deref(), Some(Path::new("data/a")));
    assert_eq!(sorted_xattrs(&tar["data/x"]), host_xattrs());

    // cp out of the running box.
    let out = work.path().join("out");
    std::fs::create_dir(&out).unwrap();
    ok(&b.cli(&["cp", "arch:/data", out.to_str().unwrap()]));
    assert_copied(&out.join("data"));

    // commit: the layer holds the link, the new image has one inode.
    ok(&b.cli(&["commit", "arch", "next:1"]));
    let o = b
        .cmd()
        .args(["run", "--rm"])
        .args(small)
        .arg("next:1")
        .args(stat)
        .output()
        .unwrap();
    assert_one_inode(&ok(&o));
    // And what the image's root keeps comes back out of a box of it
    // (a stopped one, booted briefly for the copy).
    let o = b
        .cmd()
        .args(["create", "--name", "again"])
        .args(small)
        .args(["next:1", "true"])
        .output()
        .unwrap();
    ok(&o);
    let again = work.path().join("again");
    std::fs::create_dir(&again).unwrap();
    ok(&b.cli(&["cp", "again:/data", again.to_str().unwrap()]));
    assert_copied(&again.join("data"));
    ok(&b.cli(&["rm", "-f", "arch", "again"]));
}
