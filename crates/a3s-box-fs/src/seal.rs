//! Shares that turn read-only for good once the guest seals them.
//!
//! A new volume mounted read-only (`-v vol:/data:ro`) is still filled from
//! the image, as in Docker. The copy is made by guest-init before the
//! workload starts, so the daemon serves the share writable until then.
//! When the copy is done, guest-init sets [`SEAL_XATTR`] on the share. From
//! that request on, the daemon refuses every operation that could change
//! the share, whoever asks. The seal cannot be undone, so a workload that
//! remounts the share read-write still cannot write to it.
//!
//! This is enforced here, in the daemon. A share that is read-only from the
//! start (`--read-only`) is also a read-only bind mount in the host kernel.

use std::ffi::CStr;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

pub use a3s_box_core::guest::message::SEAL_XATTR;

/// Whether the share has been sealed.
#[derive(Debug, Default)]
pub struct Seal {
    sealed: AtomicBool,
}

impl Seal {
    /// Whether a `setxattr` of `name` is the seal request; if so, the share
    /// is sealed from now on.
    pub fn request(&self, name: &CStr) -> bool {
        let is_seal = name.to_bytes() == SEAL_XATTR.as_bytes();
        if is_seal {
            self.sealed.store(true, Ordering::SeqCst);
            log::info!("share sealed: read-only from now on");
        }
        is_seal
    }

    /// `EROFS` once sealed.
    pub fn writable(&self) -> io::Result<()> {
        match self.sealed.load(Ordering::SeqCst) {
            true => Err(io::Error::from_raw_os_error(libc::EROFS)),
            false => Ok(()),
        }
    }

    /// Whether an open with `flags` may go on: once sealed, only for
    /// reading (or `O_PATH`), never truncating or creating.
    pub fn open(&self, flags: u32) -> io::Result<()> {
        if self.writable().is_ok() {
            return Ok(());
        }
        let flags = flags as libc::c_int;
        if flags & libc::O_PATH != 0 {
            return Ok(());
        }
        let changes = flags & libc::O_ACCMODE != libc::O_RDONLY
            || flags & (libc::O_TRUNC | libc::O_CREAT | libc::O_EXCL) != 0
            || flags & libc::O_TMPFILE == libc::O_TMPFILE;
        match changes {
            true => Err(io::Error::from_raw_os_error(libc::EROFS)),
            false => Ok(()),
        }
    }

    /// Whether an `access` check with `mask` may go on.
    pub fn access(&self, mask: u32) -> io::Result<()> {
        match mask & libc::W_OK as u32 {
            0 => Ok(()),
            _ => self.writable(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erofs(r: io::Result<()>) -> bool {
        r.err().and_then(|e| e.raw_os_error()) == Some(libc::EROFS)
    }

    #[test]
    fn only_the_seal_request_seals_and_then_only_reads_pass() {
        let seal = Seal::default();
        assert!(!seal.request(c"user.other"));
        assert!(seal.writable().is_ok());
        assert!(seal.open(libc::O_RDWR as u32).is_ok());
        assert!(seal.access(libc::W_OK as u32).is_ok());

        let name = std::ffi::CString::new(SEAL_XATTR).unwrap();
        assert!(seal.request(&name));
        assert!(erofs(seal.writable()));
        for flags in [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDONLY | libc::O_TRUNC,
            libc::O_RDONLY | libc::O_CREAT,
            libc::O_RDONLY | libc::O_EXCL,
            libc::O_RDWR | libc::O_TMPFILE,
        ] {
            assert!(erofs(seal.open(flags as u32)), "{flags:#o}");
        }
        for flags in [
            libc::O_RDONLY,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            libc::O_PATH,
        ] {
            assert!(seal.open(flags as u32).is_ok(), "{flags:#o}");
        }
        assert!(erofs(seal.access(libc::W_OK as u32)));
        assert!(seal.access(libc::R_OK as u32).is_ok());
        // Nothing unseals it.
        assert!(!seal.request(c"user.a3s-box.unseal"));
        assert!(erofs(seal.writable()));
    }
}
