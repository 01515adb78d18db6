//! A QMP client: commands with arguments, replies matched by id (several
//! commands may be in flight), and QEMU's asynchronous events (`STOP`,
//! `RESUME`, `SHUTDOWN`, `MIGRATION`, ...) delivered to the owner on a
//! channel instead of being dropped.
//!
//! One task reads the socket: a reply goes to the command that waits for
//! its id, an event to the channel [`Qmp::connect`] returns. When QEMU
//! closes the socket, waiting commands fail with [`QmpError::Closed`] and
//! the event channel ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_box_core::BoxError;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

/// How long connecting, the greeting and each reply may take by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// An asynchronous event from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub struct QmpEvent {
    /// Which event.
    pub kind: EventKind,
    /// Its `data` (`Null` when it has none).
    pub data: Value,
    /// When QEMU emitted it (since the Unix epoch), when it said.
    pub timestamp: Option<Duration>,
}

/// The events the runtime acts on; any other is kept by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// The vCPUs stopped (`stop`, an incoming migration, an error).
    Stop,
    /// The vCPUs run again.
    Resume,
    /// The guest or QEMU is shutting down (`data.guest`, `data.reason`).
    Shutdown,
    /// The guest asked for a reset.
    Reset,
    /// Migration changed state (`data.status`: `active`, `completed`, `failed`, ...).
    Migration,
    /// A migration pass over RAM finished (`data.pass`).
    MigrationPass,
    /// Any other event, by its QMP name.
    Other(String),
}

impl EventKind {
    fn from_name(name: &str) -> Self {
        match name {
            "STOP" => EventKind::Stop,
            "RESUME" => EventKind::Resume,
            "SHUTDOWN" => EventKind::Shutdown,
            "RESET" => EventKind::Reset,
            "MIGRATION" => EventKind::Migration,
            "MIGRATION_PASS" => EventKind::MigrationPass,
            other => EventKind::Other(other.to_string()),
        }
    }
}

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached.
    #[error("connect to QMP at {}: {source}", path.display())]
    Connect {
        /// The socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// QEMU closed the socket (it exited).
    #[error("QEMU closed its QMP socket")]
    Closed,
    /// No answer in time.
    #[error("QMP {command}: no reply within {}s", timeout.as_secs())]
    Timeout {
        /// The command (or "greeting").
        command: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// QEMU refused the command.
    #[error("QMP {command} failed: {desc} ({class})")]
    Failed {
        /// The command.
        command: String,
        /// QEMU's error class (`GenericError`, `CommandNotFound`, ...).
        class: String,
        /// QEMU's message.
        desc: String,
    },
    /// Something that is not QMP came back.
    #[error("bad QMP message: {0}")]
    Protocol(String),
    /// Writing or reading the socket failed.
    #[error("QMP socket: {0}")]
    Io(#[source] std::io::Error),
}

impl From<QmpError> for BoxError {
    fn from(e: QmpError) -> Self {
        match e {
            QmpError::Connect { path, source } => {
                BoxError::io(format!("connect to QMP at {}", path.display()), source)
            }
            QmpError::Io(source) => BoxError::io("QMP socket", source),
            other => BoxError::Vmm {
                message: other.to_string(),
                console_tail: None,
            },
        }
    }
}

/// A reply as the reader hands it over: the `return` value, or QEMU's
/// error class and description.
type Reply = std::result::Result<Value, (String, String)>;

#[derive(Debug, Default)]
struct Pending {
    waiters: HashMap<u64, oneshot::Sender<Reply>>,
    closed: bool,
}

/// A connected QMP session (capabilities negotiated).
#[derive(Debug)]
pub struct Qmp {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl Qmp {
    /// Connect to QEMU's QMP socket, leave capabilities negotiation, and
    /// hand back the session and its events. Needs a tokio runtime.
    pub async fn connect(path: &Path) -> Result<(Qmp, UnboundedReceiver<QmpEvent>), QmpError> {
        let timeout = DEFAULT_TIMEOUT;
        let stream = match tokio::time::timeout(timeout, UnixStream::connect(path)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(QmpError::Connect {
                    path: path.to_path_buf(),
                    source,
                })
            }
            Err(_) => {
                return Err(QmpError::Connect {
                    path: path.to_path_buf(),
                    source: std::io::ErrorKind::TimedOut.into(),
                })
            }
        };
        let (reader, writer) = stream.into_split();
        let mut lines = BufReader::new(reader).lines();
        let greeting = match tokio::time::timeout(timeout, lines.next_line()).await {
            Err(_) => {
                return Err(QmpError::Timeout {
                    command: "greeting".into(),
                    timeout,
                })
            }
            Ok(Err(e)) => return Err(QmpError::Io(e)),
            Ok(Ok(None)) => return Err(QmpError::Closed),
            Ok(Ok(Some(line))) => line,
        };
        let greeting: Value =
            serde_json::from_str(&greeting).map_err(|e| QmpError::Protocol(e.to_string()))?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Protocol(format!(
                "unexpected greeting: {greeting}"
            )));
        }
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (events_tx, events) = unbounded_channel();
        let reader = tokio::spawn(read_loop(lines, pending.clone(), events_tx));
        let qmp = Qmp {
            writer: tokio::sync::Mutex::new(writer),
            pending,
            next_id: AtomicU64::new(1),
            timeout,
            reader,
        };
        qmp.execute("qmp_capabilities", Value::Null).await?;
        Ok((qmp, events))
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Run `command` with `args` (an object, or `Null` for none); its
    /// `return` value.
    pub async fn execute(&self, command: &str, args: Value) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending();
            if pending.closed {
                return Err(QmpError::Closed);
            }
            pending.waiters.insert(id, tx);
        }
        let mut msg = json!({ "execute": command, "id": id });
        if !args.is_null() {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        let written = self.writer.lock().await.write_all(line.as_bytes()).await;
        if let Err(e) = written {
            self.pending().waiters.remove(&id);
            return Err(QmpError::Io(e));
        }
        match tokio::time::timeout(self.timeout, rx).await {
            Err(_) => {
                self.pending().waiters.remove(&id);
                Err(QmpError::Timeout {
                    command: command.into(),
                    timeout: self.timeout,
                })
            }
            Ok(Err(_)) => Err(QmpError::Closed),
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err((class, desc)))) => Err(QmpError::Failed {
                command: command.into(),
                class,
                desc,
            }),
        }
    }

    /// Stop the vCPUs (`stop`).
    pub async fn pause(&self) -> Result<(), QmpError> {
        self.execute("stop", Value::Null).await.map(drop)
    }

    /// Run the vCPUs again (`cont`).
    pub async fn resume(&self) -> Result<(), QmpError> {
        self.execute("cont", Value::Null).await.map(drop)
    }
}

