//! The host session: the processes guest-init runs for the host, and when
//! each is reported; the sandbox's containers. Starting processes is in
//! [`super::launch`], creating and removing containers in
//! [`super::containers`], interfaces coming and going in
//! [`super::interfaces`].
//!
//! A process is `Exited` only once three things hold: `Started` was sent,
//! both output forwarders sent their `Eof` (so all output precedes the
//! exit), and the reaper collected its status. Whichever event completes
//! the set sends `Exited` and forgets the process, exactly once.

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;

use a3s_box_core::guest::message::{GuestMessage, InterfaceConfig, NetworkConfig, WindowSize};
use a3s_box_core::guest::{Frame, StdStream};
use nix::unistd::Pid;

use crate::agent::credit::Credits;
use crate::agent::port::Port;
use crate::agent::streams::StdinQueue;
use crate::container::table::Containers;
use crate::container::{self, Container};
use crate::pid1::log::{debug, warning};
use crate::pid1::power;

/// Stack of guest-init's helper threads (they hold one 64 KiB buffer at most,
/// on the heap).
const THREAD_STACK_BYTES: usize = 256 * 1024;

/// Output streams forwarded per process.
pub(super) const OUTPUT_STREAMS: u8 = 2;

/// A process run for the host.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) pid: Pid,
    pub(super) started: bool,
    pub(super) outputs_open: u8,
    pub(super) exit_code: Option<i32>,
    pub(super) stdin: Option<StdinQueue>,
    /// Master side of the process's pseudo-terminal, for resizing.
    pub(super) terminal: Option<File>,
    /// The container this is the main process of: it stops when this ends.
    pub(super) main_of: Option<Arc<Container>>,
}

impl Entry {
    pub(super) fn new(pid: Pid, outputs_open: u8, main_of: Option<Arc<Container>>) -> Self {
        Entry {
            pid,
            started: false,
            outputs_open,
            exit_code: None,
            stdin: None,
            terminal: None,
            main_of,
        }
    }
}

/// The host connection, the processes served over it, and the sandbox's
/// containers.
#[derive(Debug)]
pub struct Session {
    port: Port,
    credits: Credits,
    table: Mutex<HashMap<u32, Entry>>,
    /// The sandbox's containers.
    pub(super) containers: Containers,
    /// The sandbox's network as it booted, for each container's /etc files.
    pub(super) network: Option<Box<NetworkConfig>>,
    /// Its interfaces as they are now (`network connect`/`disconnect`:
    /// [`super::interfaces`]).
    pub(super) interfaces: Mutex<Vec<InterfaceConfig>>,
}

/// Start a named helper thread; failing to is fatal for PID 1.
pub fn spawn_thread(session: &Arc<Session>, name: String, f: impl FnOnce() + Send + 'static) {
    let res = thread::Builder::new()
        .name(name.clone())
        .stack_size(THREAD_STACK_BYTES)
        .spawn(f);
    if let Err(e) = res {
        power::fatal(Some(&session.port), &format!("start thread {name}: {e}"));
    }
}

