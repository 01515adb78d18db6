//! What `a3s-box-shim DIR` runs: the supervisor of one sandbox, a box's
//! (`boxes/<id12>/`) or a pod's (`pods/<id12>/`).
//!
//! It holds the sandbox's `shim.lock` for its whole life (liveness is the
//! lock, not a pid), reads the engine's settings its starter wrote
//! (`engine.json`: it reads no environment), serves the sandbox RPC on the
//! listening socket its starter bound and passed (or binds it itself), and
//! runs the sandbox's actor until the sandbox is over. QEMU dies with it
//! (`PR_SET_PDEATHSIG`), so a killed shim never leaves a VM nobody owns.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};

use super::actor::{Actor, Kind, PodSetup, Records, Setup, Timing};
use super::container::ContainerSetup;
use super::pods::PodStore;
use super::qemu::QemuVmm;
use super::rpc::SANDBOX_SOCKET;
use super::server;
use super::vmm::SandboxVmm;
use crate::config::EngineConfig;
use crate::state::events::{EventLog, EVENTS_FILE};
use crate::state::log::LogWriter;
use crate::state::{BoxStore, LOG_FILE, SHIM_LOCK};

/// How long clients get to receive their last frames when the sandbox ends.
const CLIENT_DRAIN: Duration = Duration::from_secs(2);
/// The directory of a pod's VM's root disk (empty: its containers' roots
/// come from the image share).
pub const POD_ROOT_DIR: &str = "root";

/// Supervise the sandbox in `dir` until it is over. `listener` is the
/// socket the starter bound (it will ask for the start report on it).
pub async fn run(dir: &Path, listener: Option<std::os::unix::net::UnixListener>) -> Result<()> {
    let engine = Arc::new(EngineConfig::read_from(dir)?);
    run_with(dir, listener, Arc::new(QemuVmm::new(engine)), false).await
}

/// [`run`] with hypervisor `vmm`; `fast`: short back-offs and grace
/// periods (tests).
pub async fn run_with(
    dir: &Path,
    listener: Option<std::os::unix::net::UnixListener>,
    vmm: Arc<dyn SandboxVmm>,
    fast: bool,
) -> Result<()> {
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(SHIM_LOCK))
        .map_err(|e| BoxError::io("open shim lock", e))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock)
        .map_err(|_| BoxError::Conflict(format!("{} already has a supervisor", dir.display())))?;
    let engine = Arc::new(EngineConfig::read_from(dir)?);
    let pod = PodStore::is_pod_dir(dir);
    let (pods, home) = match pod {
        true => PodStore::of_pod_dir(dir)?,
        false => {
            let (_, home) = BoxStore::of_box_dir(dir)?;
            (PodStore::new(&home), home)
        }
    };
    let records = Records {
        store: BoxStore::new(&home),
        events: EventLog::at(home.root().join(EVENTS_FILE)),
        pods: pods.clone(),
    };
    let (id, kind) = match pod {
        true => {
            let record = pods.load_dir(dir)?;
            let root_dir = dir.join(POD_ROOT_DIR);
            std::fs::create_dir_all(&root_dir)
                .map_err(|e| BoxError::io(format!("create {}", root_dir.display()), e))?;
            let setup = PodSetup {
                name: record.config.name.clone(),
                sandbox: record.config.sandbox.clone(),
                root_dir,
            };
            (record.config.id, Kind::Pod(Box::new(setup)))
        }
        false => {
            let record = records.store.load_dir(dir)?;
            let log = LogWriter::open(&dir.join(LOG_FILE), engine.log_max_bytes)?;
            let setup = ContainerSetup::of_record(&record, Box::new(log))?;
            (record.config.id, Kind::Standalone(Box::new(setup)))
        }
    };
    let socket = dir.join(SANDBOX_SOCKET);
    let report_expected = listener.is_some();
    let listener = match listener {
        Some(l) => {
            l.set_nonblocking(true)
                .map_err(|e| BoxError::io("use the sandbox socket", e))?;
            tokio::net::UnixListener::from_std(l)
                .map_err(|e| BoxError::io("use the sandbox socket", e))?
        }
        None => {
            let _ = std::fs::remove_file(&socket);
            tokio::net::UnixListener::bind(&socket)
                .map_err(|e| BoxError::io("bind the sandbox socket", e))?
        }
    };
    let setup = Setup {
        id,
        dir: dir.to_path_buf(),
        vmm,
        engine,
        records: Some(records),
        kind,
        report_expected,
        control: true,
        watch_dir: true,
    };
    let (mut actor, handle) = Actor::new(setup);
    if fast {
        actor = actor.with_timing(Timing::fast());
    }
    let connections = server::serve(listener, handle);
    if let Err(e) = actor.run().await {
        // Recorded in the sandbox's state; said here for the shim's log.
        tracing::info!(dir = %dir.display(), "sandbox ended: {e}");
    }
    connections.drain(CLIENT_DRAIN).await;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
