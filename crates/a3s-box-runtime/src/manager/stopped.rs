//! Built-in helpers in a stopped box: the box is booted briefly with the
//! helper as its only process (its own root, writable layer and mounts, no
//! workload), under its shim lock so that nothing starts it meanwhile. The
//! helper's stdin and stdout travel as they would for `attach`: an
//! in-process client on a socket pair, served by the same code as the exec
//! socket, so flow control and untrusted-output handling are the same.

use std::fs::File;
use std::sync::{Arc, Mutex};

use a3s_box_core::guest::StdStream;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;

use super::client::{run_session, ClientIo, Outcome};
use super::exec::{self, ClientRequest};
use super::mux::MAIN_PROCESS;
use super::vm::{run_vm, OutputSink, RunIo};
use super::BoxManager;
use crate::guest::split;
use crate::state::{BoxRecord, SHIM_LOCK};

/// The box's own sink: nothing (the attached client gets the output).
struct Discard;

impl OutputSink for Discard {
    fn write(&mut self, _: StdStream, _: &[u8]) {}
}

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

        let (tx, controls) = tokio::sync::mpsc::unbounded_channel();
        let slot: exec::ControlSlot = Arc::new(Mutex::new(Some(tx)));
        let (ours, theirs) = UnixStream::pair().map_err(|e| BoxError::io("socket pair", e))?;
        tokio::spawn(exec::handle(theirs, MAIN_PROCESS + 1, slot));
        let mut ours = ours;
        let request = ClientRequest::Attach {
            stdin: opts.stdin,
            replay: true,
        };
        let mut line = serde_json::to_vec(&request).map_err(|e| BoxError::Guest(e.to_string()))?;
        line.push(b'\n');
        ours.write_all(&line)
            .await
            .map_err(|e| BoxError::io("attach to the helper", e))?;
        let (reader, writer) = split(ours);
        let mut sink = Discard;
        let mut on_started = |_: u32, _: u32| {};
        let vm = run_vm(
            self.config(),
            &record.config.id,
            &record.dir,
            &opts,
            RunIo {
                sink: &mut sink,
                controls,
                on_started: &mut on_started,
            },
        );
        let (code, outcome) = tokio::join!(vm, run_session(reader, writer, io));
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
