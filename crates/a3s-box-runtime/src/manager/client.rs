//! The client end of a box's exec socket: stream a process's stdin, stdout
//! and stderr, forward signals and terminal resizes, and return how it
//! ended. Used by `exec`, `attach`, `cp`, `top` and `stats`.

use std::sync::Arc;

use a3s_box_core::guest::message::{GuestMessage, HostMessage, Message, WindowSize};
use a3s_box_core::guest::{Frame, StdStream, MAX_DATA_CHUNK_BYTES, STREAM_WINDOW_BYTES};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::Semaphore;

use crate::guest::{CreditBatch, FrameReader, FrameWriter};

/// How long queued frames may take to leave when the session ends.
const SEND_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Ctrl-P Ctrl-Q, Docker's default detach keys.
const DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Something the user did while the session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    /// Deliver this signal to the process.
    Signal(i32),
    /// Our terminal changed size.
    Resize(WindowSize),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited with this code.
    Exited(i32),
    /// It could not be started (125/126/127) and why.
    SpawnFailed(i32, String),
    /// The user detached (Ctrl-P Ctrl-Q) or the client asked to stop early.
    Detached,
    /// The process was started and the client stopped waiting (`exec -d`).
    Started,
    /// The box stopped before the process ended.
    Lost,
}

/// The local ends of a session.
pub struct ClientIo {
    /// Our input, when the process reads stdin.
    pub stdin: Option<Box<dyn AsyncRead + Unpin + Send>>,
    /// Send `Eof` when our input ends (`exec -i`); otherwise just stop
    /// reading it (`attach`).
    pub close_stdin_at_eof: bool,
    /// Watch the input for Ctrl-P Ctrl-Q.
    pub detach_keys: bool,
    /// Where stdout goes.
    pub stdout: Box<dyn AsyncWrite + Unpin + Send>,
    /// Where stderr goes.
    pub stderr: Box<dyn AsyncWrite + Unpin + Send>,
    /// Signals and resizes to forward.
    pub events: Option<UnboundedReceiver<ClientEvent>>,
    /// Return as soon as the process has started.
    pub return_when_started: bool,
    /// The process runs already (`attach`): stdin flows at once.
    pub already_running: bool,
}

impl std::fmt::Debug for ClientIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIo")
    }
}

fn host(msg: HostMessage) -> Frame {
    Frame::Control(Message::Host(msg))
}

/// Copy our input to the process within the credit the guest grants.
/// Returns true when the user typed the detach keys.
async fn pump_stdin(
    mut input: Box<dyn AsyncRead + Unpin + Send>,
    to_box: UnboundedSender<Frame>,
    credit: Arc<Semaphore>,
    close_at_eof: bool,
    detach_keys: bool,
) -> bool {
    let mut buf = vec![0u8; MAX_DATA_CHUNK_BYTES];
    let mut last = 0u8;
    loop {
        let n = match input.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut chunk = &buf[..n];
        if detach_keys {
            let mut prev = last;
            if let Some(i) = chunk.iter().position(|&b| {
                let hit = prev == DETACH_KEYS[0] && b == DETACH_KEYS[1];
                prev = b;
                hit
            }) {
                // Everything before the keys still goes (minus the Ctrl-P).
                let keep = i.saturating_sub(1);
                if keep > 0 {
                    send_stdin(&to_box, &credit, &buf[..keep]).await;
                }
                return true;
            }
            last = chunk[n - 1];
            // A trailing Ctrl-P waits for the next byte.
            if last == DETACH_KEYS[0] {
                chunk = &chunk[..n - 1];
            }
        }
        if !chunk.is_empty() && !send_stdin(&to_box, &credit, chunk).await {
            return false;
        }
    }
    if close_at_eof {
        let _ = to_box.send(Frame::Eof {
            process: 0,
            stream: StdStream::Stdin,
        });
    }
    false
}

