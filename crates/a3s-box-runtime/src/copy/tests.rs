//! `pack` → `unpack` round trips and hostile archives, in temp directories.
#![allow(clippy::unwrap_used)]

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::{Builder, EntryType, Header};

use super::unpack::rename_components;
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
fn sample_tree(base: &Path) -> PathBuf {
    let tree = base.join("tree");
    fs::create_dir_all(tree.join("sub/ro")).unwrap();
    fs::write(tree.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::write(tree.join("sub/ro/inside"), b"x").unwrap();
    fs::hard_link(tree.join("suid"), tree.join("sub/hard")).unwrap();
    symlink("../suid", tree.join("sub/link")).unwrap();
    symlink("/etc/passwd", tree.join("abs-link")).unwrap();
    fs::write(tree.join("sub").join("n".repeat(200)), b"long").unwrap();
    nix::unistd::mkfifo(
        &tree.join("fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o640),
    )
    .unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(tree.join("sock")).unwrap();
    if is_root() {
        std::os::unix::fs::lchown(tree.join("suid"), Some(1234), Some(5678)).unwrap();
    }
    let mode = |p: &str, m: u32| fs::set_permissions(tree.join(p), fs::Permissions::from_mode(m));
    mode("suid", 0o4755).unwrap();
    mode("sub", 0o1777).unwrap();
    mode("sub/ro", 0o555).unwrap();
    mode("", 0o750).unwrap();
    for p in ["suid", "sub/link", "abs-link", "fifo", "sub/ro", "sub", ""] {
        set_time(&tree.join(p));
    }
    tree
}

#[test]
fn round_trip_keeps_modes_times_links_and_owners() {
    let src = tempfile::tempdir().unwrap();
    let tree = sample_tree(src.path());
    let mut tar = Vec::new();
    let packed = pack(&tree, "renamed", &mut tar).unwrap();
    assert_eq!(packed.skipped_sockets, 1);

    let dst = tempfile::tempdir().unwrap();
    let unpacked = unpack(tar.as_slice(), dst.path(), None).unwrap();
    assert_eq!(unpacked.skipped, 1, "the FIFO");
    assert_eq!(unpacked.skipped_names, vec![PathBuf::from("renamed/fifo")]);
    assert_eq!(unpacked.entries + unpacked.skipped, packed.entries);
    let out = dst.path().join("renamed");
    let meta = |p: &str| fs::symlink_metadata(out.join(p)).unwrap();
    assert_eq!(meta("suid").mode() & 0o7777, 0o4755);
    assert_eq!(meta("sub").mode() & 0o7777, 0o1777);
    assert_eq!(meta("sub/ro").mode() & 0o7777, 0o555);
    assert_eq!(fs::read(out.join("sub/ro/inside")).unwrap(), b"x");
    assert_eq!(meta("suid").ino(), meta("sub/hard").ino());
    assert_eq!(
        fs::read_link(out.join("sub/link")).unwrap(),
        Path::new("../suid")
    );
    assert_eq!(
        fs::read_link(out.join("abs-link")).unwrap(),
        Path::new("/etc/passwd")
    );
    assert_eq!(
        fs::read(out.join("sub").join("n".repeat(200))).unwrap(),
        b"long"
    );
    for p in ["suid", "sub/link", "abs-link", "sub/ro", "sub", ""] {
        assert_eq!(meta(p).mtime(), MTIME, "mtime of {p:?}");
    }
    if is_root() {
        assert_eq!((meta("suid").uid(), meta("suid").gid()), (1234, 5678));
    }
    // No temporary files are left, and extracting again replaces in place.
    unpack(tar.as_slice(), dst.path(), None).unwrap();
    assert_eq!(meta("suid").ino(), meta("sub/hard").ino());
    let names: Vec<OsString> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| !n.to_string_lossy().starts_with(".a3s-cp")),
        "{names:?}"
    );
}

#[test]
fn devices_pack_as_devices() {
    if !Path::new("/dev/null")
        .metadata()
        .unwrap()
        .file_type()
        .is_char_device()
    {
        return;
    }
    let mut tar = Vec::new();
    pack(Path::new("/dev/null"), "null", &mut tar).unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(entry.header().entry_type(), EntryType::Char);
    assert_eq!(entry.header().device_major().unwrap(), Some(1));
    assert_eq!(entry.header().device_minor().unwrap(), Some(3));
}

