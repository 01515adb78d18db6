//! Packing a file tree as a tar stream: the one walk behind `a3s-box cp`
//! (the host packs what goes into a box, guest-init packs what comes out of
//! one), `export` and `commit` (guest-init packs a box's merged root or its
//! overlay upper directory).
//!
//! A directory is followed by everything under it in name order; symlinks
//! stay links; a regular file with several links (same device and inode)
//! is archived in full under the first name met and as a hardlink entry
//! pointing at that name under the others, as GNU tar and `docker export`
//! do; FIFOs and device nodes are kept and sockets skipped. Mode bits
//! (setuid, setgid, sticky), numeric owners and mtimes are kept, and
//! extended attributes become PAX `SCHILY.xattr.NAME` records (see
//! [`xattrs`]; overlayfs's `trusted.overlay.*` are left out, unreadable ones
//! are counted, never fatal). GNU headers, so long names and large ids and
//! sizes work. A tree that changes while it is read gives a consistent
//! stream: files are read for exactly the size archived, entries that vanish
//! are left out.
//!
//! [`read`] is the other direction: a bounded reader of tar streams that
//! hands each member, with its long names, PAX records and extended
//! attributes applied, to the caller that places it.

mod pax;
pub mod read;
#[cfg(feature = "testing")]
pub mod testing;
mod walk;
pub mod xattrs;

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use walk::Walk;

/// What [`pack`] or [`pack_contents`] archived.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Packed {
    /// Entries written (hardlinks and whiteouts included).
    pub entries: u64,
    /// Entries written as hardlinks to an earlier name.
    pub hardlinks: u64,
    /// Bytes of file contents.
    pub file_bytes: u64,
    /// Sockets left out (tar cannot hold them).
    pub skipped_sockets: u64,
    /// Extended attributes left out because they could not be read.
    pub skipped_xattrs: u64,
}

/// How the tree [`pack_contents`] walks is laid out.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A plain tree: everything in it is archived as it is.
    #[default]
    Tree,
    /// An overlayfs upper directory, archived as an OCI layer: whiteouts
    /// (character devices 0/0) become empty `.wh.NAME` files and an opaque
    /// directory gets a `.wh..wh..opq` entry before its contents.
    OverlayUpper,
}

/// Why packing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The source does not exist.
    #[error("no such file or directory: {}", .0.display())]
    Missing(PathBuf),
    /// A file of the tree could not be read.
    #[error("{op} {}: {source}", .path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// To which path.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// The output could not be written.
    #[error("write the archive: {0}")]
    Write(io::Error),
}

impl PackError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| PackError::Io { op, path, source }
    }
}

/// Write `src` to `out` as a tar stream whose root entry is `root_name`
/// (`.` makes the entries `src`'s contents). The caller vets the name.
pub fn pack(src: &Path, root_name: &Path, out: impl Write) -> Result<Packed, PackError> {
    let meta = stat_source(src)?;
    let mut walk = Walk::new(out, Layout::Tree);
    walk.push(src.to_owned(), root_name.to_owned(), Some(meta));
    walk.run()?;
    walk.finish()
}

/// Write what is under the directory `dir` to `out` as a tar stream, entry
/// names relative to `dir` and no entry for `dir` itself (the shape of an
/// OCI layer and of `docker export`).
pub fn pack_contents(dir: &Path, layout: Layout, out: impl Write) -> Result<Packed, PackError> {
    let meta = stat_source(dir)?;
    if !meta.is_dir() {
        return Err(PackError::io("read dir", dir)(
            io::Error::from_raw_os_error(libc::ENOTDIR),
        ));
    }
    let mut walk = Walk::new(out, layout);
    walk.push_children(dir, Path::new("."))?;
    walk.run()?;
    walk.finish()
}

fn stat_source(src: &Path) -> Result<fs::Metadata, PackError> {
    fs::symlink_metadata(src).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PackError::Missing(src.to_owned()),
        _ => PackError::io("stat", src)(e),
    })
}

#[cfg(test)]
mod tests;
