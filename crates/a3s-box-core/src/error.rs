//! The error type of the engine and the VMM contract.
//!
//! Every error has a [`ErrorKind`]: front ends map kinds (never messages) to
//! what their users see — the CLI to exit codes, the HTTP service to status
//! codes. The message says what was wrong and what to do.

use std::fmt;
use std::path::PathBuf;

/// Result alias used across the VMM contract.
pub type Result<T> = std::result::Result<T, BoxError>;

/// What sort of failure an error is, for front ends to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or refused as given (HTTP 400).
    Invalid,
    /// The box, pod, image, volume or network named does not exist (404).
    NotFound,
    /// The request clashes with what exists (a name in use, a box running) (409).
    Conflict,
    /// The box is not running (or not paused) as the request needs (409).
    NotRunning,
    /// Something the host must provide is missing or out of reach: an
    /// asset, a binary, a supervisor, host resources (503).
    Unavailable,
    /// The hypervisor failed to start or run the VM (500).
    Hypervisor,
    /// The guest broke the protocol or failed (500).
    Guest,
    /// An operating-system call failed, or a bug (500).
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::NotRunning => "not running",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Hypervisor => "hypervisor",
            ErrorKind::Guest => "guest",
            ErrorKind::Internal => "internal",
        })
    }
}

/// Errors the engine, a VMM backend or the runtime reports.
#[derive(Debug, thiserror::Error)]
pub enum BoxError {
    /// The spec or an option is invalid; the message says what to change.
    #[error("{0}")]
    Invalid(String),

    /// No such object: `what` is "box", "pod", "image", "volume", "network".
    #[error("no such {what}: {name}")]
    NotFound {
        /// Kind of object.
        what: &'static str,
        /// The name or id the user gave.
        name: String,
    },

    /// The request clashes with the current state (name in use, box running).
    #[error("{0}")]
    Conflict(String),

    /// The box is not in the state the request needs.
    #[error("{0}")]
    NotRunning(String),

    /// The host cannot provide what is needed right now.
    #[error("{0}")]
    Unavailable(String),

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

    /// "no such `what`: `name`".
    pub fn not_found(what: &'static str, name: impl Into<String>) -> Self {
        BoxError::NotFound {
            what,
            name: name.into(),
        }
    }

    /// What sort of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            BoxError::Invalid(_) => ErrorKind::Invalid,
            BoxError::NotFound { .. } => ErrorKind::NotFound,
            BoxError::Conflict(_) => ErrorKind::Conflict,
            BoxError::NotRunning(_) => ErrorKind::NotRunning,
            BoxError::Unavailable(_) | BoxError::MissingAsset { .. } => ErrorKind::Unavailable,
            BoxError::Vmm { .. } => ErrorKind::Hypervisor,
            BoxError::Guest(_) => ErrorKind::Guest,
            BoxError::Io { .. } => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_kind() {
        assert_eq!(
            BoxError::not_found("box", "web").to_string(),
            "no such box: web"
        );
        assert_eq!(
            BoxError::not_found("box", "web").kind(),
            ErrorKind::NotFound
        );
        assert_eq!(BoxError::Conflict("x".into()).kind(), ErrorKind::Conflict);
        assert_eq!(
            BoxError::io("read", std::io::Error::other("x")).kind(),
            ErrorKind::Internal
        );
        assert_eq!(
            BoxError::MissingAsset {
                what: "guest kernel",
                path: "/k".into(),
                hint: "h"
            }
            .kind(),
            ErrorKind::Unavailable
        );
    }
}
