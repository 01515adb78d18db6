//! The error type of the VMM contract.

use std::path::PathBuf;

/// Result alias used across the VMM contract.
pub type Result<T> = std::result::Result<T, BoxError>;

/// Errors a VMM backend or the runtime reports.
#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    /// The spec or an option is invalid; the message says what to change.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A file the VM needs (kernel, initramfs, rootfs) is missing.
    #[error("{what} not found at {}: {hint}", path.display())]
    MissingAsset {
        /// What was looked for ("guest kernel", "root filesystem", ...).
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What the user can do about it.
        hint: &'static str,
    },

    /// The hypervisor process could not be started or failed.
    #[error("hypervisor failed: {message}")]
    Vmm {
        /// What went wrong.
        message: String,
        /// The tail of the VM console, when there is one.
        console_tail: Option<String>,
    },

    /// The guest broke the protocol or did not become ready.
    #[error("guest error: {0}")]
    Guest(String),

    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl BoxError {
    /// Wrap an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BoxError::Io {
            context: context.into(),
            source,
        }
    }
}
