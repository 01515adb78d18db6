//! Built-in helpers that read the box's layers from guest-init's own view
//! (not the box's): `layer-diff` and `layer-tar` walk the overlay's upper
//! directory, `root-tar` the merged root bound without its mounts. They run
//! in guest-init's mount namespace and root, so the workload never sees the
//! layers; their output goes to the host on stdout.
//!
//! The host reads the output as untrusted bytes: diff lines are only shown,
//! and layer tars are unpacked by the host's hardened unpacker (no path
//! escapes), never mounted.

use std::collections::BTreeSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use a3s_box_core::guest::builtin::{LAYER_DIFF, LAYER_TAR, ROOT_TAR};
use tar::{Builder, EntryType, Header, HeaderMode};

use crate::boot::{LOWER, MERGED, UPPER};

/// Whether `name` is one of these helpers (they run in guest-init's view).
pub fn is_layer_helper(name: &str) -> bool {
    matches!(name, LAYER_DIFF | LAYER_TAR | ROOT_TAR)
}

/// Run helper `args[0]`; `None` when it is not one of ours.
pub fn main(args: &[String]) -> Option<i32> {
    let name = args.first()?;
    if !is_layer_helper(name) {
        return None;
    }
    let mut out = io::BufWriter::new(io::stdout().lock());
    let res = match name.as_str() {
        LAYER_DIFF => diff(Path::new(UPPER), Path::new(LOWER), &mut out),
        LAYER_TAR => tar_tree(Path::new(UPPER), true, &mut out),
        _ => tar_tree(Path::new(MERGED), false, &mut out),
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
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated and the buffer's length is
    // passed with it; all outlive the call.
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
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

/// A tar of the tree at `root`, entries named relative to it. With
/// `as_layer`, overlay whiteouts become OCI `.wh.` entries and opaque
/// directories get a `.wh..wh..opq` entry.
fn tar_tree(root: &Path, as_layer: bool, out: &mut impl Write) -> io::Result<()> {
    let mut builder = Builder::new(out);
    builder.follow_symlinks(false);
    walk_tar(root, Path::new(""), as_layer, &mut builder)?;
    builder.finish()
}

fn empty_file(builder: &mut Builder<impl Write>, path: &Path, like: &Metadata) -> io::Result<()> {
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_mtime(like.mtime().max(0) as u64);
    builder.append_data(&mut h, path, io::empty())
}

fn walk_tar(
    root: &Path,
    rel: &Path,
    as_layer: bool,
    builder: &mut Builder<impl Write>,
) -> io::Result<()> {
    let dir = root.join(rel);
    if as_layer && !rel.as_os_str().is_empty() && is_opaque(&dir) {
        let meta = fs::symlink_metadata(&dir)?;
        empty_file(builder, &rel.join(".wh..wh..opq"), &meta)?;
    }
    for entry in sorted_entries(&dir)? {
        let path = rel.join(entry.file_name());
        let full = entry.path();
        let meta = fs::symlink_metadata(&full)?;
        let ft = meta.file_type();
        if as_layer && is_whiteout(&meta) {
            let mut name = std::ffi::OsString::from(".wh.");
            name.push(entry.file_name());
            empty_file(builder, &rel.join(name), &meta)?;
            continue;
        }
        let mut h = Header::new_gnu();
        h.set_metadata_in_mode(&meta, HeaderMode::Complete);
        if ft.is_socket() {
            continue;
        } else if ft.is_symlink() {
            h.set_size(0);
            builder.append_link(&mut h, &path, fs::read_link(&full)?)?;
        } else if ft.is_dir() {
            h.set_size(0);
            builder.append_data(&mut h, &path, io::empty())?;
            walk_tar(root, &path, as_layer, builder)?;
        } else if ft.is_file() {
            builder.append_data(&mut h, &path, File::open(&full)?)?;
        } else {
            // Devices and FIFOs: header only.
            if ft.is_char_device() || ft.is_block_device() {
                let rdev = meta.rdev();
                h.set_device_major(libc::major(rdev))?;
                h.set_device_minor(libc::minor(rdev))?;
            }
            h.set_size(0);
            builder.append_data(&mut h, &path, io::empty())?;
        }
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
