//! The walk's entries, read back with the `tar` crate.
#![allow(clippy::unwrap_used)]

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use tar::EntryType;

use super::*;

/// One archive entry as the tests compare it.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    name: String,
    kind: EntryType,
    link: Option<String>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// The entries of `tar`, read back with [`read::for_each`].
fn entries(tar: &[u8]) -> Vec<Seen> {
    let mut out = Vec::new();
    read::for_each(tar, |m, _| {
        out.push(Seen {
            name: m.name.display().to_string(),
            kind: m.kind,
            link: m.link.map(|l| l.display().to_string()),
            xattrs: m
                .xattrs
                .into_iter()
                .map(|(n, v)| (n.to_str().unwrap().to_owned(), v))
                .collect(),
        });
        Ok::<_, read::ReadError>(())
    })
    .unwrap();
    out
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the filesystem of `dir` keeps `user.*` attributes.
fn has_user_xattrs(dir: &Path) -> bool {
    let probe = dir.join(".probe");
    fs::write(&probe, "").unwrap();
    let ok = xattrs::set(&probe, OsStr::new("user.probe"), b"1").unwrap_or(false);
    fs::remove_file(probe).unwrap();
    ok
}

#[test]
fn second_names_of_a_file_are_hardlinks_to_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("sub")).unwrap();
    fs::write(tree.join("a"), "data").unwrap();
    fs::hard_link(tree.join("a"), tree.join("b")).unwrap();
    fs::hard_link(tree.join("a"), tree.join("sub/c")).unwrap();
    fs::write(tree.join("single"), "one").unwrap();

    let mut out = Vec::new();
    let packed = pack(&tree, Path::new("tree"), &mut out).unwrap();
    assert_eq!(
        (packed.entries, packed.hardlinks, packed.file_bytes),
        (6, 2, 7)
    );
    let seen = entries(&out);
    let names: Vec<_> = seen
        .iter()
        .map(|s| (s.name.as_str(), s.kind, s.link.as_deref()))
        .collect();
    assert_eq!(
        names,
        [
            ("tree", EntryType::Directory, None),
            ("tree/a", EntryType::Regular, None),
            ("tree/b", EntryType::Link, Some("tree/a")),
            ("tree/single", EntryType::Regular, None),
            ("tree/sub", EntryType::Directory, None),
            ("tree/sub/c", EntryType::Link, Some("tree/a")),
        ]
    );

    // Contents only: names (and link targets) relative to the directory.
    let mut out = Vec::new();
    pack_contents(&tree, Layout::Tree, &mut out).unwrap();
    let seen = entries(&out);
    assert_eq!(seen[0].name, "a");
    assert_eq!(
        (seen[1].name.as_str(), seen[1].link.as_deref()),
        ("b", Some("a"))
    );
    assert_eq!(seen[4].link.as_deref(), Some("a"));
}

#[test]
fn extended_attributes_become_pax_records_and_overlay_ones_are_left_out() {
    let dir = tempfile::tempdir().unwrap();
    if !has_user_xattrs(dir.path()) {
        eprintln!(
            "skipped: {} keeps no user.* attributes",
            dir.path().display()
        );
        return;
    }
    let tree = dir.path().join("tree");
    fs::create_dir_all(tree.join("d")).unwrap();
    fs::write(tree.join("f"), "x").unwrap();
    fs::hard_link(tree.join("f"), tree.join("g")).unwrap();
    xattrs::set(&tree.join("f"), OsStr::new("user.b"), b"\0binary\n").unwrap();
    xattrs::set(&tree.join("f"), OsStr::new("user.a"), b"1").unwrap();
    xattrs::set(&tree.join("d"), OsStr::new("user.dir"), b"yes").unwrap();
    if is_root() {
        xattrs::set(&tree.join("d"), OsStr::new("trusted.overlay.opaque"), b"y").unwrap();
        xattrs::set(&tree.join("f"), OsStr::new("trusted.kept"), b"t").unwrap();
    }
    let mut out = Vec::new();
    let packed = pack_contents(&tree, Layout::Tree, &mut out).unwrap();
    assert_eq!(packed.skipped_xattrs, 0);
    let seen = entries(&out);
    let attr = |n: &str, v: &[u8]| (n.to_owned(), v.to_vec());
    assert_eq!(seen[0].name, "d");
    assert_eq!(
        seen[0].xattrs,
        [attr("user.dir", b"yes")],
        "no trusted.overlay.*"
    );
    assert_eq!(seen[1].name, "f");
    let mut expected = vec![attr("user.a", b"1"), attr("user.b", b"\0binary\n")];
    if is_root() {
        expected.insert(0, attr("trusted.kept", b"t"));
    }
    assert_eq!(seen[1].xattrs, expected);
    // A hardlink shares the first name's attributes and carries none.
    assert_eq!((seen[2].kind, seen[2].xattrs.len()), (EntryType::Link, 0));
    assert_eq!(seen.len(), 3, "a plain tree gets no opaque marker");
}

#[test]
fn an_overlay_upper_becomes_a_layer_with_whiteouts_and_opaque_markers() {
    if !is_root() {
        eprintln!("skipped: whiteouts and trusted.* need root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let upper = dir.path();
    fs::create_dir_all(upper.join("opaque")).unwrap();
    fs::write(upper.join("opaque/new"), "n").unwrap();
    xattrs::set(
        &upper.join("opaque"),
        OsStr::new("trusted.overlay.opaque"),
        b"y",
    )
    .unwrap();
    fs::create_dir_all(upper.join("plain")).unwrap();
    // overlayfs shares one whiteout inode between many names.
    let wh = upper.join("plain/gone");
    let made = std::process::Command::new("mknod")
        .arg(&wh)
        .args(["c", "0", "0"])
        .status()
        .unwrap();
    assert!(made.success());
    fs::hard_link(&wh, upper.join("plain/also-gone")).unwrap();

    let mut out = Vec::new();
    pack_contents(upper, Layout::OverlayUpper, &mut out).unwrap();
    let seen = entries(&out);
    let names: Vec<_> = seen.iter().map(|s| (s.name.as_str(), s.kind)).collect();
    assert_eq!(
        names,
        [
            ("opaque", EntryType::Directory),
            ("opaque/.wh..wh..opq", EntryType::Regular),
            ("opaque/new", EntryType::Regular),
            ("plain", EntryType::Directory),
            ("plain/.wh.also-gone", EntryType::Regular),
            ("plain/.wh.gone", EntryType::Regular),
        ]
    );
    assert!(seen.iter().all(|s| s.xattrs.is_empty()), "{seen:?}");
}

#[test]
fn a_missing_source_is_reported_by_name() {
    let err = pack(Path::new("/no/such/a3s"), Path::new("x"), std::io::sink()).unwrap_err();
    assert_eq!(err.to_string(), "no such file or directory: /no/such/a3s");
    let err = pack_contents(Path::new("/no/such/a3s"), Layout::Tree, std::io::sink()).unwrap_err();
    assert!(matches!(err, PackError::Missing(_)), "{err}");
}
