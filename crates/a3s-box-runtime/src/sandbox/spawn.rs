//! Starting a sandbox's supervisor, from the engine's side.
//!
//! The starter binds `<dir>/sandbox.sock`, connects to it at once (the
//! connection waits in the listen backlog, so it is this listener's and
//! no other's), and hands the listening socket to the supervisor it
//! starts: `a3s-box-shim --listen-fd 3 DIR`, detached, through the
//! [`crate::launch::Launcher`]. It then asks for the start report on its
//! connection. No pipe, no polling for a socket to appear.
//!
//! [`Supervisors`] is the seam: the shim for real, the same supervisor on
//! a task with the fake hypervisor for tests.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};

use super::client::SandboxClient;
use super::rpc::SANDBOX_SOCKET;
use crate::config::EngineConfig;
use crate::launch::{Environment, HelperSpec, Lifetime, Stdio};
use crate::state::shim_alive;

/// Descriptor the shim finds its listening socket on.
pub const LISTEN_FD: i32 = 3;
/// Serializes starts of one sandbox.
const START_LOCK: &str = "start.lock";
const POLL: Duration = Duration::from_millis(20);

/// Starts sandbox supervisors.
pub trait Supervisors: Send + Sync + std::fmt::Debug {
    /// Start the supervisor of the sandbox in `dir`, serving `listener`.
    fn spawn(&self, dir: &Path, listener: std::os::unix::net::UnixListener) -> Result<()>;
}

/// The real supervisor: `a3s-box-shim`.
#[derive(Debug, Clone)]
pub struct ShimSupervisors {
    config: std::sync::Arc<EngineConfig>,
}

impl ShimSupervisors {
    /// Shims as `config` says where they are.
    pub fn new(config: std::sync::Arc<EngineConfig>) -> Self {
        ShimSupervisors { config }
    }
}

impl Supervisors for ShimSupervisors {
    fn spawn(&self, dir: &Path, listener: std::os::unix::net::UnixListener) -> Result<()> {
        let spec = HelperSpec::new(
            "a3s-box-shim",
            &self.config.shim,
            "install it beside a3s-box (make setup) or set A3S_BOX_SHIM",
        )
        .args(["--listen-fd".to_string(), LISTEN_FD.to_string()])
        .arg(dir)
        .env(Environment::clean())
        .stderr(Stdio::File {
            path: dir.join("shim.log"),
            append: false,
        })
        .lifetime(Lifetime::Detached)
        .fd(OwnedFd::from(listener), LISTEN_FD);
        let shim = self.config.launcher().spawn(spec)?;
        // The shim is not our child for long: it outlives us. Reap it in
        // the background if it ends while we still run.
        shim.reap_in_background();
        Ok(())
    }
}

/// Start the supervisor of the sandbox in `dir` (its engine settings
/// written there first); a connection to it. `what` names it in errors.
pub async fn start_supervisor(
    config: &EngineConfig,
    supervisors: &dyn Supervisors,
    dir: &Path,
    what: &str,
) -> Result<SandboxClient> {
    let lock_path = dir.join(START_LOCK);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| BoxError::io(format!("open {}", lock_path.display()), e))?;
    let _starting = Flock::lock(file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| BoxError::Conflict(format!("{what} is being started")))?;
    if shim_alive(dir) {
        return Err(BoxError::Conflict(format!("{what} is already running")));
    }
    // The supervisor reads the engine's settings from the directory.
    config.write_to(dir)?;
    let socket = dir.join(SANDBOX_SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| BoxError::io(format!("bind {}", socket.display()), e))?;
    let stream = std::os::unix::net::UnixStream::connect(&socket)
        .map_err(|e| BoxError::io(format!("connect {}", socket.display()), e))?;
    supervisors.spawn(dir, listener)?;
    stream
        .set_nonblocking(true)
        .map_err(|e| BoxError::io("use the sandbox socket", e))?;
    let stream = tokio::net::UnixStream::from_std(stream)
        .map_err(|e| BoxError::io("use the sandbox socket", e))?;
    Ok(SandboxClient::over(stream, what))
}

/// Wait (at most `limit`) until nobody holds `dir`'s shim lock; whether
/// it is free. The wait is a blocking shared flock on a thread of its own,
/// so the supervisor's end is seen the moment it releases the lock (no
/// polling interval added to `stop`); a detached thread rather than
/// `spawn_blocking`, so a wait that times out never holds the runtime's
/// shutdown.
pub async fn supervisor_gone(dir: &Path, limit: Duration) -> bool {
    if !shim_alive(dir) {
        return true;
    }
    let path = dir.join(crate::state::SHIM_LOCK);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let waiter = std::thread::Builder::new()
        .name("shim-lock-wait".into())
        .spawn(move || {
            let free = match File::open(&path) {
                Ok(file) => Flock::lock(file, FlockArg::LockShared).is_ok(),
                Err(_) => true,
            };
            let _ = tx.send(free);
        });
    if waiter.is_err() {
        // No thread to spare: poll instead.
        let deadline = Instant::now() + limit;
        while shim_alive(dir) {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL).await;
        }
        return true;
    }
    match tokio::time::timeout(limit, rx).await {
        Ok(Ok(true)) => true,
        // The lock could not be waited on: say what it is now.
        Ok(_) => !shim_alive(dir),
        Err(_) => false,
    }
}

/// The supervisor on a task of this process, with a fake hypervisor:
/// the whole engine runs in-process for tests.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct InProcess {
    vmm: std::sync::Arc<super::fake::FakeVmm>,
    tasks: std::sync::Mutex<Vec<(std::path::PathBuf, tokio::task::AbortHandle)>>,
}

#[cfg(any(test, feature = "testing"))]
impl InProcess {
    /// Supervisors booting `vmm`'s fake VMs.
    pub fn new(vmm: std::sync::Arc<super::fake::FakeVmm>) -> Self {
        InProcess {
            vmm,
            tasks: Default::default(),
        }
    }

    /// Kill the supervisor of `dir` as SIGKILL would: nothing it did not
    /// finish is finished, its locks are released.
    pub fn kill(&self, dir: &Path) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        for (d, task) in tasks.iter() {
            if d == dir {
                task.abort();
            }
        }
        tasks.retain(|(d, _)| d != dir);
    }
}

#[cfg(any(test, feature = "testing"))]
impl Supervisors for InProcess {
    fn spawn(&self, dir: &Path, listener: std::os::unix::net::UnixListener) -> Result<()> {
        let vmm = self.vmm.clone();
        let owned = dir.to_path_buf();
        let task = tokio::spawn(async move {
            let vmm: std::sync::Arc<dyn super::vmm::SandboxVmm> = vmm;
            if let Err(e) = super::shim::run_with(&owned, Some(listener), vmm, true).await {
                tracing::warn!("in-process supervisor: {e}");
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((dir.to_path_buf(), task.abort_handle()));
        Ok(())
    }
}
