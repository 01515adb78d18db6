//! Why a helper failed. `Display` is the one line written on stderr, which
//! the host shows to the user as it is.

use std::fmt;
use std::io;
use std::path::PathBuf;

use a3s_box_archive::read::ReadError;

use super::{EXIT_FAILED, EXIT_USAGE};

/// A helper failure.
#[derive(Debug)]
pub enum HelperError {
    /// A bad command line; the text says what is expected.
    Usage(String),
    /// The path named on the command line does not exist.
    NotFound(PathBuf),
    /// The path named on the command line is not a directory.
    NotADirectory(PathBuf),
    /// A filesystem operation failed.
    Io {
        /// The operation, e.g. `open`.
        op: &'static str,
        /// What it was applied to.
        path: PathBuf,
        /// The system error.
        source: io::Error,
    },
    /// The input tar stream is unreadable.
    Tar(io::Error),
    /// The input tar stream has a header over its limit or a feature the
    /// reader does not implement.
    Archive(ReadError),
    /// An archive entry that would land outside the destination.
    Refused {
        /// The entry name as it is in the archive.
        entry: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A `/proc` file did not have the expected format.
    Proc(String),
}

impl HelperError {
    /// The exit code of a helper that fails with this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            HelperError::Usage(_) => EXIT_USAGE,
            _ => EXIT_FAILED,
        }
    }

    /// An [`HelperError::Io`] maker for `map_err`.
    pub fn io(op: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| HelperError::Io { op, path, source }
    }
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::Usage(text) => f.write_str(text),
            HelperError::NotFound(path) => {
                write!(f, "no such file or directory: {}", path.display())
            }
            HelperError::NotADirectory(path) => write!(f, "not a directory: {}", path.display()),
            HelperError::Io { op, path, source } => {
                write!(f, "{op} {}: {source}", path.display())
            }
            HelperError::Tar(source) => write!(f, "reading the tar stream: {source}"),
            HelperError::Archive(e) => write!(f, "refused archive: {e}"),
            HelperError::Refused { entry, reason } => {
                write!(f, "refused archive entry {}: {reason}", entry.display())
            }
            HelperError::Proc(what) => write!(f, "unexpected /proc contents: {what}"),
        }
    }
}

impl From<ReadError> for HelperError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Tar(source) => HelperError::Tar(source),
            other => HelperError::Archive(other),
        }
    }
}

impl std::error::Error for HelperError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            HelperError::Io { source, .. } | HelperError::Tar(source) => Some(source),
            HelperError::Archive(e) => Some(e),
            _ => None,
        }
    }
}
