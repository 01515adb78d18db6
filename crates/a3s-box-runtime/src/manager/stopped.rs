//! Built-in helpers in a stopped box: the box is booted briefly with the
//! helper as its only process (its own root, writable layer and mounts, no
//! workload), under its shim lock so that nothing starts it meanwhile. The
//! sandbox actor runs on a task of this process with nothing stored; the
//! helper's stdin and stdout travel as they would for `attach`, over an
//! in-process socket pair served by the same code as the sandbox socket,
//! so flow control and untrusted-output handling are the same.

use std::fs::File;
use std::sync::Arc;

use a3s_box_core::status::RestartPolicy;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;

use super::client::{run_session, ClientIo, Outcome};
use super::BoxManager;
use crate::sandbox::qemu::QemuVmm;
use crate::sandbox::rpc::Request;
use crate::sandbox::{server, Actor, ContainerSetup, Discard, Kind, SandboxClient, Setup};
use crate::state::{BoxRecord, SHIM_LOCK};

impl BoxManager {
    /// Run built-in helper `name` in the stopped box `record` (with its
    /// bind mounts and volumes when `with_mounts`); its exit code, or how it
    /// failed to start.
    pub(crate) async fn run_builtin_stopped(
        &self,
        record: &BoxRecord,
        name: &str,
        args: &[&str],
        io: ClientIo,
        with_mounts: bool,
    ) -> Result<Outcome> {
        if let Some(pod) = &record.config.spec.sandbox.pod {
            return Err(BoxError::NotRunning(format!(
                "box {} is a container of pod {pod}, whose layer lives in the pod's VM: start it first",
                record.config.name
            )));
        }
        let lock_path = record.dir.join(SHIM_LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BoxError::io(format!("open {}", lock_path.display()), e))?;
        let _lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|_| {
            BoxError::Conflict(format!(
                "box {} is being started or stopped: try again",
                record.config.name
            ))
        })?;
        let mut opts = super::lower::record_options(record)?;
        opts.command = std::iter::once(name)
            .chain(args.iter().copied())
            .map(String::from)
            .collect();
        opts.builtin = true;
        opts.stdin = io.stdin.is_some();
        opts.tty = false;
        opts.storage.read_only = false;
        if !with_mounts {
            opts.storage.mounts.clear();
        }
        let stdin = opts.stdin;
        let engine = Arc::new(self.config().clone());
        let container = ContainerSetup {
            id: record.config.id.clone(),
            name: record.config.name.clone(),
            dir: record.dir.clone(),
            image: String::new(),
            options: opts,
            restart: RestartPolicy::No,
            auto_remove: false,
            stop_signal: libc::SIGTERM,
            sink: Box::new(Discard),
        };
        let setup = Setup {
            id: record.config.id.clone(),
            dir: record.dir.clone(),
            vmm: Arc::new(QemuVmm::new(engine.clone())),
            engine,
            records: None,
            kind: Kind::Standalone(Box::new(container)),
            report_expected: false,
            control: false,
            watch_dir: false,
        };
        let (actor, handle) = Actor::new(setup);
        let (ours, theirs) = UnixStream::pair().map_err(|e| BoxError::io("socket pair", e))?;
        tokio::spawn(server::serve_connection(theirs, handle));
        let client = SandboxClient::over(ours, &format!("box {}", record.config.name));
        let request = Request::Attach {
            container: None,
            stdin,
            replay: true,
            hold: false,
        };
        let session = async {
            let (reader, writer) = client.session(request).await?;
            run_session(reader, writer, io)
                .await
                .map_err(|e| BoxError::io("helper session", e))
        };
        let (code, outcome) = tokio::join!(actor.run(), session);
        let code = code?;
        Ok(match outcome {
            Ok(Outcome::Exited(c)) => Outcome::Exited(c),
            _ => Outcome::Exited(code),
        })
    }
}

/// The local ends of a helper's streams, as [`ClientIo`] for an attach.
pub(crate) fn helper_io(
    input: Option<Box<dyn AsyncRead + Unpin + Send>>,
    output: Box<dyn AsyncWrite + Unpin + Send>,
    stderr: Box<dyn AsyncWrite + Unpin + Send>,
) -> ClientIo {
    ClientIo {
        stdin: input,
        close_stdin_at_eof: true,
        detach_keys: false,
        stdout: output,
        stderr,
        events: None,
        return_when_started: false,
        already_running: true,
    }
}
