//! Running a box in the foreground: boot, stream its output, return its
//! code, with the sandbox actor on a task of the CLI.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::guest::StdStream;
use a3s_box_core::status::RestartPolicy;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{signal, SignalKind};

use super::new_box_id;
use crate::config::EngineConfig;
use crate::sandbox::qemu::QemuVmm;
use crate::sandbox::rpc::Request;
use crate::sandbox::{Actor, ContainerSetup, Handle, Kind, Outcome, OutputSink, RunOptions, Setup};

/// A box directory owned by this process: locked while the run lasts and
/// removed when it ends, however it ends. If this process is killed, the
/// lock dies with it and the next run removes the directory.
struct BoxDir {
    path: PathBuf,
    _lock: Flock<File>,
}

const LOCK_FILE: &str = "lock";
/// Prefix of a foreground box's directory while it is being made.
const BUILDING_PREFIX: &str = ".run-";
/// A directory without a lock file younger than this may be one another run
/// is creating right now.
const UNLOCKED_GRACE: Duration = Duration::from_secs(30);

impl BoxDir {
    /// Make `path` with its lock file locked before it appears under its
    /// name: built as a hidden `.run-` directory first, then renamed, so a
    /// concurrent run's sweep never sees it unlocked.
    fn create(path: PathBuf) -> Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let building = path.with_file_name(format!("{BUILDING_PREFIX}{name}"));
        let fail = |what: &str, p: &Path| {
            let what = format!("{what} {}", p.display());
            move |e: std::io::Error| BoxError::io(what, e)
        };
        std::fs::create_dir_all(&building).map_err(fail("create", &building))?;
        let made = File::create(building.join(LOCK_FILE))
            .map_err(fail("create lock in", &building))
            .and_then(|file| {
                Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
                    BoxError::io(format!("lock {}", building.display()), e.into())
                })
            })
            .and_then(|lock| {
                std::fs::rename(&building, &path).map_err(fail("create", &path))?;
                Ok(lock)
            });
        match made {
            Ok(lock) => Ok(BoxDir { path, _lock: lock }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&building);
                Err(e)
            }
        }
    }
}

impl Drop for BoxDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Remove box directories left by runs that were killed (their lock is free).
fn remove_abandoned_boxes(boxes: &Path) {
    let Ok(entries) = std::fs::read_dir(boxes) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = || {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > UNLOCKED_GRACE)
                .unwrap_or(false)
        };
        // Stored boxes and the store's own files belong to the box store. A
        // `.run-` directory is one being made (its lock may not be taken
        // yet), or one whose run was killed meanwhile (then it is old).
        if dir.join("config.json").exists()
            || (name.starts_with('.') && !name.starts_with(BUILDING_PREFIX))
        {
            continue;
        }
        let abandoned = match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => {
                (!name.starts_with(BUILDING_PREFIX) || old())
                    && Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok()
            }
            Err(_) => old(),
        };
        if abandoned {
            tracing::debug!(dir = %dir.display(), "removing abandoned box");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Our own stdout and stderr.
struct Terminal;

impl OutputSink for Terminal {
    fn write(&mut self, stream: StdStream, bytes: &[u8]) {
        // A closed stdout (e.g. `| head`) must not stop the box from
        // finishing; drop the bytes as Docker does.
        let _ = match stream {
            StdStream::Stderr => std::io::stderr().write_all(bytes),
            _ => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|_| out.flush())
            }
        };
    }
}

/// Boot a VM for `opts`, stream the workload's stdout/stderr to ours, and
/// return its exit code (126/127 when it could not be started). Errors of
/// a3s-box itself come back as `Err`. The box leaves nothing behind. The
/// sandbox's actor runs right here, on this task, with nothing stored and
/// no socket: the fastest path.
pub async fn run_foreground(config: Arc<EngineConfig>, opts: RunOptions) -> Result<i32> {
    // Nothing can name this box (it is not stored), so nothing can
    // `network connect` it: no spare NICs to boot.
    let config = match config.network.spare_nics {
        0 => config,
        _ => {
            let mut c = (*config).clone();
            c.network.spare_nics = 0;
            Arc::new(c)
        }
    };
    let home = &config.home_dir();
    let id = new_box_id().map_err(|e| BoxError::io("generate box id", e))?;
    remove_abandoned_boxes(&home.boxes_dir());
    let dir = home.boxes_dir().join(&id[..12]);
    let _box_dir = BoxDir::create(dir.clone())?;
    let container = ContainerSetup {
        id: id.clone(),
        name: id[..12].to_string(),
        dir: dir.clone(),
        image: opts
            .image
            .clone()
            .unwrap_or_else(|| opts.rootfs_dir.display().to_string()),
        options: opts,
        restart: RestartPolicy::No,
        auto_remove: false,
        stop_signal: libc::SIGTERM,
        sink: Box::new(Terminal),
    };
    let setup = Setup {
        id,
        dir,
        vmm: Arc::new(QemuVmm::new(config.clone())),
        engine: config,
        records: None,
        kind: Kind::Standalone(Box::new(container)),
        report_expected: false,
        control: false,
        watch_dir: false,
    };
    let (actor, handle) = Actor::new(setup);
    forward_signals(handle)?;
    actor.run().await
}

/// Forward the signals `docker run` forwards (INT, TERM, HUP, QUIT) to the
/// workload.
fn forward_signals(handle: Handle) -> Result<()> {
    for (num, kind) in [
        (libc::SIGINT, SignalKind::interrupt()),
        (libc::SIGTERM, SignalKind::terminate()),
        (libc::SIGHUP, SignalKind::hangup()),
        (libc::SIGQUIT, SignalKind::quit()),
    ] {
        let mut stream = signal(kind).map_err(|e| BoxError::io("install signal handler", e))?;
        let conn = handle.connect();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                let request = Request::Signal {
                    container: None,
                    signal: num,
                };
                if let Outcome::Error(e) = conn.request(request, None).await {
                    tracing::debug!("forward signal {num}: {e}");
                }
            }
        });
    }
    Ok(())
}
