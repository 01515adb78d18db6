//! Running guest-init's built-in helpers in a running box, and what the CLI
//! builds on them: `cp` in both directions, `top`, and the guest side of
//! `stats`. The helpers' output is untrusted: archives go through
//! [`crate::copy::unpack`], replies are parsed strictly.

use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use a3s_box_core::guest::builtin;
use a3s_box_core::guest::message::ProcessSpec;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{run_session, ClientIo, Outcome};
use super::exec::ClientRequest;
use super::BoxManager;
use crate::copy::{self, CopyDest, CopySource, DestKind, SourceKind, StatReply};
use crate::state::BoxRecord;

/// Largest reply kept from a helper that answers with a line (`stat`,
/// `stats`, `ps`), and of its stderr.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// An in-memory sink shared with the session; stops growing at the limit.
#[derive(Debug, Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl AsyncWrite for Captured {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let room = MAX_REPLY_BYTES.saturating_sub(v.len());
        v.extend_from_slice(&buf[..buf.len().min(room)]);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The guest's view of a box's resources (the `stats` helper's reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestStats {
    /// Memory the guest kernel manages.
    pub mem_total_bytes: u64,
    /// Memory it could give to new work.
    pub mem_available_bytes: u64,
    /// Processes in the box.
    pub pids: u64,
}

fn builtin_spec(name: &str, args: &[&str], stdin: bool) -> ProcessSpec {
    ProcessSpec {
        process: 0,
        container: None,
        executable: name.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        workdir: "/".into(),
        user: None,
        stdin,
        terminal: None,
        builtin: true,
    }
}

/// A box path must be absolute: relative paths have no meaning there.
fn box_path(path: &str) -> Result<&Path> {
    match path.starts_with('/') {
        true => Ok(Path::new(path)),
        false => Err(BoxError::Invalid(format!(
            "path in the box {path:?} must be absolute (start with /)"
        ))),
    }
}

