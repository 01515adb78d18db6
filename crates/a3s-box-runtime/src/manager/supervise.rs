//! The supervisor of one box: what the per-box shim runs.
//!
//! It holds the box's shim lock for its whole life, boots the VM, writes the
//! workload's output to the box log, records every start and exit in the
//! store, serves the control socket (`stop`, `kill`), and applies the
//! restart policy with exponential back-off. The QEMU it starts dies with it
//! (PR_SET_PDEATHSIG), so a killed shim never leaves a VM nobody owns.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::guest::StdStream;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::sync::mpsc::unbounded_channel;

use super::exec;
use super::vm::{run_vm, Control, OutputSink, RunIo};
use crate::state::log::LogWriter;
use crate::state::{wait_unheld, BoxStore, LOG_FILE, SHIM_LOCK};

/// The control socket in a box directory.
pub const CONTROL_SOCKET: &str = "control.sock";
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a guest gets to end after its workload is SIGKILLed by `stop`
/// before the VM itself is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// How long clients get to receive their last frames when the box ends.
const CLIENT_DRAIN: Duration = Duration::from_secs(2);
/// How long an `--rm` box waits for a client that holds it before removal.
const HOLD_LIMIT: Duration = Duration::from_secs(10);
/// Exit code of the starter when the box could not be started (Docker's 125).
const EXIT_START_ERROR: i32 = 125;
/// How often the supervisor checks that its box still exists.
const DIR_WATCH: Duration = Duration::from_secs(2);

/// A request on the control socket (one JSON line; the reply is `ok` or an error line).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShimRequest {
    /// Deliver a signal to the workload.
    Signal(i32),
    /// SIGTERM, then kill the VM after `timeout_secs`; no restart afterwards.
    Stop {
        /// Grace period.
        timeout_secs: u64,
    },
}

type Current = exec::ControlSlot;

fn send_current(current: &Current, control: Control) {
    if let Some(tx) = exec::current(current) {
        let _ = tx.send(control);
    }
}

/// Output to the log, remembering the last stderr chunk (a start failure's reason).
struct LogSink {
    log: LogWriter,
    last_stderr: String,
}

impl OutputSink for LogSink {
    fn write(&mut self, stream: StdStream, bytes: &[u8]) {
        if stream == StdStream::Stderr {
            self.last_stderr = String::from_utf8_lossy(bytes).trim().to_string();
        }
        self.log.write(stream, bytes);
    }
}

async fn serve_control(
    listener: UnixListener,
    store: BoxStore,
    dir: std::path::PathBuf,
    current: Current,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (r, mut w) = stream.into_split();
        let mut line = String::new();
        if BufReader::new(r).read_line(&mut line).await.is_err() {
            continue;
        }
        let reply = match serde_json::from_str::<ShimRequest>(&line) {
            Ok(ShimRequest::Signal(sig)) => {
                send_current(&current, Control::Signal(sig));
                "ok\n".to_string()
            }
            Ok(ShimRequest::Stop { timeout_secs }) => {
                let _ = store.update_dir(&dir, |s| s.stopped_by_user = true);
                send_current(&current, Control::Signal(libc::SIGTERM));
                let current = current.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs(timeout_secs)).await;
                    // SIGKILL the workload first: the guest then syncs the
                    // box's writable layer and powers off as after any exit.
                    // Only a guest that does not answer loses its VM.
                    send_current(&current, Control::Signal(libc::SIGKILL));
                    tokio::time::sleep(KILL_GRACE).await;
                    send_current(&current, Control::Kill);
                });
                "ok\n".to_string()
            }
            Err(e) => format!("error: bad request: {e}\n"),
        };
        let _ = w.write_all(reply.as_bytes()).await;
    }
}

/// A box whose directory was deleted behind the store's back (say its
/// `A3S_HOME` was removed) can never be managed again: its VM is killed and
/// the supervisor ends, instead of running on unseen.
async fn watch_box_dir(dir: std::path::PathBuf, current: Current) {
    loop {
        tokio::time::sleep(DIR_WATCH).await;
        if !dir.join(crate::state::CONFIG_FILE).is_file() {
            tracing::warn!(dir = %dir.display(), "box directory is gone: stopping its VM");
            send_current(&current, Control::Kill);
        }
    }
}

