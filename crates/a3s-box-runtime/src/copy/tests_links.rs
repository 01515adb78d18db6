//! Hardlinks and extended attributes in archives from a box.

use std::ffi::OsStr;

use a3s_box_archive::xattrs;

use super::*;

#[test]
fn hardlinks_never_go_through_a_symlink_or_to_what_was_there() {
    // The file exists and was written by the archive, but the link names it
    // through a symlink.
    let (base, result) = hostile(&[
        ("d", EntryType::Directory, ""),
        ("d/f", EntryType::Regular, ""),
        ("l", EntryType::Symlink, "d"),
        ("h", EntryType::Link, "l/f"),
    ]);
    assert!(
        matches!(result, Err(CopyError::HardlinkTarget { .. })),
        "{result:?}"
    );
    assert!(!base.path().join("dst/h").exists());
    // A name the archive turned into a symlink is no target any more.
    let (base, result) = hostile(&[
        ("f", EntryType::Regular, ""),
        ("f", EntryType::Symlink, "/etc/passwd"),
        ("h", EntryType::Link, "f"),
    ]);
    assert!(
        matches!(result, Err(CopyError::HardlinkTarget { .. })),
        "{result:?}"
    );
    assert!(!base.path().join("dst/h").exists());
    // A file the destination held before is not the archive's to link.
    let mut b = Builder::new(Vec::new());
    append_raw(&mut b, "h", EntryType::Link, "before", b"");
    let base = tempfile::tempdir().unwrap();
    let dst = base.path().join("dst");
    fs::create_dir(&dst).unwrap();
    fs::write(dst.join("before"), "host").unwrap();
    let err = unpack(b.into_inner().unwrap().as_slice(), &dst, None).unwrap_err();
    assert!(matches!(err, CopyError::HardlinkTarget { .. }), "{err}");
    assert!(err.to_string().contains("\"before\""), "{err}");
    assert_eq!(fs::metadata(dst.join("before")).unwrap().nlink(), 1);
}

#[test]
fn packed_hardlinks_unpack_as_one_file_under_a_renamed_root() {
    let src = tempfile::tempdir().unwrap();
    let tree = src.path().join("data");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("a"), "x").unwrap();
    fs::hard_link(tree.join("a"), tree.join("b")).unwrap();
    fs::hard_link(tree.join("a"), tree.join("sub/c")).unwrap();
    let mut tar = Vec::new();
    let packed = pack(&tree, "data", &mut tar).unwrap();
    assert_eq!(packed.hardlinks, 2);
    let dst = tempfile::tempdir().unwrap();
    unpack(tar.as_slice(), dst.path(), Some(("data", "copy"))).unwrap();
    let meta = |p: &str| fs::metadata(dst.path().join("copy").join(p)).unwrap();
    assert_eq!(meta("a").nlink(), 3);
    assert_eq!(meta("a").ino(), meta("b").ino());
    assert_eq!(meta("a").ino(), meta("sub/c").ino());
}

#[test]
fn only_user_attributes_and_file_capabilities_come_back_from_a_box() {
    let mut b = Builder::new(Vec::new());
    let mut records = vec![
        ("SCHILY.xattr.user.note", &b"a\nb"[..]),
        ("SCHILY.xattr.trusted.secret", b"t"),
        (
            "SCHILY.xattr.security.selinux",
            b"system_u:object_r:shadow_t:s0",
        ),
    ];
    let cap = [
        1u8, 0, 0, 2, 0x0a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    records.push(("SCHILY.xattr.security.capability", &cap));
    b.append_pax_extensions(records).unwrap();
    append_raw(&mut b, "f", EntryType::Regular, "", b"x");
    let dst = tempfile::tempdir().unwrap();
    let probe = dst.path().join("probe");
    fs::write(&probe, "").unwrap();
    if !xattrs::set(&probe, OsStr::new("user.probe"), b"1").unwrap() {
        eprintln!("skipped: the temp filesystem keeps no attributes");
        return;
    }
    let unpacked = unpack(b.into_inner().unwrap().as_slice(), dst.path(), None).unwrap();
    let got = xattrs::read(&dst.path().join("f")).records;
    let mut expected = vec![("user.note".to_owned(), b"a\nb".to_vec())];
    if is_root() {
        expected.insert(0, ("security.capability".to_owned(), cap.to_vec()));
    }
    assert_eq!(got, expected);
    assert_eq!(unpacked.skipped_xattrs, 4 - expected.len() as u64);
}