impl Drop for Qmp {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(
    mut lines: Lines<BufReader<OwnedReadHalf>>,
    pending: Arc<Mutex<Pending>>,
    events: UnboundedSender<QmpEvent>,
) {
    while let Ok(Some(line)) = lines.next_line().await {
        let value: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("skipping a bad QMP message: {e}");
                continue;
            }
        };
        if let Some(name) = value.get("event").and_then(Value::as_str) {
            let timestamp = value.get("timestamp").and_then(|t| {
                let secs = t.get("seconds")?.as_u64()?;
                let micros = t.get("microseconds")?.as_u64()?;
                Some(Duration::from_secs(secs) + Duration::from_micros(micros))
            });
            // Nobody listening is fine: the owner chose not to.
            let _ = events.send(QmpEvent {
                kind: EventKind::from_name(name),
                data: value.get("data").cloned().unwrap_or(Value::Null),
                timestamp,
            });
            continue;
        }
        let Some(id) = value.get("id").and_then(Value::as_u64) else {
            tracing::debug!(%value, "QMP message without an id");
            continue;
        };
        let reply = match value.get("error") {
            Some(err) => Err((
                err.get("class")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
                err.get("desc")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_string(),
            )),
            None => Ok(value.get("return").cloned().unwrap_or(Value::Null)),
        };
        let waiter = pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .waiters
            .remove(&id);
        if let Some(tx) = waiter {
            let _ = tx.send(reply);
        }
    }
    let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
    pending.closed = true;
    // Dropping the senders fails every waiting command with `Closed`.
    pending.waiters.clear();
}

