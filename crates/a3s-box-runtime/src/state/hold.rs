//! Holds on `--rm` boxes: the supervisor of an `--rm` box removes it as
//! soon as its workload ends, which would take the exit code and the last
//! output away from a client still reading them. Such a client holds the
//! box (a shared lock); the supervisor waits, bounded, until nobody does.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use a3s_box_core::Result;
use nix::fcntl::{Flock, FlockArg};

/// The lock file in a box directory.
const HOLD_LOCK: &str = "hold.lock";
const POLL: Duration = Duration::from_millis(20);

/// A client's hold on a box directory, released when dropped.
#[derive(Debug)]
pub struct Hold {
    _lock: Flock<File>,
}

/// Hold the box in `dir`.
pub fn hold(dir: &Path) -> Result<Hold> {
    super::lock(&dir.join(HOLD_LOCK), FlockArg::LockSharedNonblock).map(|lock| Hold { _lock: lock })
}

/// Wait until no client holds `dir`, or `limit` has passed; true if free.
pub fn wait_unheld(dir: &Path, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let Ok(file) = File::open(dir.join(HOLD_LOCK)) else {
            return true;
        };
        if Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hold_delays_the_supervisor_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            wait_unheld(dir.path(), Duration::ZERO),
            "no lock file: free"
        );
        let h = hold(dir.path()).unwrap();
        let other = hold(dir.path()).unwrap();
        assert!(!wait_unheld(dir.path(), Duration::from_millis(50)));
        drop(h);
        assert!(!wait_unheld(dir.path(), Duration::from_millis(50)));
        drop(other);
        assert!(wait_unheld(dir.path(), Duration::ZERO));
    }
}
