//! The host half of `a3s-box cp`: tar streams to and from a box, and Docker's
//! rules for where a copy lands.
//!
//! Inside the box, guest-init's built-in helpers do the other half:
//! `tar-create PATH` writes PATH as a tar stream rooted at its basename,
//! `tar-extract DIR` extracts one under DIR, and `stat PATH` reports what a
//! path is (decoded by [`StatReply`]). A copy is planned with [`plan_copy`]
//! from what the source and destination are, then:
//!
//! - host → box: [`pack`] the source under [`CopyPlan::packed_name`] and
//!   stream it to `tar-extract` [`CopyPlan::extract_dir`];
//! - box → host: stream `tar-create` of the source into [`unpack`] with
//!   [`CopyPlan::extract_dir`] and [`CopyPlan::rename_root`].
//!
//! Threat model: an archive from the box is untrusted (the VM may be
//! compromised). [`unpack`] keeps every entry inside its destination
//! directory, refuses `..`, takes absolute names relative to it, resolves
//! symlinks the archive made as if the destination were `/`, accepts
//! hardlinks only to earlier file entries by their exact archive name (never
//! through a symlink, never outside), restores only `user.*` extended
//! attributes (and `security.capability` when root, like setuid bits),
//! skips device nodes and FIFOs, bounds
//! the size of every header it buffers, and writes each file beside its final
//! name before renaming it into place, so an error leaves only complete
//! entries. Other host processes changing the destination tree meanwhile are
//! outside the model (as for `tar -x`).

mod kind;
mod pack;
mod rules;
mod unpack;

use std::io;
use std::path::PathBuf;

use a3s_box_archive::read::ReadError;

use crate::image::unpack::UnpackError;

pub use kind::{DestKind, PathKind, SourceKind, StatReply};
pub use pack::{pack, Packed};
pub use rules::{plan_copy, CopyDest, CopyPlan, CopySource};
pub use unpack::{unpack, Unpacked, MAX_LONG_NAME_BYTES, MAX_PAX_HEADER_BYTES};

/// Errors of a copy. Each message says what was wrong and, where it helps,
/// what to do.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source path does not exist.
    #[error("cp: no such file or directory: {}", path.display())]
    SourceMissing { path: PathBuf },
    /// A filesystem operation on the host failed.
    #[error("cp: {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Writing the outgoing archive failed (the box end went away?).
    #[error("cp: writing the archive: {0}")]
    Write(#[source] io::Error),
    /// The incoming stream is not a readable tar archive.
    #[error("cp: the archive from the box is not a readable tar stream: {0}")]
    Tar(#[source] io::Error),
    /// An entry that would land outside the destination.
    #[error("cp: refused archive entry {entry:?}: {reason}")]
    Refused {
        entry: PathBuf,
        reason: &'static str,
    },
    /// A header the archive asks us to buffer is over its limit.
    #[error("cp: refused archive: a {what} of {size} bytes is over the {limit}-byte limit")]
    HeaderTooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// An entry outside the one root the source was asked for.
    #[error("cp: refused archive entry {entry:?}: the copy expects only {expected:?} and what is under it")]
    UnexpectedRoot { entry: PathBuf, expected: String },
    /// A hardlink to something that is not an earlier file entry of the
    /// archive, named as the archive named it.
    #[error("cp: refused hardlink {entry:?}: its target {target:?} is not a file this archive already extracted (a hardlink may only name an earlier file entry, not a path outside the destination or through a symlink)")]
    HardlinkTarget { entry: PathBuf, target: PathBuf },
    /// An archive feature this reader does not implement.
    #[error("cp: archive entry {entry:?} uses {feature}, which is not supported")]
    Unsupported {
        entry: PathBuf,
        feature: &'static str,
    },
    /// An entry and what is already at its place cannot replace each other
    /// (Docker refuses this too).
    #[error("cp: cannot overwrite {existing} {} with a {incoming}; remove it first or copy somewhere else", path.display())]
    Conflict {
        path: PathBuf,
        existing: &'static str,
        incoming: &'static str,
    },
    /// A root name for an archive that is not one path component.
    #[error("cp: invalid archive root name {name:?}: expected one file name, or \".\" for a directory's contents")]
    BadArchiveName { name: String },
    /// The directory to extract into is missing or not a directory.
    #[error("cp: destination directory {} does not exist or is not a directory; create it first", path.display())]
    NoDestDir { path: PathBuf },
    /// `DEST/` names a directory that does not exist (the source is a file).
    #[error("cp: destination directory {} does not exist; create it first, or drop the trailing '/' to copy to that name", path.display())]
    DestDirMissing { path: PathBuf },
    /// `DEST/` names an existing file.
    #[error("cp: destination {} is not a directory; drop the trailing '/' to overwrite the file", path.display())]
    DestNotDir { path: PathBuf },
    /// A directory cannot replace a file.
    #[error("cp: cannot copy a directory onto the file {}; remove the file or name a directory", path.display())]
    DirOntoFile { path: PathBuf },
    /// `SRC/.` where SRC is not a directory.
    #[error("cp: source {} is not a directory, so it has no '/.' contents; drop the trailing '/.'", path.display())]
    SourceNotDir { path: PathBuf },
    /// A destination that must be created but has no name (`..`, `/`).
    #[error("cp: destination {} does not exist and has no file name to create", path.display())]
    DestNoName { path: PathBuf },
    /// The box's `stat` helper answered something unreadable.
    #[error("cp: unreadable reply from the box's stat helper: {0}")]
    StatReply(#[source] serde_json::Error),
    /// Layer-unpacking path resolution failed in a way not mapped above.
    #[error("cp: {0}")]
    Resolve(#[source] UnpackError),
}

impl CopyError {
    /// A [`CopyError::Io`] maker for `map_err`.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| CopyError::Io { op, path, source }
    }
}

impl From<ReadError> for CopyError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Tar(e) => CopyError::Tar(e),
            ReadError::HeaderTooLarge { what, size, limit } => {
                CopyError::HeaderTooLarge { what, size, limit }
            }
            ReadError::Unsupported { entry, feature } => CopyError::Unsupported { entry, feature },
        }
    }
}

impl From<UnpackError> for CopyError {
    fn from(e: UnpackError) -> Self {
        match e {
            UnpackError::Escape { entry, reason } => CopyError::Refused { entry, reason },
            UnpackError::SymlinkLoop { entry } => CopyError::Refused {
                entry,
                reason: "too many levels of symbolic links in its path",
            },
            UnpackError::Io { op, path, source } => CopyError::Io { op, path, source },
            other => CopyError::Resolve(other),
        }
    }
}

#[cfg(test)]
mod tests;
