//! `tar-create PATH`: PATH as a tar stream, the way `docker cp BOX:PATH -`
//! writes it. Entry names start with PATH's basename (`.` for `/`); a
//! directory is followed by everything under it, in name order. Symlinks
//! (PATH itself included) are archived as links, regular files with several
//! links inside the tree as hardlinks to the first one archived; FIFOs and
//! device nodes are kept, sockets skipped. Mode bits (setuid, setgid,
//! sticky), numeric owners, mtimes and extended attributes (PAX
//! `SCHILY.xattr.*`) are kept. GNU headers, so long names and large ids and
//! sizes work.
//!
//! The walk is `a3s_box_archive::pack`, the one the host uses for files
//! going into a box.

use std::io::Write;
use std::path::{Path, PathBuf};

use a3s_box_archive::{PackError, Packed};

use super::HelperError;

/// Write `path` as a tar stream to `out`.
pub fn create(path: &Path, out: impl Write) -> Result<Packed, HelperError> {
    a3s_box_archive::pack(path, &archive_name(path), out).map_err(|e| match e {
        PackError::Missing(path) => HelperError::NotFound(path),
        PackError::Io { op, path, source } => HelperError::Io { op, path, source },
        PackError::Write(e) => HelperError::io("write", "stdout")(e),
    })
}

/// The name of the archive root: PATH's last component (`/etc/.` and `/etc/`
/// give `etc`), or `.` when it has none (`/`).
pub fn archive_name(path: &Path) -> PathBuf {
    path.file_name()
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_are_the_basename() {
        assert_eq!(archive_name(Path::new("/etc/hosts")), Path::new("hosts"));
        assert_eq!(archive_name(Path::new("/etc/")), Path::new("etc"));
        assert_eq!(archive_name(Path::new("/etc/.")), Path::new("etc"));
        assert_eq!(archive_name(Path::new("/")), Path::new("."));
    }

    #[test]
    fn a_missing_path_is_reported_by_name() {
        let err = create(Path::new("/no/such/a3s"), std::io::sink()).expect_err("missing");
        assert_eq!(err.to_string(), "no such file or directory: /no/such/a3s");
    }
}