#[test]
fn renames_follow_the_plan() {
    let src = tempfile::tempdir().unwrap();
    let tree = sample_tree(src.path());
    let mut tar = Vec::new();
    pack(&tree, "tree", &mut tar).unwrap();
    let dst = tempfile::tempdir().unwrap();
    // `cp BOX:/tree/. DEST`: the contents straight into DEST.
    unpack(tar.as_slice(), dst.path(), Some(("tree", "."))).unwrap();
    assert!(dst.path().join("suid").is_file());
    assert_eq!(
        fs::metadata(dst.path().join("sub/hard")).unwrap().ino(),
        fs::metadata(dst.path().join("suid")).unwrap().ino()
    );
    // `cp BOX:/tree DEST/new`.
    unpack(tar.as_slice(), dst.path(), Some(("tree", "new"))).unwrap();
    assert!(dst.path().join("new/sub/ro/inside").is_file());
    // `cp ./tree/. BOX:/new` packs the contents under `.`; `.` → `new2`.
    let mut dot = Vec::new();
    pack(&tree, ".", &mut dot).unwrap();
    unpack(dot.as_slice(), dst.path(), Some((".", "new2"))).unwrap();
    let ino = |p: &str| fs::metadata(dst.path().join(p)).unwrap().ino();
    assert_eq!(ino("new2/suid"), ino("new2/sub/hard"));
    assert_eq!(
        fs::metadata(dst.path().join("new2")).unwrap().mode() & 0o7777,
        0o750
    );
    // An archive rooted elsewhere than asked is refused.
    let err = unpack(tar.as_slice(), dst.path(), Some(("other", "x"))).unwrap_err();
    assert!(matches!(err, CopyError::UnexpectedRoot { .. }), "{err}");
    // Bad names.
    let err = unpack(tar.as_slice(), dst.path(), Some(("a/b", "x"))).unwrap_err();
    assert!(matches!(err, CopyError::BadArchiveName { .. }), "{err}");
    assert!(matches!(
        pack(&tree, "..", std::io::sink()),
        Err(CopyError::BadArchiveName { .. })
    ));
}

#[test]
fn rename_components_rules() {
    let c = |s: &[&str]| s.iter().map(OsString::from).collect::<Vec<_>>();
    let e = Path::new("e");
    assert_eq!(
        rename_components(c(&["a", "b"]), "a", "z", e).unwrap(),
        c(&["z", "b"])
    );
    assert_eq!(
        rename_components(c(&["a", "b"]), "a", ".", e).unwrap(),
        c(&["b"])
    );
    assert_eq!(rename_components(c(&["a"]), "a", ".", e).unwrap(), c(&[]));
    assert_eq!(
        rename_components(c(&["b"]), ".", "z", e).unwrap(),
        c(&["z", "b"])
    );
    assert_eq!(rename_components(c(&[]), "a", "z", e).unwrap(), c(&[]));
    assert!(rename_components(c(&["b"]), "a", "z", e).is_err());
}

#[test]
fn a_file_over_a_file_is_replaced_not_written_through() {
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("victim"), b"safe").unwrap();
    symlink(outside.path().join("victim"), dst.path().join("hosts")).unwrap();
    let mut b = Builder::new(Vec::new());
    append_raw(&mut b, "hosts", EntryType::Regular, "", b"pwned");
    unpack(b.into_inner().unwrap().as_slice(), dst.path(), None).unwrap();
    assert_eq!(fs::read(outside.path().join("victim")).unwrap(), b"safe");
    assert_eq!(fs::read(dst.path().join("hosts")).unwrap(), b"pwned");
}

/// Unpack `entries` into a fresh `base/dst`; `base` is returned so the test
/// can check nothing landed beside `dst`.
fn hostile(
    entries: &[(&str, EntryType, &str)],
) -> (tempfile::TempDir, Result<Unpacked, CopyError>) {
    let mut b = Builder::new(Vec::new());
    for (name, kind, link) in entries {
        append_raw(&mut b, name, *kind, link, b"pwned");
    }
    let tar = b.into_inner().unwrap();
    let base = tempfile::tempdir().unwrap();
    fs::create_dir(base.path().join("dst")).unwrap();
    let result = unpack(tar.as_slice(), &base.path().join("dst"), None);
    (base, result)
}

fn only_dst_in(base: &Path) {
    let names: Vec<OsString> = fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("dst")]);
}

#[test]
fn dotdot_is_refused() {
    for name in ["../x", "a/../../x", "./.."] {
        let (base, result) = hostile(&[(name, EntryType::Regular, "")]);
        let err = result.unwrap_err();
        assert!(matches!(err, CopyError::Refused { .. }), "{name}: {err}");
        only_dst_in(base.path());
    }
}

