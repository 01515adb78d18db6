//! Giving the writable layer's free space back to the host. The layer is a
//! sparse file on the host, attached with `discard=unmap`: a discarded
//! range becomes a hole again. Rather than discarding on every delete (the
//! `discard` mount option costs each `rm` a device round trip), the freed
//! blocks are trimmed in one batch (`FITRIM`) at a clean power-off.
//!
//! ext4 remembers which groups it trimmed only while mounted, so the first
//! `FITRIM` after a boot walks every group; it is cut into ranges and stops
//! at [`TRIM_BUDGET`], so a huge layer cannot hold up the power-off (the
//! host gives the guest 10 s). What is left is trimmed at the next one.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::Mode;

/// Longest a power-off spends trimming.
pub const TRIM_BUDGET: Duration = Duration::from_secs(3);
/// Bytes of the filesystem trimmed by one `FITRIM`.
const RANGE_BYTES: u64 = 1 << 30;

/// `struct fstrim_range` of `<linux/fs.h>`.
#[repr(C)]
#[derive(Debug, Default)]
struct FstrimRange {
    start: u64,
    len: u64,
    minlen: u64,
}

nix::ioctl_readwrite!(fitrim, b'X', 121, FstrimRange);

/// What one trim did.
#[derive(Debug, PartialEq, Eq)]
pub struct Trimmed {
    /// Bytes the filesystem discarded.
    pub bytes: u64,
    /// Every range was done within the budget.
    pub complete: bool,
}

/// The ranges `FITRIM` is called on for a filesystem of `size` bytes.
fn ranges(size: u64) -> impl Iterator<Item = (u64, u64)> {
    (0..size.div_ceil(RANGE_BYTES)).map(move |i| {
        let start = i * RANGE_BYTES;
        (start, RANGE_BYTES.min(size - start))
    })
}

/// Discard the free blocks of the filesystem mounted at `mount`, for up to
/// `budget`. A filesystem that cannot (tmpfs) is an error (`ENOTTY`,
/// `EOPNOTSUPP`).
pub fn trim(mount: &str, budget: Duration) -> Result<Trimmed, Errno> {
    let deadline = Instant::now() + budget;
    let c_mount = CString::new(mount).map_err(|_| Errno::EINVAL)?;
    let fd = open(
        c_mount.as_c_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let vfs = nix::sys::statvfs::fstatvfs(&fd)?;
    let size = vfs.blocks() * vfs.fragment_size();
    let mut bytes = 0;
    for (start, len) in ranges(size) {
        if Instant::now() >= deadline {
            return Ok(Trimmed {
                bytes,
                complete: false,
            });
        }
        let mut range = FstrimRange {
            start,
            len,
            minlen: 0,
        };
        // SAFETY: `fd` is open and `range` is a valid fstrim_range that the
        // kernel fills in (bytes trimmed) during the call.
        unsafe { fitrim(fd.as_raw_fd(), &mut range) }?;
        bytes += range.len;
    }
    Ok(Trimmed {
        bytes,
        complete: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_filesystem_once() {
        assert_eq!(ranges(0).count(), 0);
        assert_eq!(ranges(4096).collect::<Vec<_>>(), [(0, 4096)]);
        let big: Vec<_> = ranges(2 * RANGE_BYTES + 5).collect();
        assert_eq!(
            big,
            [
                (0, RANGE_BYTES),
                (RANGE_BYTES, RANGE_BYTES),
                (2 * RANGE_BYTES, 5)
            ]
        );
    }

    #[test]
    fn a_filesystem_without_trim_is_an_error() {
        if std::path::Path::new("/dev/shm").is_dir() {
            assert!(
                trim("/dev/shm", TRIM_BUDGET).is_err(),
                "tmpfs has no FITRIM"
            );
        }
        assert_eq!(trim("/nonexistent/a3s", TRIM_BUDGET), Err(Errno::ENOENT));
    }
}
