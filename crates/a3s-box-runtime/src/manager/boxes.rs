//! Box lifecycle operations over the store: create, start (spawn the shim),
//! stop, kill, remove, wait, logs. The CLI calls these; they hold no state
//! of their own.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};

use a3s_box_core::spec::BoxSpec;

use super::new_box_id;
use super::supervise::{ShimRequest, CONTROL_SOCKET};
use crate::config::EngineConfig;
use crate::launch::{Environment, HelperSpec, Lifetime, Stdio};
use crate::state::{shim_alive, BoxRecord, BoxStore, Hold};

/// Descriptor on which the shim reports the first start (`ok` / `fail CODE REASON`).
pub const READY_FD: i32 = 3;
/// Environment variable telling the shim it has a ready descriptor.
pub const ENV_READY_FD: &str = "A3S_SHIM_READY_FD";
const POLL: Duration = Duration::from_millis(20);
/// Extra time `stop` waits after the grace period for the VM to be killed.
const STOP_SLACK: Duration = Duration::from_secs(15);
/// How long `wait` and `start -a` wait for the supervisor to finish after
/// the workload exited.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// A workload that could not be started (Docker's 125/126/127).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct StartError {
    /// Exit code for the CLI.
    pub code: i32,
    /// Why.
    pub reason: String,
}

/// Lifecycle operations on the boxes of one home.
#[derive(Debug, Clone)]
pub struct BoxManager {
    store: BoxStore,
    layer_cache: PathBuf,
    config: Arc<EngineConfig>,
}

