//! Serving the sandbox RPC: each connection on `sandbox.sock` (or an
//! in-process socket pair) reads request lines and hands them to the actor
//! through its [`Handle`]; `exec`/`attach` switch the connection to guest
//! frames (the actor's router numbers the client and rewrites ids both
//! ways), `events` to a stream of event lines. A connection closing
//! releases its holds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::guest::Frame;
use a3s_box_core::BoxError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::actor::{Connection, Handle, Outcome};
use super::rpc::{Envelope, Reply, Request, Response, RpcError, MAX_LINE_BYTES, RPC_VERSION};
use crate::guest::FrameReader;

/// What the server still owes its clients: replies being written and
/// frame sessions; the shim lets them finish before it exits (an idle
/// connection owes nothing and keeps nobody).
#[derive(Debug, Clone, Default)]
pub struct Connections {
    owed: Arc<AtomicU32>,
}

impl Connections {
    /// Wait (at most `limit`) until everything owed is delivered: the last
    /// replies and frames carry the exit codes clients wait for.
    pub async fn drain(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            // Let connection tasks write what the actor just answered.
            tokio::task::yield_now().await;
            if self.owed.load(Ordering::SeqCst) == 0 || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn owe(&self) -> Owed {
        self.owed.fetch_add(1, Ordering::SeqCst);
        Owed(self.owed.clone())
    }
}

/// Something owed to a client, until dropped.
struct Owed(Arc<AtomicU32>);

impl Drop for Owed {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serve `listener` for as long as the process lives.
pub fn serve(listener: UnixListener, handle: Handle) -> Connections {
    let connections = Connections::default();
    let owed = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let handle = handle.clone();
            let owed = owed.clone();
            tokio::spawn(async move { serve_owing(stream, handle, &owed).await });
        }
    });
    connections
}

async fn write_line(w: &mut OwnedWriteHalf, response: &Response) -> bool {
    let Ok(mut line) = serde_json::to_vec(response) else {
        return false;
    };
    line.push(b'\n');
    w.write_all(&line).await.is_ok()
}

fn error(e: &BoxError) -> Response {
    Response::Error(RpcError::from(e))
}

/// Serve one connection until it closes.
pub async fn serve_connection(stream: UnixStream, handle: Handle) {
    serve_owing(stream, handle, &Connections::default()).await
}

async fn serve_owing(stream: UnixStream, handle: Handle, owed: &Connections) {
    let conn = handle.connect();
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::with_capacity(256 * 1024, r);
    loop {
        let mut line = Vec::new();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let envelope = match serde_json::from_slice::<Envelope>(&line) {
            Ok(e) => e,
            Err(e) => {
                let e = BoxError::Invalid(format!("bad request: {e}"));
                if !write_line(&mut w, &error(&e)).await {
                    return;
                }
                continue;
            }
        };
        if envelope.version != RPC_VERSION {
            let e = BoxError::Invalid(format!(
                "sandbox RPC version {} is not spoken here: this supervisor speaks {RPC_VERSION}",
                envelope.version
            ));
            if !write_line(&mut w, &error(&e)).await {
                return;
            }
            continue;
        }
        let request = envelope.request;
        let session = matches!(request, Request::Exec { .. } | Request::Attach { .. });
        let (tx, rx) = unbounded_channel();
        let reply_owed = owed.owe();
        let outcome = conn.request(request, session.then_some(tx)).await;
        let response = match outcome {
            Outcome::Reply(r) => Response::Reply(r),
            Outcome::Error(e) => error(&e),
            Outcome::Session(id) => {
                let _session = owed.owe();
                drop(reply_owed);
                if write_line(&mut w, &Response::Reply(Reply::Ok)).await {
                    frames(conn, id, reader, w, rx).await;
                }
                return;
            }
            Outcome::Events(events) => {
                if write_line(&mut w, &Response::Reply(Reply::Ok)).await {
                    stream_events(w, events).await;
                }
                return;
            }
        };
        let written = write_line(&mut w, &response).await;
        drop(reply_owed);
        if !written {
            return;
        }
    }
}

/// The frames of client `id` both ways, until the actor lets it go (its
/// process ended, or the VM stopped) or it goes.
async fn frames(
    conn: Connection,
    id: u32,
    reader: BufReader<OwnedReadHalf>,
    mut w: OwnedWriteHalf,
    mut rx: UnboundedReceiver<Frame>,
) {
    let conn = Arc::new(conn);
    let to_client = tokio::spawn(async move {
        let mut buf = Vec::new();
        while let Some(frame) = rx.recv().await {
            buf.clear();
            if frame.encode(&mut buf).is_err() || w.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let inputs = conn.clone();
    let mut reader = FrameReader::from_buffered(reader);
    let from_client = tokio::spawn(async move {
        loop {
            match reader.next().await {
                Ok(Some(frame)) => {
                    if !inputs.input(id, frame) {
                        break;
                    }
                }
                Err(e) if e.is_recoverable() => {
                    tracing::warn!(id, "skipping a bad frame from a client: {e}");
                }
                Ok(None) | Err(_) => break,
            }
        }
        inputs.gone(id);
    });
    let _ = to_client.await;
    from_client.abort();
    conn.gone(id);
}

async fn stream_events(
    mut w: OwnedWriteHalf,
    mut events: UnboundedReceiver<super::rpc::SandboxEvent>,
) {
    while let Some(event) = events.recv().await {
        let Ok(mut line) = serde_json::to_vec(&event) else {
            continue;
        };
        line.push(b'\n');
        if w.write_all(&line).await.is_err() {
            return;
        }
    }
}
