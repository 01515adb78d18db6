//! `tar-create` → `tar-extract` round trips and hostile archives, on the host
//! in temp directories (`extract` without the `chroot` of `run`).
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{Archive, Builder, EntryType, Header};

use super::super::tar_create::create;
use a3s_box_archive::testing::append_raw;

use super::*;

const MTIME: i64 = 1_600_000_000;

fn set_time(path: &Path) {
    let ts = TimeSpec::new(MTIME, 0);
    utimensat(None, path, &ts, &ts, UtimensatFlags::NoFollowSymlink).unwrap();
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A tree with every kind of entry, mtimes set to [`MTIME`].
fn sample_tree(base: &Path) -> std::path::PathBuf {
    let tree = base.join("tree");
    fs::create_dir_all(tree.join("sub/deeper")).unwrap();
    fs::write(tree.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(tree.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::set_permissions(tree.join("sub"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::hard_link(tree.join("suid"), tree.join("sub/hard")).unwrap();
    symlink("../suid", tree.join("sub/link")).unwrap();
    symlink("/etc/passwd", tree.join("abs-link")).unwrap();
    let long = "n".repeat(200);
    fs::write(tree.join("sub/deeper").join(&long), b"long").unwrap();
    nix::unistd::mkfifo(
        &tree.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(tree.join("sock")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(tree.join("suid"), Some(1234), Some(5678)).unwrap();
        fs::set_permissions(tree.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    }
    for p in [
        "suid",
        "sub/link",
        "abs-link",
        "fifo",
        "sub/deeper",
        "sub",
        "",
    ] {
        set_time(&tree.join(p));
    }
    tree
}

#[test]
fn round_trip_keeps_everything_but_sockets() {
    let src = tempfile::tempdir().unwrap();
    let tree = sample_tree(src.path());
    let mut tar = Vec::new();
    let created = create(&tree, &mut tar).unwrap();
    assert_eq!(created.skipped_sockets, 1);

    let dst = tempfile::tempdir().unwrap();
    let root = dst.path().canonicalize().unwrap();
    let extracted = extract(tar.as_slice(), &root).unwrap();
    assert_eq!(extracted.entries, created.entries);
    let out = root.join("tree");
    let meta = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(meta("suid").mode() & 0o7777, 0o4755);
    assert_eq!(meta("sub").mode() & 0o7777, 0o1777);
    assert_eq!(meta("suid").ino(), meta("sub/hard").ino());
    assert_eq!(
        fs::read_link(out.join("sub/link")).unwrap(),
        Path::new("../suid")
    );
    assert_eq!(
        fs::read_link(out.join("abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert!(meta("fifo").file_type().is_fifo());
    assert!(!out.join("sock").exists());
    let long = format!("sub/deeper/{}", "n".repeat(200));
    assert_eq!(fs::read(out.join(long)).unwrap(), b"long");
    for p in ["suid", "sub/link", "fifo", "sub/deeper", "sub", ""] {
        assert_eq!(meta(p).mtime(), MTIME, "mtime of {p:?}");
    }
    if is_root() {
        assert_eq!((meta("suid").uid(), meta("suid").gid()), (1234, 5678));
    }
    // Extracting again replaces what is there.
    extract(tar.as_slice(), &root).unwrap();
    assert_eq!(meta("suid").ino(), meta("sub/hard").ino());
}

#[test]
fn files_and_symlinks_are_single_entries_named_by_basename() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("hosts"), b"127.0.0.1 localhost\n").unwrap();
    symlink("hosts", src.path().join("link")).unwrap();
    for (path, kind) in [("hosts", EntryType::Regular), ("link", EntryType::Symlink)] {
        let mut tar = Vec::new();
        create(&src.path().join(path), &mut tar).unwrap();
        let mut archive = Archive::new(tar.as_slice());
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().into_owned(), e.header().entry_type())
            })
            .collect();
        assert_eq!(entries, vec![(Path::new(path).to_owned(), kind)]);
    }
}

/// Extract `entries` into a fresh `base/dst` and return the result; `base`
/// is kept so the test can check nothing landed beside `dst`.
fn hostile(
    entries: &[(&str, EntryType, &str)],
) -> (tempfile::TempDir, Result<Extracted, HelperError>) {
    let mut builder = Builder::new(Vec::new());
    for (name, kind, link) in entries {
        append_raw(&mut builder, name, *kind, link, b"pwned");
    }
    let tar = builder.into_inner().unwrap();
    let base = tempfile::tempdir().unwrap();
    let root = base.path().canonicalize().unwrap().join("dst");
    fs::create_dir(&root).unwrap();
    let result = extract(tar.as_slice(), &root);
    (base, result)
}

fn only_dst_in(base: &Path) {
    let names: Vec<_> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("dst")]);
}

#[test]
fn dotdot_entries_are_refused() {
    let (base, result) = hostile(&[("../x", EntryType::Regular, "")]);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("'..'"), "{err}");
    only_dst_in(base.path());
}

#[test]
fn absolute_entries_are_rooted() {
    let (base, result) = hostile(&[("/etc/x", EntryType::Regular, "")]);
    result.unwrap();
    assert_eq!(fs::read(base.path().join("dst/etc/x")).unwrap(), b"pwned");
    only_dst_in(base.path());
}

#[test]
fn symlinks_out_of_the_destination_are_not_followed() {
    for link in ["/", "..", "../..", "/etc"] {
        let (base, result) = hostile(&[
            ("a", EntryType::Symlink, link),
            ("a/etc/passwd", EntryType::Regular, ""),
        ]);
        let err = result.unwrap_err();
        assert!(err.to_string().contains("symlink"), "{link}: {err}");
        only_dst_in(base.path());
    }
}

#[test]
fn hardlinks_must_point_inside() {
    for target in ["/etc/shadow", "../outside", "missing"] {
        let (base, result) = hostile(&[("h", EntryType::Link, target)]);
        assert!(result.is_err(), "{target}");
        assert!(!base.path().join("dst/h").exists());
    }
    let (base, result) = hostile(&[("f", EntryType::Regular, ""), ("h", EntryType::Link, "/f")]);
    result.unwrap();
    let meta = |p: &str| fs::metadata(base.path().join("dst").join(p)).unwrap();
    assert_eq!(meta("f").ino(), meta("h").ino());
}

#[test]
fn directories_are_not_replaced_by_files() {
    let (base, result) = hostile(&[
        ("d/", EntryType::Directory, ""),
        ("d/keep", EntryType::Regular, ""),
        ("d", EntryType::Regular, ""),
    ]);
    assert!(result.is_err());
    assert!(base.path().join("dst/d/keep").is_file());
}

#[test]
fn huge_names_fail_inside() {
    let mut builder = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_size(0);
    h.set_entry_type(EntryType::Regular);
    builder
        .append_data(&mut h, "x".repeat(100_000), std::io::empty())
        .unwrap();
    let tar = builder.into_inner().unwrap();
    let base = tempfile::tempdir().unwrap();
    let root = base.path().canonicalize().unwrap().join("dst");
    fs::create_dir(&root).unwrap();
    assert!(extract(tar.as_slice(), &root).is_err());
    only_dst_in(base.path());
}

#[test]
fn extended_attributes_round_trip_with_hardlinks() {
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("tree");
    fs::create_dir(&tree).unwrap();
    fs::write(tree.join("a"), b"data").unwrap();
    fs::hard_link(tree.join("a"), tree.join("b")).unwrap();
    let set = |name: &str, value: &[u8]| {
        a3s_box_archive::xattrs::set(&tree.join("a"), std::ffi::OsStr::new(name), value).unwrap()
    };
    if !set("user.note", b"line\nbreak=") {
        eprintln!("skipped: the temp filesystem keeps no attributes");
        return;
    }
    if is_root() {
        // cap_dac_override,cap_fowner+ep: a 0x0a byte in a binary value.
        set("security.capability", &capability(0b1010));
    }
    fs::set_permissions(tree.join("a"), fs::Permissions::from_mode(0o4555)).unwrap();
    let mut tar = Vec::new();
    create(&tree, &mut tar).unwrap();

    let dst = tempfile::tempdir().unwrap();
    let root = dst.path().canonicalize().unwrap();
    extract(tar.as_slice(), &root).unwrap();
    let (a, b) = (root.join("tree/a"), root.join("tree/b"));
    assert_eq!(
        fs::metadata(&a).unwrap().ino(),
        fs::metadata(&b).unwrap().ino()
    );
    assert_eq!(fs::metadata(&a).unwrap().mode() & 0o7777, 0o4555);
    let got = a3s_box_archive::xattrs::read(&a).records;
    let mut expected = vec![("user.note".to_owned(), b"line\nbreak=".to_vec())];
    if is_root() {
        expected.insert(0, ("security.capability".to_owned(), capability(0b1010)));
    }
    assert_eq!(got, expected);
}

/// A `vfs_cap_data` (revision 2) value granting `permitted` effectively.
fn capability(permitted: u32) -> Vec<u8> {
    let mut v = 0x0200_0001_u32.to_le_bytes().to_vec(); // revision 2, effective
    for word in [permitted, 0, 0, 0] {
        v.extend_from_slice(&word.to_le_bytes());
    }
    v
}