impl Session {
    /// A session over the open port, in a sandbox whose network is `network`.
    pub fn new(port: Port, network: Option<Box<NetworkConfig>>) -> Arc<Self> {
        Arc::new(Session {
            port,
            credits: Credits::default(),
            table: Mutex::new(HashMap::new()),
            containers: Containers::default(),
            interfaces: Mutex::new(
                network
                    .as_ref()
                    .map_or(Vec::new(), |n| n.interfaces.clone()),
            ),
            network,
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<u32, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The port, for the fatal path.
    pub fn port(&self) -> &Port {
        &self.port
    }

    /// The output credit of every process.
    pub fn credits(&self) -> &Credits {
        &self.credits
    }

    /// Send a frame; a broken port means the host is gone: power off.
    pub fn send(&self, frame: &Frame) {
        if let Err(e) = self.port.send(frame) {
            power::fatal(Some(&self.port), &e.to_string());
        }
    }

    /// Send output bytes of a process; a broken port means the host is gone.
    pub fn send_data(&self, process: u32, stream: StdStream, bytes: &[u8]) {
        if let Err(e) = self.port.send_data(process, stream, bytes) {
            power::fatal(Some(&self.port), &e.to_string());
        }
    }

    pub(super) fn send_message(&self, msg: GuestMessage) {
        if let Err(e) = self.port.send_message(msg) {
            power::fatal(Some(&self.port), &e.to_string());
        }
    }

    /// Remove and return the exit code of a process that is complete.
    fn take_if_done(table: &mut HashMap<u32, Entry>, process: u32) -> Option<i32> {
        let entry = table.get(&process)?;
        let code = entry
            .exit_code
            .filter(|_| entry.started && entry.outputs_open == 0)?;
        table.remove(&process);
        Some(code)
    }

    fn report_exit(&self, process: u32, exit_code: i32) {
        debug!("process {process} exited with {exit_code}");
        self.send_message(GuestMessage::Exited { process, exit_code });
    }

    /// A forwarder sent `Eof` for one output stream of `process`.
    pub fn output_closed(&self, process: u32) {
        let done = {
            let mut table = self.lock();
            let Some(entry) = table.get_mut(&process) else {
                return;
            };
            entry.outputs_open = entry.outputs_open.saturating_sub(1);
            Self::take_if_done(&mut table, process)
        };
        if let Some(code) = done {
            self.report_exit(process, code);
        }
    }

    /// The reaper collected `pid`. Unknown pids (orphans) are ignored.
    pub fn reaped(&self, pid: Pid, exit_code: i32) {
        let done = {
            let mut table = self.lock();
            let Some((&process, entry)) = table
                .iter_mut()
                .find(|(_, e)| e.pid == pid && e.exit_code.is_none())
            else {
                debug!("reaped pid {pid} ({exit_code})");
                return;
            };
            entry.exit_code = Some(exit_code);
            if let Some(container) = &entry.main_of {
                if container.reaped(pid) {
                    debug!("container {} stopped", container.id);
                }
            }
            Self::take_if_done(&mut table, process).map(|code| (process, code))
        };
        if let Some((process, code)) = done {
            self.report_exit(process, code);
        }
    }

    /// Deliver `signal` to a running process.
    pub fn signal(&self, process: u32, signal: i32) {
        if !(1..=libc::SIGRTMAX()).contains(&signal) {
            warning!("ignoring signal {signal} for process {process}: not a signal number");
            return;
        }
        // Under the lock, so the pid cannot be reaped and reused meanwhile.
        let table = self.lock();
        match table.get(&process) {
            Some(entry) if entry.exit_code.is_none() => {
                // SAFETY: kill(2) takes plain integers; the pid is our live
                // (not yet reaped) child.
                if unsafe { libc::kill(entry.pid.as_raw(), signal) } != 0 {
                    warning!(
                        "signal {signal} to process {process}: {}",
                        nix::errno::Errno::last()
                    );
                }
            }
            _ => debug!("signal {signal} for process {process}, which is not running"),
        }
    }

    /// Stdin bytes from the host. Bytes beyond the granted credit break
    /// the protocol: that process's stdin is closed (the session goes on).
    pub fn stdin_data(&self, process: u32, bytes: Vec<u8>) {
        let mut table = self.lock();
        match table.get_mut(&process).map(|e| &mut e.stdin) {
            Some(stdin @ Some(_)) => {
                if let Some(Err(e)) = stdin.as_ref().map(|q| q.push(process, bytes)) {
                    warning!("closing stdin of process {process}: {e}");
                    *stdin = None;
                }
            }
            Some(None) => warning!("dropping stdin for process {process}: its stdin is not open"),
            None => debug!("dropping stdin for process {process}, which is not running"),
        }
    }

    /// The host's terminal for `process` changed size.
    pub fn resize(&self, process: u32, size: WindowSize) {
        let table = self.lock();
        match table.get(&process).and_then(|e| e.terminal.as_ref()) {
            Some(master) => {
                if let Err(e) = container::resize(master, size) {
                    warning!("resize the terminal of process {process}: {e}");
                }
            }
            None => debug!("resize for process {process}, which has no terminal"),
        }
    }

    /// The host closed stdin: the writer drains what is queued, then closes
    /// the pipe.
    pub fn stdin_eof(&self, process: u32) {
        if let Some(entry) = self.lock().get_mut(&process) {
            entry.stdin = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File};
    use std::path::PathBuf;

    use a3s_box_core::guest::message::Message;

    use super::*;

    /// A session whose port is a file, and that file's path.
    fn session(name: &str) -> (Arc<Session>, PathBuf) {
        let path = std::env::temp_dir().join(format!("a3s-port-{name}-{}", std::process::id()));
        let file = File::create(&path).unwrap();
        (Session::new(Port::new(file), None), path)
    }

    fn sent(path: &PathBuf) -> Vec<Frame> {
        let bytes = fs::read(path).unwrap();
        let mut reader = bytes.as_slice();
        let mut frames = Vec::new();
        while let Some(frame) = Frame::read_from(&mut reader).unwrap() {
            frames.push(frame);
        }
        fs::remove_file(path).unwrap();
        frames
    }

    fn add(session: &Session, process: u32, pid: i32, started: bool) {
        let mut entry = Entry::new(Pid::from_raw(pid), OUTPUT_STREAMS, None);
        entry.started = started;
        session.lock().insert(process, entry);
    }

    fn exited(process: u32, exit_code: i32) -> Frame {
        Frame::Control(Message::Guest(GuestMessage::Exited { process, exit_code }))
    }

    #[test]
    fn exit_waits_for_both_outputs_in_any_order() {
        let (s, path) = session("order");
        add(&s, 7, 4242, true);
        add(&s, 8, 4343, true);
        s.reaped(Pid::from_raw(4242), 3);
        s.output_closed(7);
        s.output_closed(8);
        s.output_closed(8);
        s.output_closed(7);
        s.reaped(Pid::from_raw(4343), 137);
        s.reaped(Pid::from_raw(4242), 9); // already reported: ignored
        s.reaped(Pid::from_raw(999), 0); // an orphan: ignored
        assert_eq!(sent(&path), [exited(7, 3), exited(8, 137)]);
    }

    #[test]
    fn no_exit_before_started() {
        let (s, path) = session("started");
        add(&s, 1, 5000, false);
        s.reaped(Pid::from_raw(5000), 0);
        s.output_closed(1);
        s.output_closed(1);
        assert!(sent(&path).is_empty());
        assert!(s.lock().contains_key(&1));
    }

    #[test]
    fn stdin_without_a_queue_is_dropped() {
        let (s, path) = session("stdin");
        add(&s, 2, 6000, true);
        s.stdin_data(2, b"x".to_vec());
        s.stdin_data(3, b"x".to_vec());
        s.stdin_eof(2);
        assert!(sent(&path).is_empty());
    }
}
