//! The guest end of the agent port: one writer shared by every thread.
//!
//! Frames are encoded outside the lock and written whole under it, so frames
//! from the forwarders, the stdin writers, the reaper and the main thread
//! never interleave. Reads happen on the main thread through a separate
//! handle to the same open file.

use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{GuestMessage, Message};
use a3s_box_core::guest::{Frame, StdStream};

use crate::error::InitError;

/// How long the fatal path waits for another thread to finish its write.
const FATAL_LOCK_WAIT: Duration = Duration::from_secs(1);

/// The write half of the agent port.
#[derive(Debug)]
pub struct Port {
    writer: Mutex<File>,
}

impl Port {
    /// Wrap the open port.
    pub fn new(file: File) -> Self {
        Port {
            writer: Mutex::new(file),
        }
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // panic = "abort": a poisoned lock cannot happen in the release
        // build; in tests the data is a file handle, still usable.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Send one frame.
    pub fn send(&self, frame: &Frame) -> Result<(), InitError> {
        let mut buf = Vec::new();
        frame.encode(&mut buf)?;
        let mut w = self.lock();
        w.write_all(&buf).map_err(|e| InitError::Port(e.into()))?;
        Ok(())
    }

    /// Send `bytes` of `stream` as one data frame, written straight from the
    /// caller's buffer (the frame's header, then the payload, under the lock).
    pub fn send_data(
        &self,
        process: u32,
        stream: StdStream,
        bytes: &[u8],
    ) -> Result<(), InitError> {
        let header = Frame::data_header(process, stream, bytes.len())
            .ok_or_else(|| InitError::Protocol(format!("{} bytes exceed a frame", bytes.len())))?;
        let mut w = self.lock();
        w.write_all(&header)
            .and_then(|()| w.write_all(bytes))
            .map_err(|e| InitError::Port(e.into()))
    }

    /// Send a guest control message.
    pub fn send_message(&self, msg: GuestMessage) -> Result<(), InitError> {
        self.send(&Frame::Control(Message::Guest(msg)))
    }

    /// Best-effort `Fatal`: gives up when another thread holds the port for
    /// longer than [`FATAL_LOCK_WAIT`] (a wedged host).
    pub fn send_fatal(&self, reason: &str) {
        let frame = Frame::Control(Message::Guest(GuestMessage::Fatal {
            reason: reason.to_string(),
        }));
        let mut buf = Vec::new();
        if frame.encode(&mut buf).is_err() {
            return;
        }
        let deadline = Instant::now() + FATAL_LOCK_WAIT;
        loop {
            match self.writer.try_lock() {
                Ok(mut w) => {
                    let _ = w.write_all(&buf);
                    return;
                }
                Err(TryLockError::Poisoned(p)) => {
                    let _ = p.into_inner().write_all(&buf);
                    return;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => return,
            }
        }
    }
}
