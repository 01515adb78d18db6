//! Making the guest's clock and random numbers its own, from `Boot`: the
//! host's wall-clock time (`clock_settime(CLOCK_REALTIME)`) and fresh
//! entropy (`RNDADDENTROPY`, then `RNDRESEEDCRNG` so the next random bytes
//! already depend on it). A VM restored from a memory snapshot resumes with
//! the snapshot's clock and RNG state; the same message fixes both before
//! anything runs.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;

use a3s_box_core::guest::message::{WallClock, MAX_ENTROPY_BYTES};
use nix::errno::Errno;

use crate::error::{Context, InitError};

/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;

/// Set `CLOCK_REALTIME` to `clock`.
pub fn set_clock(clock: WallClock) -> Result<(), InitError> {
    let ts = timespec(clock)
        .ok_or(Errno::EINVAL)
        .context(|| format!("the host's time {}.{:09}", clock.secs, clock.nanos))?;
    // SAFETY: `ts` is a valid timespec that outlives the call.
    let rc = unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) };
    Errno::result(rc)
        .map(drop)
        .context(|| "set the clock".into())
}

fn timespec(clock: WallClock) -> Option<libc::timespec> {
    (clock.nanos < 1_000_000_000).then_some(libc::timespec {
        tv_sec: clock.secs,
        tv_nsec: libc::c_long::from(clock.nanos),
    })
}

/// The argument of `RNDADDENTROPY` (`struct rand_pool_info`): the entropy in
/// bits, the size in bytes, then the bytes (at most [`MAX_ENTROPY_BYTES`]).
fn pool_info(bytes: &[u8]) -> Vec<u8> {
    let bytes = &bytes[..bytes.len().min(MAX_ENTROPY_BYTES)];
    // Both fit in an i32: at most MAX_ENTROPY_BYTES * 8.
    let bits = (bytes.len() * 8) as i32;
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&bits.to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(bytes);
    info
}

/// Mix `bytes` into the kernel's RNG, credited as entropy, and reseed the
/// CRNG from it at once.
pub fn add_entropy(bytes: &[u8]) -> Result<(), InitError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let random = OpenOptions::new()
        .write(true)
        .open("/dev/urandom")
        .context(|| "open /dev/urandom".into())?;
    let info = pool_info(bytes);
    // SAFETY: `info` is a rand_pool_info whose buf_size matches the bytes
    // that follow its header; the kernel only reads it.
    let rc = unsafe { libc::ioctl(random.as_raw_fd(), RNDADDENTROPY as _, info.as_ptr()) };
    Errno::result(rc)
        .map(drop)
        .context(|| "add the host's entropy (RNDADDENTROPY)".into())?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    let rc = unsafe { libc::ioctl(random.as_raw_fd(), RNDRESEEDCRNG as _) };
    Errno::result(rc)
        .map(drop)
        .context(|| "reseed the RNG (RNDRESEEDCRNG)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_info_has_bits_size_then_bytes() {
        let info = pool_info(&[1, 2, 3]);
        assert_eq!(&info[..4], &24i32.to_ne_bytes());
        assert_eq!(&info[4..8], &3i32.to_ne_bytes());
        assert_eq!(&info[8..], &[1, 2, 3]);
        let big = pool_info(&[7; MAX_ENTROPY_BYTES + 10]);
        assert_eq!(big.len(), 8 + MAX_ENTROPY_BYTES);
    }

    #[test]
    fn clocks_with_too_many_nanoseconds_are_refused() {
        let ok = timespec(WallClock {
            secs: 1_700_000_000,
            nanos: 999_999_999,
        })
        .unwrap();
        assert_eq!((ok.tv_sec, ok.tv_nsec), (1_700_000_000, 999_999_999));
        assert!(timespec(WallClock {
            secs: 0,
            nanos: 1_000_000_000
        })
        .is_none());
    }
}
