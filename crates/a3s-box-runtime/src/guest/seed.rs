//! What the host hands a booting (or restored) guest so its clock and random
//! numbers are its own: the wall-clock time and fresh entropy.

use std::io::Read;
use std::time::SystemTime;

use a3s_box_core::guest::message::WallClock;
use a3s_box_core::{BoxError, Result};

/// Bytes of entropy sent with each boot.
pub const BOOT_ENTROPY_BYTES: usize = 32;

/// The host's wall-clock time now.
pub fn wall_clock() -> WallClock {
    WallClock::from(SystemTime::now())
}

/// [`BOOT_ENTROPY_BYTES`] fresh bytes from the host's RNG.
pub fn fresh_entropy() -> Result<Vec<u8>> {
    let mut bytes = vec![0u8; BOOT_ENTROPY_BYTES];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| BoxError::io("read /dev/urandom", e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entropy_is_fresh_each_time() {
        let a = fresh_entropy().unwrap();
        let b = fresh_entropy().unwrap();
        assert_eq!(a.len(), BOOT_ENTROPY_BYTES);
        assert_ne!(a, b);
    }

    #[test]
    fn the_clock_is_after_2020() {
        assert!(wall_clock().secs > 1_577_836_800);
    }
}
