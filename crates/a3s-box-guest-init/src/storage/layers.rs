//! Built-in helpers that read a container's layers from guest-init's own
//! view (not the container's): `layer-diff` and `layer-tar` walk the
//! overlay's upper directory, `root-tar` the merged root bound without its
//! mounts. They run in guest-init's mount namespace and root, so the
//! workload never sees the layers; their output goes to the host on stdout.
//! guest-init appends the container's directories to their arguments
//! ([`layer_args`]): the host names only the helper and the container.
//!
//! The host reads the output as untrusted bytes: diff lines are only shown,
//! and layer tars are unpacked by the host's hardened unpacker (no path
//! escapes), never mounted.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use a3s_box_archive::{pack_contents, Layout, PackError};
use a3s_box_core::guest::builtin::{LAYER_DIFF, LAYER_TAR, ROOT_TAR};

use super::root::Layout as Dirs;

/// Whether `name` is one of these helpers (they run in guest-init's view).
pub fn is_layer_helper(name: &str) -> bool {
    matches!(name, LAYER_DIFF | LAYER_TAR | ROOT_TAR)
}

/// The arguments guest-init gives helper `name` for the container laid out
/// as `dirs`: `layer-diff UPPER LOWER`, `layer-tar UPPER`, `root-tar MERGED`.
pub fn layer_args(name: &str, dirs: &Dirs) -> Vec<String> {
    match name {
        LAYER_DIFF => vec![dirs.upper.clone(), dirs.lower.clone()],
        LAYER_TAR => vec![dirs.upper.clone()],
        _ => vec![dirs.merged.clone()],
    }
}

/// Run helper `args[0]`; `None` when it is not one of ours.
pub fn main(args: &[String]) -> Option<i32> {
    let name = args.first()?;
    if !is_layer_helper(name) {
        return None;
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let paths: Vec<&Path> = args[1..].iter().map(Path::new).collect();
    let res = match (name.as_str(), paths.as_slice()) {
        (LAYER_DIFF, [upper, lower]) => diff(upper, lower, &mut out),
        (LAYER_TAR, [upper]) => tar_tree(upper, true, &mut out),
        (ROOT_TAR, [merged]) => tar_tree(merged, false, &mut out),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad arguments {:?}", &args[1..]),
        )),
    }
    .and_then(|()| out.flush());
    Some(match res {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(io::stderr(), "{name}: {e}");
            1
        }
    })
}

/// An overlay whiteout: a character device 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// An overlay opaque directory (its lower contents are hidden).
fn is_opaque(path: &Path) -> bool {
    a3s_box_archive::xattrs::read(path).opaque
}

fn sorted_entries(dir: &Path) -> io::Result<Vec<fs::DirEntry>> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// Docker's `diff`: `A` added, `C` changed, `D` deleted, one line per path,
/// sorted by path.
fn diff(upper: &Path, lower: &Path, out: &mut impl Write) -> io::Result<()> {
    let mut lines = BTreeSet::new();
    walk_diff(upper, lower, Path::new("/"), &mut lines)?;
    for (path, kind) in lines {
        writeln!(out, "{kind} {}", path.display())?;
    }
    Ok(())
}

fn walk_diff(
    upper: &Path,
    lower: &Path,
    rel: &Path,
    lines: &mut BTreeSet<(PathBuf, char)>,
) -> io::Result<()> {
    let dir = upper.join(rel.strip_prefix("/").unwrap_or(rel));
    let mut seen = BTreeSet::new();
    for entry in sorted_entries(&dir)? {
        let name = entry.file_name();
        seen.insert(name.clone());
        let path = rel.join(&name);
        let meta = entry.metadata()?;
        let in_lower = fs::symlink_metadata(lower.join(path.strip_prefix("/").unwrap_or(&path)));
        if is_whiteout(&meta) {
            lines.insert((path, 'D'));
            continue;
        }
        let kind = if in_lower.is_ok() { 'C' } else { 'A' };
        lines.insert((path.clone(), kind));
        if meta.is_dir() {
            walk_diff(upper, lower, &path, lines)?;
        }
    }
    // An opaque directory hides everything the image had in it.
    if rel != Path::new("/") && is_opaque(&dir) {
        let below = lower.join(rel.strip_prefix("/").unwrap_or(rel));
        if let Ok(entries) = sorted_entries(&below) {
            for e in entries.iter().filter(|e| !seen.contains(&e.file_name())) {
                lines.insert((rel.join(e.file_name()), 'D'));
            }
        }
    }
    Ok(())
}

/// A tar of the tree at `root`, entries named relative to it (the shared
/// walk: hardlinks and extended attributes kept, overlayfs's own left out).
/// With `as_layer`, overlay whiteouts become OCI `.wh.` entries and opaque
/// directories get a `.wh..wh..opq` entry.
fn tar_tree(root: &Path, as_layer: bool, out: &mut impl Write) -> io::Result<()> {
    let layout = if as_layer {
        Layout::OverlayUpper
    } else {
        Layout::Tree
    };
    let packed = pack_contents(root, layout, out).map_err(|e| match e {
        PackError::Write(e) => e,
        other => io::Error::other(other),
    })?;
    if packed.skipped_xattrs > 0 {
        let _ = writeln!(
            io::stderr(),
            "warning: {} extended attributes could not be read and were left out",
            packed.skipped_xattrs
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_marks_added_changed_and_deleted_paths() {
        let upper = tempfile::tempdir().unwrap();
        let lower = tempfile::tempdir().unwrap();
        fs::create_dir_all(lower.path().join("etc")).unwrap();
        fs::write(lower.path().join("etc/passwd"), "root").unwrap();
        fs::write(lower.path().join("etc/gone"), "x").unwrap();
        fs::create_dir_all(upper.path().join("etc")).unwrap();
        fs::write(upper.path().join("etc/passwd"), "root2").unwrap();
        fs::write(upper.path().join("etc/new"), "n").unwrap();
        // A whiteout needs mknod (root); a plain file stands in when we are not.
        let wh = upper.path().join("etc/gone");
        let made = nix::sys::stat::mknod(
            &wh,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        );
        let mut out = Vec::new();
        diff(upper.path(), lower.path(), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let gone = if made.is_ok() { "D /etc/gone\n" } else { "" };
        assert_eq!(text, format!("C /etc\n{gone}A /etc/new\nC /etc/passwd\n"));
    }

    #[test]
    fn layer_tars_carry_files_links_and_whiteouts() {
        let upper = tempfile::tempdir().unwrap();
        fs::create_dir_all(upper.path().join("d")).unwrap();
        fs::write(upper.path().join("d/f"), "data").unwrap();
        std::os::unix::fs::symlink("f", upper.path().join("d/l")).unwrap();
        let whiteout = nix::sys::stat::mknod(
            &upper.path().join("d/gone"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .is_ok();
        let mut out = Vec::new();
        tar_tree(upper.path(), true, &mut out).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        let mut expected = vec!["d", "d/f", "d/l"];
        if whiteout {
            expected.insert(2, "d/.wh.gone");
        }
        assert_eq!(names, expected);
        assert!(is_layer_helper(LAYER_TAR) && !is_layer_helper("ps"));
    }
}