/// Run one `command` on the QMP socket at `socket` from synchronous code:
/// connect, execute, disconnect. It runs on a thread of its own with its
/// own runtime, so it may be called from inside an async context too.
pub fn execute_once(socket: &Path, command: &str, args: Value) -> Result<Value, QmpError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(QmpError::Io)?;
            runtime.block_on(async {
                let (qmp, _events) = Qmp::connect(socket).await?;
                qmp.execute(command, args).await
            })
        })
        .join()
        .unwrap_or_else(|_| Err(QmpError::Protocol("the QMP thread panicked".into())))
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;

    /// A fake QEMU: greets, then answers each request line with `answer`.
    async fn serve(
        listener: UnixListener,
        answer: impl Fn(Value) -> Vec<Value> + Send + 'static,
    ) -> tokio::task::JoinHandle<Vec<Value>> {
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let greeting = json!({"QMP": {"version": {}, "capabilities": []}});
            w.write_all(format!("{greeting}\n").as_bytes())
                .await
                .unwrap();
            let mut lines = BufReader::new(r).lines();
            let mut seen = Vec::new();
            while let Ok(Some(line)) = lines.next_line().await {
                let req: Value = serde_json::from_str(&line).unwrap();
                seen.push(req.clone());
                for out in answer(req) {
                    w.write_all(format!("{out}\n").as_bytes()).await.unwrap();
                }
            }
            seen
        })
    }

    #[tokio::test]
    async fn replies_are_matched_by_id_and_events_are_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = serve(UnixListener::bind(&path).unwrap(), |req| {
            let id = req["id"].clone();
            match req["execute"].as_str().unwrap() {
                "qmp_capabilities" => vec![json!({"return": {}, "id": id})],
                // An event, a stray reply, then the answer.
                "stop" => vec![
                    json!({"event": "STOP", "timestamp": {"seconds": 2, "microseconds": 5}}),
                    json!({"return": "not yours", "id": 999}),
                    json!({"return": {}, "id": id}),
                ],
                "migrate-set-capabilities" => vec![json!({"return": req["arguments"].clone(), "id": id})],
                _ => vec![
                    json!({"event": "MIGRATION", "data": {"status": "failed"}}),
                    json!({"error": {"class": "CommandNotFound", "desc": "no such command"}, "id": id}),
                ],
            }
        })
        .await;
        let (qmp, mut events) = Qmp::connect(&path).await.unwrap();
        qmp.pause().await.unwrap();
        let args = json!({"capabilities": [{"capability": "x-ignore-shared", "state": true}]});
        assert_eq!(
            qmp.execute("migrate-set-capabilities", args.clone())
                .await
                .unwrap(),
            args
        );
        let err = qmp.execute("nope", Value::Null).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "QMP nope failed: no such command (CommandNotFound)"
        );
        let stop = events.recv().await.unwrap();
        assert_eq!(stop.kind, EventKind::Stop);
        assert_eq!(stop.timestamp, Some(Duration::new(2, 5_000)));
        let migration = events.recv().await.unwrap();
        assert_eq!(migration.kind, EventKind::Migration);
        assert_eq!(migration.data["status"], "failed");
        drop(qmp);
        let seen = server.await.unwrap();
        assert_eq!(seen[0]["execute"], "qmp_capabilities");
        assert!(seen[0].get("arguments").is_none());
        assert_eq!(seen[2]["arguments"], args);
    }

    #[tokio::test]
    async fn a_closed_socket_fails_waiting_commands_and_ends_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            w.write_all(b"{\"QMP\": {}}\n").await.unwrap();
            let mut lines = BufReader::new(r).lines();
            let req: Value =
                serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
            w.write_all(format!("{}\n", json!({"return": {}, "id": req["id"]})).as_bytes())
                .await
                .unwrap();
            // Read the next command, then go away without answering.
            let _ = lines.next_line().await;
        });
        let (qmp, mut events) = Qmp::connect(&path).await.unwrap();
        assert!(matches!(
            qmp.execute("quit", Value::Null).await,
            Err(QmpError::Closed)
        ));
        assert!(events.recv().await.is_none());
        assert!(matches!(qmp.resume().await, Err(QmpError::Closed)));
    }

    #[test]
    fn execute_once_works_from_sync_and_async_code_and_names_the_socket() {
        let err =
            execute_once(Path::new("/nonexistent/qmp.sock"), "stop", Value::Null).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/qmp.sock"), "{err}");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let err = runtime.block_on(async {
            execute_once(Path::new("/nonexistent/qmp.sock"), "stop", Value::Null)
        });
        assert!(matches!(err, Err(QmpError::Connect { .. })));
    }
}
