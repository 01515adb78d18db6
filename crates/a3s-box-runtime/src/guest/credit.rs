//! Returning output credit to the guest in batches: every credit frame
//! costs the guest a read of the port, which is expensive under emulation.

use a3s_box_core::guest::{StdStream, STREAM_WINDOW_BYTES};

/// Credit is returned once this much of a stream has been consumed. Well
/// under the window, so the sender never runs dry while credit waits here.
pub const CREDIT_BATCH_BYTES: u32 = STREAM_WINDOW_BYTES / 4;

/// Consumed-but-unreturned bytes of stdout and stderr.
#[derive(Debug, Default)]
pub struct CreditBatch {
    pending: [u32; 2],
}

impl CreditBatch {
    /// Note `bytes` consumed on `stream`; returns the credit to send now.
    pub fn consumed(&mut self, stream: StdStream, bytes: u32) -> Option<u32> {
        let slot = match stream {
            StdStream::Stdout => &mut self.pending[0],
            StdStream::Stderr => &mut self.pending[1],
            StdStream::Stdin => return Some(bytes),
        };
        *slot = slot.saturating_add(bytes);
        (*slot >= CREDIT_BATCH_BYTES).then(|| std::mem::take(slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_is_returned_in_batches_per_stream() {
        let mut b = CreditBatch::default();
        let half = CREDIT_BATCH_BYTES / 2;
        assert_eq!(b.consumed(StdStream::Stdout, half), None);
        assert_eq!(b.consumed(StdStream::Stderr, half), None);
        assert_eq!(
            b.consumed(StdStream::Stdout, half),
            Some(CREDIT_BATCH_BYTES)
        );
        assert_eq!(b.consumed(StdStream::Stdout, 1), None);
        assert_eq!(
            b.consumed(StdStream::Stderr, half + 5),
            Some(CREDIT_BATCH_BYTES + 5)
        );
    }
}