/// Supervise the box in `dir` until it is done. `ready` (if given) receives
/// one line once the first start is decided: `ok`, or `fail CODE REASON`.
pub async fn supervise(dir: &Path, mut ready: Option<File>) -> Result<()> {
    let (store, home) = BoxStore::of_box_dir(dir)?;
    // The engine's settings, as the box's starter wrote them: the shim reads
    // no environment.
    let config = crate::config::EngineConfig::read_from(dir)?;
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(SHIM_LOCK))
        .map_err(|e| BoxError::io("open shim lock", e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| BoxError::Conflict(format!("{} already has a supervisor", dir.display())))?;
    let record = store.load_dir(dir)?;
    // Known from the moment the box has a supervisor, so `rm -f` can end a
    // box that is still booting.
    store.update_dir(dir, |s| s.shim_pid = Some(std::process::id()))?;
    let socket = dir.join(CONTROL_SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).map_err(|e| BoxError::io("bind control socket", e))?;
    let current: Current = Arc::new(Mutex::new(None));
    tokio::spawn(serve_control(
        listener,
        store.clone(),
        dir.to_path_buf(),
        current.clone(),
    ));
    tokio::spawn(watch_box_dir(dir.to_path_buf(), current.clone()));
    let exec_socket = dir.join(exec::EXEC_SOCKET);
    let _ = std::fs::remove_file(&exec_socket);
    let exec_listener =
        UnixListener::bind(&exec_socket).map_err(|e| BoxError::io("bind exec socket", e))?;
    let connections = exec::Connections::default();
    tokio::spawn(exec::serve(
        exec_listener,
        current.clone(),
        connections.clone(),
    ));

    let shim_pid = std::process::id();
    let events =
        crate::state::events::EventLog::at(home.root().join(crate::state::events::EVENTS_FILE));
    let event = |action: EventAction| {
        Event::now(EventType::Container, action, &record.config.id)
            .with("name", &record.config.name)
            .with("image", super::views::list::image_of(&record))
    };
    let options = super::lower::run_options(&record.config.spec, &home)?;
    let accelerator = crate::vmm::AccelChoice::from_str(&options.accel)
        .and_then(|c| crate::vmm::accel::decide(c, &crate::vmm::accel::HostKvm::probe()))
        .map(|d| format!("{}: {}", d.accel, d.reason))
        .ok();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let (tx, rx) = unbounded_channel();
        *current.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
        let mut sink = LogSink {
            log: LogWriter::open(&dir.join(LOG_FILE), config.log_max_bytes)?,
            last_stderr: String::new(),
        };
        let mut started = false;
        let mut on_started = |_guest_pid: u32, vm_pid: u32| {
            started = true;
            let _ = store.update_dir(dir, |s| {
                s.status = BoxStatus::Running;
                s.accelerator = accelerator.clone();
                s.shim_pid = Some(shim_pid);
                s.vm_pid = Some(vm_pid);
                s.started_at = Some(now_rfc3339());
                s.finished_at = None;
                s.exit_code = None;
                s.error = None;
            });
            events.record(&event(EventAction::Start));
            if let Some(mut r) = ready.take() {
                let _ = r.write_all(b"ok\n");
            }
        };
        let io = RunIo {
            sink: &mut sink,
            controls: rx,
            on_started: &mut on_started,
        };
        let outcome = run_vm(&config, &record.config.id, dir, &options, io).await;
        sink.log.flush();
        let (code, error) = match outcome {
            Ok(code) => (code, None),
            Err(e) => (super::EXIT_KILLED, Some(e.to_string())),
        };
        if let Some(mut r) = ready.take() {
            let reason = error.clone().unwrap_or_else(|| sink.last_stderr.clone());
            // An error of a3s-box (or its VM) before the workload ran is
            // the starter's 125, as for a foreground run.
            let code = if error.is_some() {
                EXIT_START_ERROR
            } else {
                code
            };
            let _ = writeln!(r, "fail {code} {reason}");
        }
        if started {
            events.record(&event(EventAction::Die).with("exitCode", code.to_string()));
        }
        let state = store.update_dir(dir, |s| {
            s.status = BoxStatus::Exited;
            s.finished_at = Some(now_rfc3339());
            s.exit_code = Some(code);
            s.error = error.clone();
            s.vm_pid = None;
        })?;
        let restart = started
            && record.config.restart().should_restart(
                code,
                state.restart_count,
                state.stopped_by_user,
            );
        if !restart {
            break;
        }
        store.update_dir(dir, |s| {
            s.status = BoxStatus::Restarting;
            s.restart_count += 1;
        })?;
        events.record(&event(EventAction::Restart));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
        // A stop that arrived during the back-off ends the loop.
        if store.load_dir(dir)?.state.stopped_by_user {
            store.update_dir(dir, |s| s.status = BoxStatus::Exited)?;
            break;
        }
    }
    connections.drain(CLIENT_DRAIN).await;
    let _ = store.update_dir(dir, |s| s.shim_pid = None);
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(&exec_socket);
    if record.config.auto_remove() {
        // A `run --rm` client may still be reading the exit code and the
        // last output: let it finish first.
        let held = dir.to_path_buf();
        let _ = tokio::task::spawn_blocking(move || wait_unheld(&held, HOLD_LIMIT)).await;
        let rec = store.load_dir(dir)?;
        store.remove(&rec)?;
    }
    Ok(())
}