impl BoxManager {
    /// Manager of the boxes of `config`'s home.
    pub fn new(config: Arc<EngineConfig>) -> Self {
        let home = config.home_dir();
        BoxManager {
            store: BoxStore::new(&home),
            layer_cache: home.layer_cache_dir(),
            config,
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &BoxStore {
        &self.store
    }

    /// Record a new box (not started) from a resolved spec, with its
    /// writable layer.
    pub fn create(&self, name: Option<String>, spec: BoxSpec) -> Result<BoxRecord> {
        let id = new_box_id().map_err(|e| BoxError::io("generate box id", e))?;
        let storage = &spec.containers[0].storage;
        let read_only = storage.read_only;
        let layer_bytes = storage
            .layer_size_bytes
            .unwrap_or(crate::storage::layer::DEFAULT_LAYER_BYTES);
        let record = self.store.create(id, name, spec)?;
        if !read_only {
            // The box's writable layer: a sparse copy of a formatted template.
            let made = crate::storage::layer::create(&self.layer_cache, &record.dir, layer_bytes);
            if let Err(e) = made {
                let _ = self.store.remove(&record);
                return Err(e.into());
            }
        }
        Ok(record)
    }

    /// Start a box: spawn its shim (detached, own session) and wait until the
    /// workload runs or fails to start. `Ok(Err(..))` is a workload that
    /// could not start.
    pub fn start(&self, record: &BoxRecord) -> Result<std::result::Result<(), StartError>> {
        if !record.state.status.can_start() {
            return Err(BoxError::Conflict(format!(
                "box {} is {}: it cannot be started",
                record.config.name, record.state.status
            )));
        }
        self.store.update_dir(&record.dir, |s| {
            s.stopped_by_user = false;
        })?;
        // The shim reads the engine's settings from the box directory.
        self.config.write_to(&record.dir)?;
        let (read_end, write_end) = std::io::pipe().map_err(|e| BoxError::io("pipe", e))?;
        let spec = HelperSpec::new(
            "a3s-box-shim",
            &self.config.shim,
            "install it beside a3s-box (make setup) or set A3S_BOX_SHIM",
        )
        .arg(&record.dir)
        .env(Environment::clean().set(ENV_READY_FD, READY_FD.to_string()))
        .stderr(Stdio::File {
            path: record.dir.join("shim.log"),
            append: false,
        })
        .lifetime(Lifetime::Detached)
        .fd(write_end.into(), READY_FD);
        // Our end of the pipe's write side is closed once the shim runs, so
        // the read below ends if the shim dies without a word.
        let shim = self.config.launcher().spawn(spec)?;
        // The shim is not our child for long: it outlives us. Reap it in the
        // background if it ends while we still run.
        shim.reap_in_background();
        let mut line = String::new();
        BufReader::new(read_end)
            .read_line(&mut line)
            .map_err(|e| BoxError::io("read shim status", e))?;
        let line = line.trim_end();
        if line == "ok" {
            return Ok(Ok(()));
        }
        if let Some(rest) = line.strip_prefix("fail ") {
            let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
            return Ok(Err(StartError {
                code: code.parse().unwrap_or(125),
                reason: reason.trim_start_matches("a3s-box: ").to_string(),
            }));
        }
        let shim_log = super::log_tail(&record.dir.join("shim.log"), 5);
        Err(BoxError::Vmm {
            message: format!("the box's shim exited before the workload started: {shim_log}"),
            console_tail: None,
        })
    }

    fn control(&self, record: &BoxRecord, request: &ShimRequest) -> Result<()> {
        let socket = record.dir.join(CONTROL_SOCKET);
        let mut stream = UnixStream::connect(&socket).map_err(|e| {
            BoxError::io(format!("reach the shim of box {}", record.config.name), e)
        })?;
        let mut line = serde_json::to_string(request)
            .map_err(|e| BoxError::io("encode request", std::io::Error::other(e)))?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .map_err(|e| BoxError::io("send to shim", e))?;
        let mut reply = String::new();
        stream
            .read_to_string(&mut reply)
            .map_err(|e| BoxError::io("read shim reply", e))?;
        match reply.trim() {
            "ok" => Ok(()),
            other => Err(BoxError::Unavailable(format!("shim refused: {other}"))),
        }
    }

    /// Stop: SIGTERM to the workload, the VM killed after `timeout`.
    /// Returns once the box no longer runs.
    pub fn stop(&self, record: &BoxRecord, timeout: Duration) -> Result<()> {
        if !record.state.status.is_active() || !shim_alive(&record.dir) {
            return Ok(());
        }
        if record.state.status == BoxStatus::Paused {
            // A paused guest cannot handle SIGTERM: resume it first.
            self.unpause(record)?;
        }
        self.control(
            record,
            &ShimRequest::Stop {
                timeout_secs: timeout.as_secs(),
            },
        )?;
        self.wait_inactive(record, timeout + STOP_SLACK)
    }

    /// Send `signal` to the workload.
    pub fn kill(&self, record: &BoxRecord, signal: i32) -> Result<()> {
        if !record.state.status.is_active() || !shim_alive(&record.dir) {
            return Err(BoxError::NotRunning(format!(
                "box {} is not running",
                record.config.name
            )));
        }
        if record.state.status == BoxStatus::Paused {
            self.unpause(record)?;
        }
        self.control(record, &ShimRequest::Signal(signal))
    }

    fn wait_inactive(&self, record: &BoxRecord, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while shim_alive(&record.dir) {
            if Instant::now() > deadline {
                return Err(BoxError::Unavailable(format!(
                    "box {} did not stop within {}s",
                    record.config.name,
                    limit.as_secs()
                )));
            }
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    /// Remove a box; a running one only with `force` (it is killed first).
    pub fn remove(&self, record: &BoxRecord, force: bool) -> Result<()> {
        // A live shim owns the box whatever its status says (a box still
        // booting is `created` until its workload runs).
        if shim_alive(&record.dir) {
            if !force {
                return Err(BoxError::Conflict(format!(
                    "box {} is {} and supervised: stop it first or use rm -f",
                    record.config.name, record.state.status
                )));
            }
            let deadline = Instant::now() + STOP_SLACK;
            while shim_alive(&record.dir) {
                if let Some(pid) = self.store.load_dir(&record.dir)?.state.shim_pid {
                    // The shim's QEMU dies with it (PR_SET_PDEATHSIG).
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
                if Instant::now() > deadline {
                    return Err(BoxError::Unavailable(format!(
                        "the supervisor of box {} did not stop",
                        record.config.name
                    )));
                }
                std::thread::sleep(POLL);
            }
        }
        self.store.remove(record)
    }

    fn qmp(&self, record: &BoxRecord, command: &str) -> Result<()> {
        let socket = record.dir.join(crate::vmm::qemu::provider::QMP_SOCKET);
        crate::vmm::qemu::qmp::execute_once(&socket, command, serde_json::Value::Null)?;
        Ok(())
    }

    /// Pause: the VM's vCPUs stop; its memory stays.
    pub fn pause(&self, record: &BoxRecord) -> Result<()> {
        if record.state.status != BoxStatus::Running || !shim_alive(&record.dir) {
            return Err(BoxError::NotRunning(format!(
                "box {} is {}: only a running box can be paused",
                record.config.name, record.state.status
            )));
        }
        self.qmp(record, "stop")?;
        self.store
            .update_dir(&record.dir, |s| s.status = BoxStatus::Paused)?;
        Ok(())
    }

    /// Unpause: the vCPUs run again.
    pub fn unpause(&self, record: &BoxRecord) -> Result<()> {
        if record.state.status != BoxStatus::Paused || !shim_alive(&record.dir) {
            return Err(BoxError::NotRunning(format!(
                "box {} is {}: it is not paused",
                record.config.name, record.state.status
            )));
        }
        self.qmp(record, "cont")?;
        self.store.update_dir(&record.dir, |s| {
            if s.status == BoxStatus::Paused {
                s.status = BoxStatus::Running;
            }
        })?;
        Ok(())
    }

    /// Rename a box (the new name must be free).
    pub fn rename(&self, record: &BoxRecord, new_name: &str) -> Result<()> {
        self.store.rename(record, new_name)
    }

    /// Remove every box that is not active; the ids removed.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for record in self.store.list()? {
            if record.state.status.can_remove() && !shim_alive(&record.dir) {
                self.store.remove(&record)?;
                removed.push(record.config.id);
            }
        }
        Ok(removed)
    }

    /// Wait for a box to stop; its exit code.
    pub fn wait(&self, key: &str) -> Result<i32> {
        loop {
            let record = self.store.get(key)?;
            if !record.state.status.is_active() && record.state.status.can_start() {
                if record.state.status == BoxStatus::Created {
                    std::thread::sleep(POLL);
                    continue;
                }
                self.settle(&record);
                return Ok(record.state.exit_code.unwrap_or(0));
            }
            std::thread::sleep(POLL);
        }
    }

    /// After a box's workload exited, give its supervisor a moment to
    /// finish (flush, release the box) so that a following `rm` or `prune`
    /// finds it stopped, as after `docker wait`. A restart or a supervisor
    /// that stays (restart policy) ends the wait.
    pub fn settle(&self, record: &BoxRecord) {
        // An `--rm` box's supervisor may be waiting for a client's hold
        // (see `finish_wait`): nothing to wait for here.
        self.wait_supervisor(
            record,
            |r| matches!(r, Ok(r) if r.state.status == BoxStatus::Exited && !r.config.auto_remove()),
        );
    }

    /// Poll, for at most [`SETTLE_LIMIT`], while `record`'s supervisor lives
    /// and `finishing` says so of the box as stored now.
    fn wait_supervisor(&self, record: &BoxRecord, finishing: impl Fn(&Result<BoxRecord>) -> bool) {
        let deadline = Instant::now() + SETTLE_LIMIT;
        while shim_alive(&record.dir)
            && Instant::now() < deadline
            && finishing(&self.store.get(&record.config.id))
        {
            std::thread::sleep(POLL);
        }
    }

    /// For a client about to wait for `record`'s end: if the box is an
    /// `--rm` one, a hold that keeps its supervisor from removing it until
    /// the client has read the exit code and the output. Take it before
    /// starting the box.
    pub fn hold_end(&self, record: &BoxRecord) -> Result<Option<Hold>> {
        if !record.config.auto_remove() {
            return Ok(None);
        }
        match crate::state::hold(&record.dir) {
            Ok(hold) => Ok(Some(hold)),
            // Removed since it was looked up.
            Err(_) if !record.dir.exists() => Err(BoxError::not_found("box", &record.config.name)),
            Err(e) => Err(e),
        }
    }

    /// After the client read `record`'s end: let go of `hold` and wait
    /// (bounded) for the supervisor to finish, so that the box is gone
    /// (`--rm`) or stopped for good when the client returns.
    pub fn finish_wait(&self, record: &BoxRecord, hold: Option<Hold>) {
        if hold.is_none() {
            return self.settle(record);
        }
        drop(hold);
        self.wait_supervisor(record, Result::is_ok);
    }
}