#[test]
fn absolute_names_are_rooted() {
    let (base, result) = hostile(&[("/etc/x", EntryType::Regular, "")]);
    result.unwrap();
    assert_eq!(fs::read(base.path().join("dst/etc/x")).unwrap(), b"pwned");
    only_dst_in(base.path());
}

#[test]
fn symlinks_made_by_the_archive_stay_inside() {
    // `a -> /` then `a/etc/passwd`: rooted, so it lands in dst/etc/passwd.
    let (base, result) = hostile(&[
        ("a", EntryType::Symlink, "/"),
        ("a/etc/passwd", EntryType::Regular, ""),
    ]);
    result.unwrap();
    assert_eq!(
        fs::read(base.path().join("dst/etc/passwd")).unwrap(),
        b"pwned"
    );
    assert_eq!(
        fs::read_link(base.path().join("dst/a")).unwrap(),
        Path::new("/")
    );
    only_dst_in(base.path());
    // A relative climb out is refused.
    for link in ["..", "../..", "x/../.."] {
        let (base, result) = hostile(&[
            ("up", EntryType::Symlink, link),
            ("up/x", EntryType::Regular, ""),
        ]);
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains("outside the root"),
            "{link}: {err}"
        );
        only_dst_in(base.path());
    }
}

#[test]
fn hardlinks_only_to_earlier_entries() {
    for target in ["/etc/shadow", "etc/shadow", "../x", "dir", ""] {
        let (base, result) = hostile(&[
            ("dir", EntryType::Directory, ""),
            ("h", EntryType::Link, target),
        ]);
        assert!(result.is_err(), "{target:?}");
        assert!(!base.path().join("dst/h").exists());
        only_dst_in(base.path());
    }
    // Through a symlink the archive made: still a path inside, not written.
    let (base, result) = hostile(&[
        ("a", EntryType::Symlink, "/"),
        ("h", EntryType::Link, "a/etc/shadow"),
    ]);
    assert!(matches!(result, Err(CopyError::HardlinkTarget { .. })));
    only_dst_in(base.path());
    let (base, result) = hostile(&[("f", EntryType::Regular, ""), ("h", EntryType::Link, "/f")]);
    result.unwrap();
    let ino = |p: &str| fs::metadata(base.path().join("dst").join(p)).unwrap().ino();
    assert_eq!(ino("f"), ino("h"));
}

#[test]
fn directories_and_files_do_not_replace_each_other() {
    let (base, result) = hostile(&[
        ("d", EntryType::Directory, ""),
        ("d/keep", EntryType::Regular, ""),
        ("d", EntryType::Regular, ""),
    ]);
    assert!(matches!(result, Err(CopyError::Conflict { .. })));
    assert!(base.path().join("dst/d/keep").is_file());
    let (_base, result) = hostile(&[
        ("f", EntryType::Regular, ""),
        ("f", EntryType::Directory, ""),
    ]);
    assert!(matches!(result, Err(CopyError::Conflict { .. })));
}

#[test]
fn huge_names_fail_inside() {
    let mut b = Builder::new(Vec::new());
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(0);
    b.append_data(&mut h, "x".repeat(10_000), std::io::empty())
        .unwrap();
    b.append_data(&mut h, "d/".repeat(3_000) + "f", std::io::empty())
        .unwrap();
    let tar = b.into_inner().unwrap();
    let base = tempfile::tempdir().unwrap();
    fs::create_dir(base.path().join("dst")).unwrap();
    assert!(unpack(tar.as_slice(), &base.path().join("dst"), None).is_err());
    only_dst_in(base.path());
}

#[test]
fn a_truncated_stream_leaves_no_partial_file() {
    let mut b = Builder::new(Vec::new());
    append_raw(&mut b, "done", EntryType::Regular, "", b"complete");
    append_raw(&mut b, "partial", EntryType::Regular, "", &[7; 4096]);
    let tar = b.into_inner().unwrap();
    let cut = &tar[..tar.len() - 1024 - 2048];
    let dst = tempfile::tempdir().unwrap();
    let err = unpack(cut, dst.path(), None).unwrap_err();
    assert!(matches!(err, CopyError::Tar(_)), "{err}");
    let names: Vec<OsString> = fs::read_dir(dst.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsString::from("done")]);
}

#[test]
fn a_missing_destination_is_reported() {
    let err = unpack(&[][..], Path::new("/no/such/a3s-dir"), None).unwrap_err();
    assert!(matches!(err, CopyError::NoDestDir { .. }), "{err}");
    let err = pack(Path::new("/no/such/a3s-src"), "x", std::io::sink()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cp: no such file or directory: /no/such/a3s-src"
    );
}

#[path = "tests_links.rs"]
mod links;
