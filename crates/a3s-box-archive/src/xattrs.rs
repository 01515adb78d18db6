//! Extended attributes as tar carries them: one PAX record
//! `SCHILY.xattr.NAME=VALUE` per attribute, as GNU tar (`--xattrs`), Docker
//! and containerd write and read them. Symlinks are never followed.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The PAX record key prefix of an extended attribute.
pub const XATTR_PAX_PREFIX: &str = "SCHILY.xattr.";
/// overlayfs's own attributes (opaque directories, origins, redirects):
/// internal to the box's layers, never archived as attributes.
pub const OVERLAY_XATTR_PREFIX: &str = "trusted.overlay.";
/// The attribute overlayfs sets to `y` on an opaque upper directory.
pub const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// The attributes of one file, as [`read`] found them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Xattrs {
    /// Name and value of each attribute to archive, sorted by name.
    pub records: Vec<(String, Vec<u8>)>,
    /// Whether overlayfs marked the directory opaque.
    pub opaque: bool,
    /// Attributes left out because they could not be read (or their name
    /// is not UTF-8, which a PAX key must be).
    pub unreadable: u64,
}

impl Xattrs {
    /// The PAX records that carry [`Xattrs::records`], keys then values.
    pub fn pax_keys(&self) -> Vec<String> {
        self.records
            .iter()
            .map(|(name, _)| format!("{XATTR_PAX_PREFIX}{name}"))
            .collect()
    }
}

/// The extended attributes of `path` (not following a symlink), overlayfs's
/// own left out. Never fails: a filesystem without attributes or a file
/// removed meanwhile has none, and what cannot be read is only counted.
pub fn read(path: &Path) -> Xattrs {
    let mut out = Xattrs::default();
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if is_unsupported(&e) || e.kind() == io::ErrorKind::NotFound => return out,
        Err(_) => {
            out.unreadable += 1;
            return out;
        }
    };
    for name in names {
        let Some(text) = name.to_str() else {
            out.unreadable += 1;
            continue;
        };
        if text.starts_with(OVERLAY_XATTR_PREFIX) {
            if text == OVERLAY_OPAQUE {
                out.opaque = matches!(xattr::get(path, &name), Ok(Some(v)) if v == b"y");
            }
            continue;
        }
        match xattr::get(path, &name) {
            Ok(Some(value)) => out.records.push((text.to_owned(), value)),
            Ok(None) => {} // removed since it was listed
            Err(_) => out.unreadable += 1,
        }
    }
    out.records.sort();
    out
}

/// The attribute name a PAX record key carries, if it is an attribute.
pub fn name_from_pax_key(key: &[u8]) -> Option<&OsStr> {
    key.strip_prefix(XATTR_PAX_PREFIX.as_bytes())
        .filter(|name| !name.is_empty())
        .map(OsStr::from_bytes)
}

/// Set attribute `name` of `path` (not following a symlink). `Ok(false)`
/// when the filesystem does not support attributes (`EOPNOTSUPP`).
pub fn set(path: &Path, name: &OsStr, value: &[u8]) -> io::Result<bool> {
    match xattr::set(path, name, value) {
        Ok(()) => Ok(true),
        Err(e) if is_unsupported(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

fn is_unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.kind() == io::ErrorKind::Unsupported
}
