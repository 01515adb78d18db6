//! Packing a host file, directory or symlink as a tar stream for the box.
//!
//! The walk is `a3s_box_archive::pack`, shared with guest-init's
//! `tar-create` helper: the root entry is named `archive_name`, a directory is followed by
//! everything under it in name order, symlinks stay links, regular files
//! with several links inside the tree become hardlinks to the first one
//! archived, FIFOs and device nodes are kept and sockets skipped. Mode bits
//! (setuid, setgid, sticky), numeric owners, mtimes and extended attributes
//! (PAX `SCHILY.xattr.*`) are kept. GNU headers, so long names and large ids
//! and sizes work.

use std::io::Write;
use std::path::Path;

use a3s_box_archive::PackError;
pub use a3s_box_archive::Packed;

use super::CopyError;

/// Write `src` to `out` as a tar stream whose root entry is `archive_name`
/// (one file name, or `.` to have the entries be `src`'s contents).
pub fn pack(src: &Path, archive_name: &str, out: impl Write) -> Result<Packed, CopyError> {
    check_root_name(archive_name)?;
    a3s_box_archive::pack(src, Path::new(archive_name), out).map_err(|e| match e {
        PackError::Missing(path) => CopyError::SourceMissing { path },
        PackError::Io { op, path, source } => CopyError::io(op, path)(source),
        PackError::Write(e) => CopyError::Write(e),
    })
}

/// An archive root name must be one normal path component, or `.`.
pub(super) fn check_root_name(name: &str) -> Result<(), CopyError> {
    let ok = name == "." || (!name.is_empty() && name != ".." && !name.contains(['/', '\0']));
    if ok {
        Ok(())
    } else {
        Err(CopyError::BadArchiveName {
            name: name.to_owned(),
        })
    }
}
