//! Running guest-init's layer helpers (`layer-diff`, `layer-tar`,
//! `root-tar`) for a box, running or stopped.
//!
//! A running box runs the helper through its exec socket. A stopped box is
//! booted briefly with the helper as its only process (no workload, no
//! shares), under the box's shim lock so it cannot be started meanwhile: the
//! guest kernel mounts the box's writable layer, as it always does, and the
//! host only ever receives a byte stream. The host kernel never mounts the
//! layer, and no host tool parses it (a guest-written ext4 image is untrusted
//! input; `debugfs` reading it as root on the host would be attack surface).

use std::io::Write;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};
use tokio::io::AsyncWrite;

use crate::manager::client::{run_session, ClientIo, Outcome};
use crate::manager::exec::ClientRequest;
use crate::manager::{stopped, BoxManager};
use crate::state::{shim_alive, BoxRecord};

/// A shared synchronous writer (a file or our stdout).
pub type Out = Arc<Mutex<Box<dyn Write + Send>>>;

/// Wrap `w` for [`run_helper`].
pub fn out(w: impl Write + Send + 'static) -> Out {
    Arc::new(Mutex::new(Box::new(w)))
}

/// An [`AsyncWrite`] over a synchronous writer (written in place: files and
/// pipes of a command-line tool).
struct SyncWriter(Out);

impl AsyncWrite for SyncWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(self.0.lock().unwrap_or_else(|p| p.into_inner()).write(buf))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(self.0.lock().unwrap_or_else(|p| p.into_inner()).flush())
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

fn helper_spec(helper: &str) -> ProcessSpec {
    ProcessSpec {
        process: 0,
        container: None,
        executable: helper.to_string(),
        args: Vec::new(),
        env: Vec::new(),
        workdir: "/".into(),
        user: None,
        stdin: false,
        terminal: None,
        builtin: true,
    }
}

fn failed(helper: &str, how: String) -> BoxError {
    BoxError::Guest(format!("{helper} in the box {how}"))
}

/// Run `helper` for the box `record`; its stdout goes to `out`.
pub async fn run_helper(
    manager: &BoxManager,
    record: &BoxRecord,
    helper: &str,
    out: Out,
) -> Result<()> {
    let running = matches!(record.state.status, BoxStatus::Running | BoxStatus::Paused)
        && shim_alive(&record.dir);
    let code = if running {
        let request = ClientRequest::Exec {
            spec: helper_spec(helper),
            detach: false,
        };
        let (reader, writer) = manager.open_session(record, &request).await?;
        let io = ClientIo {
            stdin: None,
            close_stdin_at_eof: false,
            detach_keys: false,
            stdout: Box::new(SyncWriter(out)),
            stderr: Box::new(tokio::io::stderr()),
            events: None,
            return_when_started: false,
            already_running: false,
        };
        match run_session(reader, writer, io)
            .await
            .map_err(|e| BoxError::io("box session", e))?
        {
            Outcome::Exited(code) => code,
            Outcome::SpawnFailed(_, reason) => return Err(failed(helper, reason)),
            other => return Err(failed(helper, format!("ended early ({other:?})"))),
        }
    } else {
        run_stopped(manager, record, helper, out).await?
    };
    match code {
        0 => Ok(()),
        code => Err(failed(helper, format!("exited with {code}"))),
    }
}

/// Boot the stopped box briefly with `helper` as its only process (no
/// shares: the layer helpers need only the box's own disks).
async fn run_stopped(
    manager: &BoxManager,
    record: &BoxRecord,
    helper: &str,
    out: Out,
) -> Result<i32> {
    let io = stopped::helper_io(
        None,
        Box::new(SyncWriter(out)),
        Box::new(tokio::io::stderr()),
    );
    match manager
        .run_builtin_stopped(record, helper, &[], io, false)
        .await?
    {
        Outcome::Exited(code) => Ok(code),
        other => Err(failed(helper, format!("ended early ({other:?})"))),
    }
}

/// One line of `diff`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// `A` added, `C` changed, `D` deleted.
    pub kind: char,
    /// Absolute path in the box.
    pub path: String,
}

/// Most `diff` output accepted from a guest.
const MAX_DIFF_BYTES: usize = 64 << 20;

/// Parse the guest's `layer-diff` output (untrusted: malformed lines are
/// refused, nothing is interpreted).
pub fn parse_changes(bytes: &[u8]) -> Result<Vec<Change>> {
    if bytes.len() > MAX_DIFF_BYTES {
        return Err(BoxError::Guest("diff output is too large".into()));
    }
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(|line| {
            let mut chars = line.chars();
            match (chars.next(), chars.next(), chars.as_str()) {
                (Some(kind @ ('A' | 'C' | 'D')), Some(' '), path) if path.starts_with('/') => {
                    Ok(Change {
                        kind,
                        path: path.to_string(),
                    })
                }
                _ => Err(BoxError::Guest(format!(
                    "bad diff line from the box: {line:?}"
                ))),
            }
        })
        .collect()
}

/// A writer into a shared buffer.
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if v.len() + buf.len() > MAX_DIFF_BYTES + 1 {
            return Err(std::io::Error::other("output too large"));
        }
        v.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The box's changes to its image (Docker's `diff`).
pub async fn diff(manager: &BoxManager, record: &BoxRecord) -> Result<Vec<Change>> {
    let buf = Arc::new(Mutex::new(Vec::new()));
    run_helper(
        manager,
        record,
        a3s_box_core::guest::builtin::LAYER_DIFF,
        out(Buffer(buf.clone())),
    )
    .await?;
    let bytes = buf.lock().unwrap_or_else(|p| p.into_inner()).clone();
    parse_changes(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_lines_parse_and_garbage_is_refused() {
        let c = parse_changes(b"C /etc\nA /etc/new file\nD /x\n").unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[1],
            Change {
                kind: 'A',
                path: "/etc/new file".into()
            }
        );
        for bad in [&b"X /a\n"[..], b"A a\n", b"A\n", b"\x1b[2J\n"] {
            assert!(parse_changes(bad).is_err());
        }
    }
}
