//! Moving process bytes over the port: one forwarder thread per output pipe
//! (bounded by the host's credit) and one writer thread per stdin pipe
//! (returning credit to the host as it writes).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;

use a3s_box_core::guest::{Frame, StdStream, MAX_DATA_CHUNK_BYTES, STREAM_WINDOW_BYTES};

use crate::agent::session::{spawn_thread, Session};
use crate::error::InitError;
use crate::pid1::log::warning;

/// How long a forwarder waits for more output after a short read before it
/// sends what it has. Every frame costs the guest a port write, which is
/// expensive under emulation; programs that write 4 KiB at a time would
/// otherwise cost one frame per write. Interactive streams (a terminal) do
/// not wait.
const COALESCE_WAIT_MS: libc::c_int = 1;

/// Wait up to `ms` for `pipe` to be readable.
fn readable_within(pipe: &File, ms: libc::c_int) -> bool {
    let mut pfd = libc::pollfd {
        fd: pipe.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes one pollfd we own, for `ms` at most.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

/// Read into `buf`: block for the first bytes, then (with `coalesce`) keep
/// filling while more output follows within [`COALESCE_WAIT_MS`]. Returns 0
/// at the end of the stream.
fn fill(pipe: &mut File, buf: &mut [u8], coalesce: bool) -> io::Result<usize> {
    let mut n = loop {
        match pipe.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => break other?,
        }
    };
    while coalesce && n > 0 && n < buf.len() && readable_within(pipe, COALESCE_WAIT_MS) {
        match pipe.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(more) => n += more,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Report what was read; the error shows again on the next read.
            Err(_) => break,
        }
    }
    Ok(n)
}

/// Send one output pipe of `process` to the host until it ends, then `Eof`.
/// `coalesce`: batch small writes into bigger frames (not for terminals).
pub fn forward_output(
    session: &Session,
    process: u32,
    stream: StdStream,
    mut pipe: File,
    coalesce: bool,
) {
    let credits = session.credits();
    let mut buf = vec![0u8; MAX_DATA_CHUNK_BYTES];
    while let Some(credit) = credits.wait(process, stream) {
        let want = buf.len().min(credit as usize);
        let n = match fill(&mut pipe, &mut buf[..want], coalesce) {
            Ok(0) => break,
            Ok(n) => n,
            // A terminal's master side reads EIO once every slave is closed.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                warning!("read {stream:?} of process {process}: {e}");
                break;
            }
        };
        // n <= MAX_DATA_CHUNK_BYTES, which fits in u32.
        credits.spend(process, stream, n as u32);
        session.send_data(process, stream, &buf[..n]);
    }
    session.send(&Frame::Eof { process, stream });
    credits.close(process, stream);
    session.output_closed(process);
}

/// The queue between the port reader and a process's stdin writer.
#[derive(Debug)]
pub struct StdinQueue {
    tx: Sender<Vec<u8>>,
    /// Bytes received from the host and not yet credited back.
    pending: Arc<AtomicU32>,
}

impl StdinQueue {
    /// Queue bytes for the writer. The host may not have more than
    /// [`STREAM_WINDOW_BYTES`] uncredited: more is a protocol error.
    pub fn push(&self, process: u32, bytes: Vec<u8>) -> Result<(), InitError> {
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let before = self.pending.fetch_add(len, Ordering::SeqCst);
        if before.saturating_add(len) > STREAM_WINDOW_BYTES {
            return Err(InitError::Protocol(format!(
                "host sent {} bytes of stdin for process {process} beyond its {STREAM_WINDOW_BYTES}-byte credit",
                before.saturating_add(len) - STREAM_WINDOW_BYTES
            )));
        }
        // The writer only stops once every sender is gone, so this cannot fail.
        let _ = self.tx.send(bytes);
        Ok(())
    }
}

/// Start the stdin writer of `process`; dropping the queue ends its input.
pub fn start_stdin(session: &Arc<Session>, process: u32, pipe: File) -> StdinQueue {
    let (tx, rx) = mpsc::channel();
    let pending = Arc::new(AtomicU32::new(0));
    let queue = StdinQueue {
        tx,
        pending: Arc::clone(&pending),
    };
    let writer_session = Arc::clone(session);
    spawn_thread(session, format!("in-{process}"), move || {
        write_stdin(&writer_session, process, pipe, &rx, &pending);
    });
    queue
}

/// Write queued bytes to the pipe and credit them back. Once the process
/// stops reading (EPIPE) bytes are dropped but still credited, so the host
/// never stalls. The pipe closes when the queue's sender is dropped.
fn write_stdin(
    session: &Session,
    process: u32,
    mut pipe: File,
    rx: &Receiver<Vec<u8>>,
    pending: &AtomicU32,
) {
    let mut open = true;
    for bytes in rx {
        if open {
            if let Err(e) = pipe.write_all(&bytes) {
                if e.kind() != io::ErrorKind::BrokenPipe {
                    warning!("write stdin of process {process}: {e}");
                }
                open = false;
            }
        }
        let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        pending.fetch_sub(len, Ordering::SeqCst);
        session.send(&Frame::Credit {
            process,
            stream: StdStream::Stdin,
            bytes: len,
        });
    }
}
