//! Sessions with a running box: `exec` (with the box's defaults for what the
//! request leaves out), `attach`, `cp`, `top` and `stats`.

use std::path::Path;
use std::time::Duration;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::guest::message::{ProcessSpec, WindowSize};
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Engine;
use crate::guest::{FrameReader, FrameWriter};
use crate::manager::exec::ClientRequest;
use crate::manager::stats::BoxStats;

/// A process to start in a running box. What is left out comes from the
/// box: its environment (the request's entries are added after it), user
/// and working directory.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Program and arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Working directory (absolute).
    pub cwd: Option<String>,
    /// User spec.
    pub user: Option<String>,
    /// Run on a pseudo-terminal of this size.
    pub tty: Option<WindowSize>,
    /// The client will write the process's stdin.
    pub stdin: bool,
    /// Leave the process running when the client goes (`exec -d`).
    pub detach: bool,
}

/// An open session: the frames of one process (or of the attached main).
pub type Session = (FrameReader, FrameWriter);

/// What a client attaching to a box's main process should know of it.
#[derive(Debug, Clone, Copy)]
pub struct MainProcess {
    /// It reads stdin (`-i`).
    pub stdin: bool,
    /// It runs on a pseudo-terminal (`-t`).
    pub tty: bool,
}

impl Engine {
    /// Start `req` in the running box `key`, completed with the box's defaults.
    pub async fn exec(&self, key: &str, req: ExecRequest) -> Result<Session> {
        let record = self.get(key)?;
        let (executable, rest) = req.args.split_first().ok_or_else(|| {
            BoxError::Invalid("no command given: a3s-box exec BOX COMMAND [ARG...]".into())
        })?;
        if let Some(cwd) = req.cwd.as_deref().filter(|c| !c.starts_with('/')) {
            return Err(BoxError::Invalid(format!(
                "the working directory {cwd:?} is invalid: it needs to be an absolute path"
            )));
        }
        let process = &record.config.container().process;
        let mut env: Vec<(String, String)> = process
            .env
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect();
        env.extend(req.env.iter().cloned());
        if req.tty.is_some() && !env.iter().any(|(k, _)| k == "TERM") {
            env.push(("TERM".into(), "xterm".into()));
        }
        let spec = ProcessSpec {
            process: 0,
            container: None,
            executable: executable.clone(),
            args: rest.to_vec(),
            env,
            workdir: req
                .cwd
                .clone()
                .or_else(|| process.cwd.clone())
                .unwrap_or_else(|| "/".into()),
            user: req.user.clone().or_else(|| process.user.clone()),
            stdin: req.stdin,
            terminal: req.tty,
            builtin: false,
        };
        let request = ClientRequest::Exec {
            spec,
            detach: req.detach,
        };
        let session = self.boxes.open_session(&record, &request).await?;
        self.events.record(
            &Event::now(
                EventType::Container,
                EventAction::ExecStart,
                &record.config.id,
            )
            .with("name", &record.config.name)
            .with("execID", req.args.join(" ")),
        );
        Ok(session)
    }

    /// Attach to the running box's main process (`replay`: its recent
    /// output first, as `run -it` needs).
    pub async fn attach(
        &self,
        key: &str,
        stdin: Option<bool>,
        replay: bool,
    ) -> Result<(Session, MainProcess)> {
        let record = self.get(key)?;
        let process = &record.config.container().process;
        let main = MainProcess {
            stdin: process.stdin && stdin.unwrap_or(true),
            tty: process.tty,
        };
        let request = ClientRequest::Attach {
            stdin: main.stdin,
            replay,
        };
        Ok((self.boxes.open_session(&record, &request).await?, main))
    }

    /// `top`: the box's processes (`ps -ef` style), or its own `ps` with
    /// `ps_options`.
    pub async fn top(&self, key: &str, ps_options: &[String]) -> Result<String> {
        let record = self.get(key)?;
        self.boxes.top(&record, ps_options).await
    }

    /// One sample of `keys` (or of every running box, with `all` every box
    /// too) over `interval`; boxes not running are left out.
    pub async fn stats(
        &self,
        keys: &[String],
        all: bool,
        interval: Duration,
    ) -> Result<Vec<BoxStats>> {
        let records = if keys.is_empty() {
            self.boxes
                .store()
                .list()?
                .into_iter()
                .filter(|r| all || r.state.status == BoxStatus::Running)
                .collect()
        } else {
            keys.iter()
                .map(|k| self.get(k))
                .collect::<Result<Vec<_>>>()?
        };
        let running: Vec<_> = records
            .into_iter()
            .filter(|r| r.state.status == BoxStatus::Running)
            .collect();
        Ok(self.boxes.stats(&running, interval).await)
    }

    /// Copy `src` in the box to the host path `dst`, by Docker's rules.
    pub async fn copy_out(&self, key: &str, src: &str, dst: &Path) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.copy_out(&record, src, dst).await.map(|_| ())
    }

    /// Copy host `src` into the box at `dst`, by Docker's rules.
    pub async fn copy_in(&self, key: &str, src: &Path, dst: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.copy_in(&record, src, dst).await.map(|_| ())
    }

    /// `src` in the box as a tar stream on `out`.
    pub async fn copy_out_tar(
        &self,
        key: &str,
        src: &str,
        out: Box<dyn AsyncWrite + Unpin + Send>,
    ) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.copy_out_tar(&record, src, out).await
    }

    /// Extract the tar stream `input` into the box's directory `dst`.
    pub async fn copy_in_tar(
        &self,
        key: &str,
        input: Box<dyn AsyncRead + Unpin + Send>,
        dst: &str,
    ) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.copy_in_tar(&record, input, dst).await
    }
}