async fn send_stdin(to_box: &UnboundedSender<Frame>, credit: &Semaphore, bytes: &[u8]) -> bool {
    // A chunk is at most MAX_DATA_CHUNK_BYTES, well within u32.
    let Ok(permit) = credit.acquire_many(bytes.len() as u32).await else {
        return false;
    };
    permit.forget();
    to_box
        .send(Frame::Data {
            process: 0,
            stream: StdStream::Stdin,
            bytes: bytes.to_vec(),
        })
        .is_ok()
}

/// Run a session over a connected exec socket until the process ends.
pub async fn run_session(
    mut reader: FrameReader,
    mut writer: FrameWriter,
    mut io: ClientIo,
) -> std::io::Result<Outcome> {
    let (to_box, mut outgoing) = unbounded_channel::<Frame>();
    let mut sender = tokio::spawn(async move {
        while let Some(frame) = outgoing.recv().await {
            let last = matches!(frame, Frame::Control(Message::Host(HostMessage::Detach)));
            if writer.send(&frame).await.is_err() || last {
                break;
            }
        }
    });
    let credit = Arc::new(Semaphore::new(STREAM_WINDOW_BYTES as usize));
    let mut credit_batch = CreditBatch::default();
    let (detach_tx, mut detached) = unbounded_channel::<()>();
    let mut stdin = io.stdin.take();
    let start_stdin = |input: Box<dyn AsyncRead + Unpin + Send>| {
        let (to_box, credit) = (to_box.clone(), credit.clone());
        let (close, keys) = (io.close_stdin_at_eof, io.detach_keys);
        let detach_tx = detach_tx.clone();
        tokio::spawn(async move {
            if pump_stdin(input, to_box, credit, close, keys).await {
                let _ = detach_tx.send(());
            }
        });
    };
    if io.already_running {
        if let Some(input) = stdin.take() {
            start_stdin(input);
        }
    }
    if let Some(mut events) = io.events.take() {
        let to_box = to_box.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                let frame = match event {
                    ClientEvent::Signal(signal) => host(HostMessage::Signal { process: 0, signal }),
                    ClientEvent::Resize(size) => host(HostMessage::Resize { process: 0, size }),
                };
                if to_box.send(frame).is_err() {
                    break;
                }
            }
        });
    }
    let outcome = loop {
        let frame = tokio::select! {
            frame = reader.next() => frame,
            Some(()) = detached.recv() => {
                // The process stays; the supervisor must know before we go.
                let _ = to_box.send(host(HostMessage::Detach));
                break Outcome::Detached;
            }
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => break Outcome::Lost,
            Err(e) if e.is_recoverable() => continue,
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        match frame {
            Frame::Data { stream, bytes, .. } => {
                let out = match stream {
                    StdStream::Stderr => &mut io.stderr,
                    _ => &mut io.stdout,
                };
                // A closed local output drops the bytes (as `docker exec
                // ... | head` does) but keeps the credit flowing.
                if out.write_all(&bytes).await.is_ok() {
                    let _ = out.flush().await;
                }
                if let Some(bytes) = credit_batch.consumed(stream, bytes.len() as u32) {
                    let _ = to_box.send(Frame::Credit {
                        process: 0,
                        stream,
                        bytes,
                    });
                }
            }
            Frame::Credit {
                stream: StdStream::Stdin,
                bytes,
                ..
            } => credit.add_permits(bytes as usize),
            Frame::Control(Message::Guest(GuestMessage::Started { .. })) => {
                if io.return_when_started {
                    break Outcome::Started;
                }
                if let Some(input) = stdin.take() {
                    start_stdin(input);
                }
            }
            Frame::Control(Message::Guest(GuestMessage::SpawnFailed {
                exit_code, reason, ..
            })) => break Outcome::SpawnFailed(exit_code, reason),
            Frame::Control(Message::Guest(GuestMessage::Exited { exit_code, .. })) => {
                break Outcome::Exited(exit_code)
            }
            _ => {}
        }
    };
    let _ = io.stdout.flush().await;
    let _ = io.stderr.flush().await;
    drop(to_box);
    // A detaching client's last frame must reach the supervisor.
    if outcome == Outcome::Detached {
        let _ = tokio::time::timeout(SEND_GRACE, &mut sender).await;
    }
    sender.abort();
    Ok(outcome)
}
