use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::*;

fn dir_fd(path: &Path) -> OwnedFd {
    OwnedFd::from(File::open(path).unwrap())
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// An image directory with every kind of entry.
fn image_tree(src: &Path) {
    std::fs::create_dir_all(src.join("d/e")).unwrap();
    std::fs::write(src.join("d/f"), "data\n").unwrap();
    chown(&src.join("d/f"), 1001, 1002);
    chmod(&src.join("d/f"), 0o640);
    std::fs::hard_link(src.join("d/f"), src.join("f-again")).unwrap();
    std::fs::write(src.join("suid"), "").unwrap();
    chown(&src.join("suid"), 5, 5);
    chmod(&src.join("suid"), 0o4755);
    std::os::unix::fs::symlink("/", src.join("root-link")).unwrap();
    std::os::unix::fs::symlink("../../..", src.join("d/up")).unwrap();
    chown(&src.join("d/up"), 7, 8);
    nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o620)).unwrap();
    chmod(&src.join("fifo"), 0o620);
    chown(&src.join("d"), 1000, 1000);
    chmod(&src.join("d"), 0o750);
    let old = filetime(&src.join("d/f"));
    assert!(old > 0);
    chown(src, 999, 998);
    chmod(src, 0o700);
}

fn filetime(path: &Path) -> i64 {
    std::fs::symlink_metadata(path).unwrap().mtime()
}

#[test]
fn an_empty_share_gets_the_image_tree_with_owners_modes_and_times() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    image_tree(src.path());
    // Set a distinctive time after the tree is built (children change a
    // directory's mtime).
    let t = nix::sys::time::TimeSpec::new(1_000_000_000, 5);
    nix::sys::stat::utimensat(
        None,
        &src.path().join("d"),
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
    let filled = fill(&dir_fd(src.path()), &dir_fd(dst.path()), "/data").unwrap();
    assert!(filled);
    let (s, d) = (src.path(), dst.path());
    for rel in [
        "d",
        "d/e",
        "d/f",
        "f-again",
        "suid",
        "root-link",
        "d/up",
        "fifo",
    ] {
        let (a, b) = (
            std::fs::symlink_metadata(s.join(rel)).unwrap(),
            std::fs::symlink_metadata(d.join(rel)).unwrap(),
        );
        assert_eq!(
            (a.mode(), a.uid(), a.gid()),
            (b.mode(), b.uid(), b.gid()),
            "{rel}"
        );
        assert_eq!(
            (a.mtime(), a.mtime_nsec()),
            (b.mtime(), b.mtime_nsec()),
            "{rel}"
        );
    }
    assert_eq!(std::fs::read_to_string(d.join("d/f")).unwrap(), "data\n");
    assert_eq!(
        std::fs::symlink_metadata(d.join("d/f")).unwrap().mode() & 0o7777,
        0o640
    );
    assert_eq!(
        std::fs::metadata(d.join("suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        std::fs::read_link(d.join("root-link")).unwrap(),
        Path::new("/")
    );
    assert_eq!(
        std::fs::read_link(d.join("d/up")).unwrap(),
        Path::new("../../..")
    );
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&d.join("d/f")),
        ino(&d.join("f-again")),
        "hard link kept"
    );
    let root = std::fs::metadata(d).unwrap();
    assert_eq!(
        (root.uid(), root.gid(), root.mode() & 0o7777),
        (999, 998, 0o700)
    );
}

#[test]
fn a_share_with_anything_in_it_is_left_alone() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    image_tree(src.path());
    std::fs::write(dst.path().join("mine"), "x").unwrap();
    let before = std::fs::metadata(dst.path()).unwrap();
    assert!(!fill(&dir_fd(src.path()), &dir_fd(dst.path()), "/v").unwrap());
    let names: Vec<_> = std::fs::read_dir(dst.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["mine"]);
    let after = std::fs::metadata(dst.path()).unwrap();
    assert_eq!((before.uid(), before.mode()), (after.uid(), after.mode()));
}

#[test]
fn a_tree_too_deep_is_a_clear_error() {
    let src = tempfile::tempdir().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let deep: PathBuf = (0..=MAX_DEPTH + 1).map(|_| "d").collect();
    std::fs::create_dir_all(src.path().join(deep)).unwrap();
    let err = fill(&dir_fd(src.path()), &dir_fd(dst.path()), "/v").unwrap_err();
    assert!(err.to_string().contains("nest deeper"), "{err}");
}