impl BoxManager {
    /// Run helper `name` in `record`'s box with stdin from `input`, stdout
    /// to `output`. A helper that fails is an error carrying its message.
    pub async fn run_builtin(
        &self,
        record: &BoxRecord,
        name: &str,
        args: &[&str],
        input: Option<Box<dyn AsyncRead + Unpin + Send>>,
        output: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Result<()> {
        let spec = builtin_spec(name, args, input.is_some());
        self.run_captured(record, spec, input, output).await
    }

    /// A copy helper: in the running box, or in the stopped box booted
    /// for the purpose (its writable layer holds its files).
    async fn run_copy_helper(
        &self,
        record: &BoxRecord,
        name: &str,
        args: &[&str],
        input: Option<Box<dyn AsyncRead + Unpin + Send>>,
        output: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Result<()> {
        if is_running(record) {
            return self.run_builtin(record, name, args, input, output).await;
        }
        let stderr = Captured::default();
        let io = super::stopped::helper_io(input, output, Box::new(stderr.clone()));
        let outcome = self
            .run_builtin_stopped(record, name, args, io, true)
            .await?;
        finish(name, outcome, &stderr)
    }

    async fn copy_output(&self, record: &BoxRecord, name: &str, args: &[&str]) -> Result<String> {
        let out = Captured::default();
        self.run_copy_helper(record, name, args, None, Box::new(out.clone()))
            .await?;
        Ok(out.text())
    }

    /// Run `spec` in the box; its stderr becomes the error when it fails.
    async fn run_captured(
        &self,
        record: &BoxRecord,
        spec: ProcessSpec,
        input: Option<Box<dyn AsyncRead + Unpin + Send>>,
        output: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Result<()> {
        let name = spec.executable.clone();
        let request = ClientRequest::Exec {
            spec,
            detach: false,
        };
        let (reader, writer) = self.open_session(record, &request).await?;
        let stderr = Captured::default();
        let io = ClientIo {
            stdin: input,
            close_stdin_at_eof: true,
            detach_keys: false,
            stdout: output,
            stderr: Box::new(stderr.clone()),
            events: None,
            return_when_started: false,
            already_running: false,
        };
        let outcome = run_session(reader, writer, io)
            .await
            .map_err(|e| BoxError::io(format!("{name} in box {}", record.config.name), e))?;
        finish(&name, outcome, &stderr)
    }
}

/// Whether a box has a live supervisor running its workload.
fn is_running(record: &BoxRecord) -> bool {
    matches!(record.state.status, BoxStatus::Running | BoxStatus::Paused)
        && crate::state::shim_alive(&record.dir)
}

/// A helper's outcome as a result; its stderr is the error message.
fn finish(name: &str, outcome: Outcome, stderr: &Captured) -> Result<()> {
    let fail = |what: String| Err(BoxError::Guest(format!("{name}: {what}")));
    match outcome {
        Outcome::Exited(0) => Ok(()),
        Outcome::Exited(code) => {
            let msg = stderr.text();
            fail(match msg.trim() {
                "" => format!("failed with exit code {code}"),
                m => m.to_string(),
            })
        }
        Outcome::SpawnFailed(_, reason) => fail(reason),
        Outcome::Lost => fail("the box stopped".into()),
        Outcome::Detached | Outcome::Started => fail("ended early".into()),
    }
}

impl BoxManager {
    /// Run helper `name` and return its (small) stdout.
    pub async fn builtin_output(
        &self,
        record: &BoxRecord,
        name: &str,
        args: &[&str],
    ) -> Result<String> {
        let out = Captured::default();
        self.run_builtin(record, name, args, None, Box::new(out.clone()))
            .await?;
        Ok(out.text())
    }

    /// `top`: the box's processes, as `ps -ef` prints them, or as the
    /// box's own `ps` prints them with `ps_options`.
    pub async fn top(&self, record: &BoxRecord, ps_options: &[String]) -> Result<String> {
        if ps_options.is_empty() {
            return self.builtin_output(record, builtin::PS, &[]).await;
        }
        let mut spec = builtin_spec("ps", &[], false);
        spec.builtin = false;
        spec.args = ps_options.to_vec();
        let out = Captured::default();
        self.run_captured(record, spec, None, Box::new(out.clone()))
            .await?;
        Ok(out.text())
    }

    /// The guest's memory and process count.
    pub async fn guest_stats(&self, record: &BoxRecord) -> Result<GuestStats> {
        let line = self.builtin_output(record, builtin::STATS, &[]).await?;
        serde_json::from_str(line.trim())
            .map_err(|e| BoxError::Guest(format!("bad stats reply {line:?}: {e}")))
    }

    async fn box_stat(&self, record: &BoxRecord, path: &Path) -> Result<StatReply> {
        let path = path.to_string_lossy();
        let line = self.copy_output(record, builtin::STAT, &[&path]).await?;
        StatReply::parse(&line).map_err(|e| BoxError::Guest(e.to_string()))
    }

    /// `cp BOX:SRC HOST_DST`: Docker's rules; the archive from the box is
    /// extracted as untrusted input.
    pub async fn copy_out(
        &self,
        record: &BoxRecord,
        src: &str,
        dst: &Path,
    ) -> Result<copy::Unpacked> {
        let src = box_path(src)?;
        let follow = follows(src);
        let kind = self
            .box_stat(record, src)
            .await?
            .source_kind(follow)
            .ok_or_else(|| {
                BoxError::Invalid(format!(
                    "no such file or directory in the box: {}",
                    src.display()
                ))
            })?;
        let dest = DestKind::of_host_path(dst).map_err(copy_error)?;
        let plan = plan(src, kind, dst, dest)?;
        let (reader, writer) = std::io::pipe().map_err(|e| BoxError::io("pipe", e))?;
        let extract = tokio::task::spawn_blocking(move || {
            copy::unpack(reader, &plan.extract_dir, plan.rename_root())
        });
        let src = src.to_string_lossy();
        let streamed = self
            .run_copy_helper(
                record,
                builtin::TAR_CREATE,
                &[&src],
                None,
                Box::new(async_pipe(writer.into())),
            )
            .await;
        let unpacked = extract
            .await
            .map_err(|e| BoxError::Guest(format!("extraction stopped: {e}")))?;
        streamed?;
        unpacked.map_err(copy_error)
    }

    /// `cp HOST_SRC BOX:DST`.
    pub async fn copy_in(&self, record: &BoxRecord, src: &Path, dst: &str) -> Result<copy::Packed> {
        let dst = box_path(dst)?;
        let kind = SourceKind::of_host_path(src, follows(src)).map_err(copy_error)?;
        let dest = self.box_stat(record, dst).await?.dest_kind();
        let plan = plan(src, kind, dst, dest)?;
        let (reader, writer) = std::io::pipe().map_err(|e| BoxError::io("pipe", e))?;
        let (src, name) = (src.to_owned(), plan.packed_name().to_string());
        let pack = tokio::task::spawn_blocking(move || copy::pack(&src, &name, writer));
        let dir = plan.extract_dir.to_string_lossy().into_owned();
        let streamed = self
            .run_copy_helper(
                record,
                builtin::TAR_EXTRACT,
                &[&dir],
                Some(Box::new(async_pipe(reader.into()))),
                Box::new(tokio::io::sink()),
            )
            .await;
        let packed = pack
            .await
            .map_err(|e| BoxError::Guest(format!("packing stopped: {e}")))?;
        streamed?;
        packed.map_err(copy_error)
    }

    /// `cp BOX:SRC -`: the box's tar of SRC to `out`.
    pub async fn copy_out_tar(
        &self,
        record: &BoxRecord,
        src: &str,
        out: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Result<()> {
        let src = box_path(src)?.to_string_lossy().into_owned();
        self.run_copy_helper(record, builtin::TAR_CREATE, &[&src], None, out)
            .await
    }

    /// `cp - BOX:DST`: a tar from `input` extracted in the box directory DST.
    pub async fn copy_in_tar(
        &self,
        record: &BoxRecord,
        input: Box<dyn AsyncRead + Unpin + Send>,
        dst: &str,
    ) -> Result<()> {
        let dst = box_path(dst)?.to_string_lossy().into_owned();
        self.run_copy_helper(
            record,
            builtin::TAR_EXTRACT,
            &[&dst],
            Some(input),
            Box::new(tokio::io::sink()),
        )
        .await
    }
}

/// Whether a copy source path asks for what a symlink points at.
fn follows(path: &Path) -> bool {
    let s = path.as_os_str().as_encoded_bytes();
    s.ends_with(b"/") || s.ends_with(b"/.")
}

/// Docker's rules for where `src` lands at `dst`.
fn plan(src: &Path, kind: SourceKind, dst: &Path, dest: DestKind) -> Result<copy::CopyPlan> {
    let src = CopySource { path: src, kind };
    let dst = CopyDest {
        path: dst,
        kind: dest,
    };
    copy::plan_copy(&src, &dst).map_err(copy_error)
}

fn copy_error(e: copy::CopyError) -> BoxError {
    BoxError::Invalid(e.to_string())
}

/// One end of an OS pipe as an async stream (tokio runs its blocking
/// reads and writes on its pool).
fn async_pipe(fd: std::os::fd::OwnedFd) -> tokio::fs::File {
    tokio::fs::File::from_std(std::fs::File::from(fd))
}
