//! The error type of guest-init. Its `Display` is the clear-text reason sent
//! to the host in `Fatal` (for example
//! `mount /dev/vda (ext4) on /a3s/lower: EINVAL: Invalid argument`).

use std::fmt;
use std::io;

use a3s_box_core::guest::FrameError;
use nix::errno::Errno;

/// A step of guest-init that failed.
#[derive(Debug)]
pub enum InitError {
    /// A system call failed; `what` names the call and its arguments.
    Sys {
        /// The step, e.g. `mount proc on /proc`.
        what: String,
        /// The error number it failed with.
        errno: Errno,
    },
    /// Reading or writing a frame on the host port failed.
    Port(FrameError),
    /// The host sent something the protocol does not allow here.
    Protocol(String),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::Sys { what, errno } => write!(f, "{what}: {errno}"),
            InitError::Port(e) => write!(f, "host port: {e}"),
            InitError::Protocol(what) => write!(f, "protocol error: {what}"),
        }
    }
}

impl std::error::Error for InitError {}

impl From<FrameError> for InitError {
    fn from(e: FrameError) -> Self {
        InitError::Port(e)
    }
}

/// The errno of an I/O error (`EIO` when it carries none).
pub fn errno_of(e: &io::Error) -> Errno {
    e.raw_os_error().map_or(Errno::EIO, Errno::from_raw)
}

/// Attach the name of the failed step to a system-call result.
pub trait Context<T> {
    /// Turn an error into [`InitError::Sys`] named by `what`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T, InitError>;
}

impl<T> Context<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|errno| InitError::Sys {
            what: what(),
            errno,
        })
    }
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, InitError> {
        self.map_err(|e| InitError::Sys {
            what: what(),
            errno: errno_of(&e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_errors_read_like_the_brief() {
        let err = Err::<(), _>(Errno::EINVAL)
            .context(|| "mount /dev/vda (ext4) on /a3s/lower".into())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount /dev/vda (ext4) on /a3s/lower: EINVAL: Invalid argument"
        );
        let io_err = io::Error::from_raw_os_error(libc::ENOENT);
        let err = Err::<(), _>(io_err)
            .context(|| "open x".into())
            .unwrap_err();
        assert!(err.to_string().starts_with("open x: ENOENT"), "{err}");
    }
}
