//! Per-stream send credit for guest → host data (stdout, stderr).
//!
//! Each stream starts with [`STREAM_WINDOW_BYTES`]; a forwarder spends credit
//! as it sends and blocks when it has none; the host returns credit with
//! `Frame::Credit` as it consumes bytes.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use a3s_box_core::guest::{StdStream, STREAM_WINDOW_BYTES};

type Key = (u32, StdStream);

/// Credit of every open output stream.
#[derive(Debug, Default)]
pub struct Credits {
    state: Mutex<HashMap<Key, u32>>,
    changed: Condvar,
}

impl Credits {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, u32>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Start accounting a stream with the initial window.
    pub fn open(&self, process: u32, stream: StdStream) {
        self.lock().insert((process, stream), STREAM_WINDOW_BYTES);
    }

    /// Stop accounting a stream; later credit for it is ignored.
    pub fn close(&self, process: u32, stream: StdStream) {
        self.lock().remove(&(process, stream));
        self.changed.notify_all();
    }

    /// Add credit from the host. Returns false for a stream that is not open.
    pub fn grant(&self, process: u32, stream: StdStream, bytes: u32) -> bool {
        let mut state = self.lock();
        let Some(credit) = state.get_mut(&(process, stream)) else {
            return false;
        };
        *credit = credit.saturating_add(bytes);
        self.changed.notify_all();
        true
    }

    /// Block until the stream has credit and return it (without spending
    /// it). `None` when the stream was closed meanwhile.
    pub fn wait(&self, process: u32, stream: StdStream) -> Option<u32> {
        let mut state = self.lock();
        loop {
            match state.get(&(process, stream)) {
                None => return None,
                Some(&credit) if credit > 0 => return Some(credit),
                Some(_) => {
                    state = self
                        .changed
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
    }

    /// Spend credit for bytes about to be sent.
    pub fn spend(&self, process: u32, stream: StdStream, bytes: u32) {
        if let Some(credit) = self.lock().get_mut(&(process, stream)) {
            *credit = credit.saturating_sub(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::thread;
    use std::time::Duration;

    use super::*;

    #[test]
    fn starts_at_the_window_and_blocks_when_spent() {
        let credits = Arc::new(Credits::default());
        credits.open(1, StdStream::Stdout);
        assert_eq!(
            credits.wait(1, StdStream::Stdout),
            Some(STREAM_WINDOW_BYTES)
        );
        credits.spend(1, StdStream::Stdout, STREAM_WINDOW_BYTES);

        let waiter = {
            let credits = Arc::clone(&credits);
            thread::spawn(move || credits.wait(1, StdStream::Stdout))
        };
        thread::sleep(Duration::from_millis(20));
        assert!(!waiter.is_finished(), "no credit: the sender must block");
        assert!(credits.grant(1, StdStream::Stdout, 10));
        assert_eq!(waiter.join().unwrap(), Some(10));
    }

    #[test]
    fn unknown_and_closed_streams() {
        let credits = Arc::new(Credits::default());
        assert!(!credits.grant(9, StdStream::Stderr, 1));
        credits.open(2, StdStream::Stderr);
        credits.spend(2, StdStream::Stderr, u32::MAX);
        let waiter = {
            let credits = Arc::clone(&credits);
            thread::spawn(move || credits.wait(2, StdStream::Stderr))
        };
        thread::sleep(Duration::from_millis(20));
        credits.close(2, StdStream::Stderr);
        assert_eq!(waiter.join().unwrap(), None);
        assert_eq!(credits.wait(2, StdStream::Stdout), None);
    }

    #[test]
    fn grants_saturate() {
        let credits = Credits::default();
        credits.open(3, StdStream::Stdout);
        assert!(credits.grant(3, StdStream::Stdout, u32::MAX));
        assert_eq!(credits.wait(3, StdStream::Stdout), Some(u32::MAX));
    }
}
