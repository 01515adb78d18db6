//! The exec socket of a running box: how `exec`, `attach`, `cp`, `top` and
//! `stats` reach its processes.
//!
//! A client connects to `<box>/exec.sock` and sends one JSON line, a
//! [`ClientRequest`]; from then on both sides speak the guest protocol's
//! frames. The supervisor gives each connection its own process id on the
//! guest channel and rewrites ids both ways, so a client only ever sees and
//! touches its own process. A client that misbehaves or vanishes loses its
//! own process and nothing else (see [`super::mux`]).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use a3s_box_core::guest::message::{GuestMessage, Message, ProcessSpec};
use a3s_box_core::guest::Frame;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::mux::MAIN_PROCESS;
use super::vm::Control;
use crate::guest::{split, FrameWriter};

/// The exec socket in a box directory.
pub const EXEC_SOCKET: &str = "exec.sock";
/// Longest request line a client may send.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;
/// First id given to a client (the main process is 1).
const FIRST_CLIENT_ID: u32 = MAIN_PROCESS + 1;

/// What a client asks for, as the first line on the socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientRequest {
    /// Start a process in the box.
    Exec {
        /// What to run (its `process` field is ignored).
        spec: ProcessSpec,
        /// Leave the process running when this client goes (`exec -d`).
        #[serde(default)]
        detach: bool,
    },
    /// Follow the main process's output and optionally write its stdin.
    Attach {
        /// Write the main process's stdin.
        stdin: bool,
        /// Receive its recent output first.
        replay: bool,
    },
}

/// Where the supervisor's current run takes controls (`None` between runs).
pub type ControlSlot = Arc<Mutex<Option<UnboundedSender<Control>>>>;

/// The current run's control sender, if the box is running.
pub fn current(slot: &ControlSlot) -> Option<UnboundedSender<Control>> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Connections being served; the supervisor lets them finish before it exits.
#[derive(Debug, Clone, Default)]
pub struct Connections {
    active: Arc<AtomicU32>,
}

impl Connections {
    /// Wait (at most `limit`) until every client has been sent all its
    /// frames: the last ones carry the exit code it waits for.
    pub async fn drain(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

/// Serve clients on `listener` for as long as the supervisor lives.
pub async fn serve(listener: UnixListener, slot: ControlSlot, connections: Connections) {
    let next_id = Arc::new(AtomicU32::new(FIRST_CLIENT_ID));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let active = connections.active.clone();
        active.fetch_add(1, Ordering::SeqCst);
        let slot = slot.clone();
        tokio::spawn(async move {
            handle(stream, id, slot).await;
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Answer a client that cannot be served with a `SpawnFailed` frame.
async fn refuse(writer: &mut FrameWriter, reason: String) {
    let frame = Frame::Control(Message::Guest(GuestMessage::SpawnFailed {
        process: 0,
        exit_code: 125,
        reason,
    }));
    let _ = writer.send(&frame).await;
}

pub(super) async fn handle(stream: UnixStream, id: u32, slot: ControlSlot) {
    let (reader, mut writer) = split(stream);
    let mut reader = reader.into_inner();
    let mut line = Vec::new();
    let read = (&mut reader)
        .take(MAX_REQUEST_BYTES)
        .read_until(b'\n', &mut line)
        .await;
    let request = match read.map(|_| serde_json::from_slice::<ClientRequest>(&line)) {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => return refuse(&mut writer, format!("bad request: {e}")).await,
        Err(e) => return refuse(&mut writer, format!("read request: {e}")).await,
    };
    let Some(controls) = current(&slot) else {
        return refuse(&mut writer, "the box is not running".into()).await;
    };
    let (tx, mut rx) = unbounded_channel();
    let control = match request {
        ClientRequest::Exec { spec, detach } => Control::Exec {
            process: id,
            spec,
            tx,
            detach,
        },
        ClientRequest::Attach { stdin, replay } => Control::Attach {
            client: id,
            tx,
            stdin,
            replay,
        },
    };
    if controls.send(control).is_err() {
        return refuse(&mut writer, "the box is not running".into()).await;
    }
    // Frames to the client, until the run forgets it (its process ended or
    // the VM stopped); then the socket's write side closes.
    let to_client = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if writer.send(&frame).await.is_err() {
                break;
            }
        }
    });
    let mut reader = crate::guest::FrameReader::from_buffered(reader);
    let inputs = controls.clone();
    let from_client = tokio::spawn(async move {
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    if inputs.send(Control::Input { id, frame }).is_err() {
                        break;
                    }
                }
                Err(e) if e.is_recoverable() => {
                    tracing::warn!(id, "skipping a bad frame from a client: {e}");
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = inputs.send(Control::Gone(id));
    });
    // The session is over once the client has been sent everything: the
    // run forgot it (its process ended, or the VM stopped).
    let _ = to_client.await;
    from_client.abort();
    let _ = controls.send(Control::Gone(id));
}

/// Connect to the exec socket of the box in `dir` and send `request`.
pub async fn connect(
    dir: &std::path::Path,
    request: &ClientRequest,
) -> std::io::Result<(crate::guest::FrameReader, FrameWriter)> {
    let mut stream = UnixStream::connect(dir.join(EXEC_SOCKET)).await?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    Ok(split(stream))
}

impl super::BoxManager {
    /// Open a session on a running box: `exec`, `attach` and the helpers
    /// start here. A box that is not running is a clear error.
    pub async fn open_session(
        &self,
        record: &crate::state::BoxRecord,
        request: &ClientRequest,
    ) -> a3s_box_core::Result<(crate::guest::FrameReader, FrameWriter)> {
        use a3s_box_core::status::BoxStatus;
        use a3s_box_core::BoxError;
        let name = &record.config.name;
        match record.state.status {
            BoxStatus::Running if crate::state::shim_alive(&record.dir) => {}
            BoxStatus::Paused => {
                return Err(BoxError::NotRunning(format!(
                    "box {name} is paused: unpause it first"
                )))
            }
            status => {
                return Err(BoxError::NotRunning(format!(
                    "box {name} is not running ({status}): start it first"
                )))
            }
        }
        connect(&record.dir, request)
            .await
            .map_err(|e| BoxError::io(format!("connect to box {name}"), e))
    }
}
