//! Starting processes for the host, each answered `Started` or
//! `SpawnFailed`: a container's main process (`Boot.main`, `Start`), which
//! creates the container's namespaces, and processes that join them
//! (`Exec`). The layer helpers run in guest-init's own view and need no
//! running container.

use std::sync::Arc;

use a3s_box_core::guest::message::{GuestMessage, ProcessSpec};
use a3s_box_core::guest::StdStream;

use super::session::{spawn_thread, Entry, Session, OUTPUT_STREAMS};
use super::streams;
use crate::container::namespaces::Namespaces;
use crate::container::plan::SpawnFailure;
use crate::container::spawn::{prepare, Mode};
use crate::container::Container;
use crate::pid1::log::debug;
use crate::storage::layers::is_layer_helper;

impl Session {
    /// Start `spec` as its container's main process, on this thread
    /// (`Boot.main`: nothing else is read until it started).
    pub fn start_main(self: &Arc<Self>, spec: &ProcessSpec) {
        if let Err(failure) = self.run(spec, true) {
            self.spawn_failed(spec.process, failure);
        }
    }

    /// `Start`: start `spec` as its container's main process, on a thread
    /// of its own.
    pub fn start(self: &Arc<Self>, spec: ProcessSpec) {
        self.on_thread(spec, true);
    }

    /// `Exec`: start `spec` in its running container, on a thread of its
    /// own (the thread joins the container's PID namespace for the child it
    /// clones).
    pub fn exec(self: &Arc<Self>, spec: ProcessSpec) {
        self.on_thread(spec, false);
    }

    fn on_thread(self: &Arc<Self>, spec: ProcessSpec, main: bool) {
        let session = Arc::clone(self);
        let name = format!("{}-{}", if main { "start" } else { "exec" }, spec.process);
        spawn_thread(self, name, move || {
            if let Err(failure) = session.run(&spec, main) {
                session.spawn_failed(spec.process, failure);
            }
        });
    }

    fn spawn_failed(&self, process: u32, failure: SpawnFailure) {
        debug!(
            "process {process} failed to start ({}): {}",
            failure.exit_code, failure.reason
        );
        self.send_message(GuestMessage::SpawnFailed {
            process,
            exit_code: failure.exit_code,
            reason: failure.reason,
        });
    }

    fn run(self: &Arc<Self>, spec: &ProcessSpec, main: bool) -> Result<(), SpawnFailure> {
        let container = self
            .containers
            .get(spec.container.as_deref())
            .map_err(SpawnFailure::setup)?;
        if spec.builtin && is_layer_helper(&spec.executable) {
            return self.launch(&container, spec, Mode::OwnView);
        }
        if main {
            let ran = container.begin_start()?;
            return self
                .launch(&container, spec, Mode::Main)
                .inspect_err(|_| container.start_failed(ran));
        }
        let ns = container.namespaces()?;
        self.launch(&container, spec, Mode::Join(&ns))
    }

    /// Spawn `spec` in `container` as `mode` says, and report it.
    fn launch(
        self: &Arc<Self>,
        container: &Arc<Container>,
        spec: &ProcessSpec,
        mode: Mode<'_>,
    ) -> Result<(), SpawnFailure> {
        let process = spec.process;
        let prepared = prepare(container, spec, mode)?;
        let outputs = if spec.terminal.is_some() {
            1
        } else {
            OUTPUT_STREAMS
        };
        let (join, main_of) = match mode {
            Mode::Join(ns) => (Some(ns), None),
            Mode::Main => (None, Some(Arc::clone(container))),
            Mode::OwnView => (None, None),
        };
        let launched = {
            // Held across clone so the reaper cannot see the pid before it is known.
            let mut table = self.lock();
            if table.contains_key(&process) {
                return Err(SpawnFailure::setup(format!(
                    "process id {process} is already in use"
                )));
            }
            let launched = prepared.clone_child(container, join)?;
            if let Mode::Main = mode {
                // Under the table lock: the reaper cannot report this
                // process's end before its container knows it started.
                let ns = (launched.pidfd.as_ref())
                    .and_then(|pidfd| Namespaces::capture(launched.pid, pidfd));
                container.started(launched.pid, ns);
                debug!("container {} runs as pid {}", container.id, launched.pid);
            }
            table.insert(process, Entry::new(launched.pid, outputs, main_of));
            launched
        };
        let pid = launched.pid;
        let forget = |failure| {
            self.lock().remove(&process);
            failure
        };
        let streams = launched.wait_exec().map_err(forget)?;
        // Stdin is ready before the host hears `Started`, so nothing it
        // sends after that is dropped.
        let stdin = streams
            .stdin
            .map(|pipe| streams::start_stdin(self, process, pipe));
        let tty = streams.terminal.is_some();
        if let Some(entry) = self.lock().get_mut(&process) {
            entry.started = true;
            entry.stdin = stdin;
            entry.terminal = streams.terminal;
        }
        self.send_message(GuestMessage::Started {
            process,
            pid: pid.as_raw().unsigned_abs(),
        });
        debug!("process {process} started as pid {pid}");
        let outputs = [
            Some((StdStream::Stdout, streams.stdout)),
            streams.stderr.map(|pipe| (StdStream::Stderr, pipe)),
        ];
        for (stream, pipe) in outputs.into_iter().flatten() {
            self.credits().open(process, stream);
            let session = Arc::clone(self);
            spawn_thread(self, format!("out-{process}-{}", stream as u8), move || {
                streams::forward_output(&session, process, stream, pipe, !tty);
            });
        }
        Ok(())
    }
}
