//! A container as its sandbox's actor keeps it: what it runs (lowered from
//! its box's spec), where its output goes, and where it is in its life.

use std::fs::File;
use std::path::PathBuf;

use a3s_box_core::guest::message::{
    ContainerSpec, DiskSpec, ProcessSpec, RootImage, RootSpec, StorageSpec, WindowSize,
};
use a3s_box_core::guest::StdStream;
use a3s_box_core::status::RestartPolicy;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use super::actor::Outcome;
use super::rpc::WaitCondition;
use crate::guest::CreditBatch;
use crate::storage::layer::LAYER_FSTYPE;
use crate::storage::plan::{VmStorage, WRITABLE_SERIAL};
use crate::storage::StorageOptions;

/// What one container runs, lowered from its box's spec.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    /// Root filesystem directory on the host (never modified).
    pub rootfs_dir: PathBuf,
    /// The image reference the root came from, when it came from one.
    #[serde(default)]
    pub image: Option<String>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Working directory in the box.
    pub workdir: Option<String>,
    /// User spec.
    pub user: Option<String>,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Kernel given on the command line.
    pub kernel: Option<PathBuf>,
    /// Accelerator choice: auto, kvm or tcg.
    pub accel: String,
    /// Hostname (default: the short id).
    pub hostname: Option<String>,
    /// Print guest-init's progress on the console log.
    pub debug: bool,
    /// Keep the main process's stdin open for attached clients (`-i`).
    #[serde(default)]
    pub stdin: bool,
    /// Give the main process a pseudo-terminal (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// Writable layer, read-only root and mounts.
    #[serde(default)]
    pub storage: StorageOptions,
    /// Run guest-init's built-in helper named by the command instead of a
    /// program of the box (the storage helpers of a stopped box); never stored.
    #[serde(skip)]
    pub builtin: bool,
    /// The box's name and networks (`None`: loopback only).
    #[serde(default)]
    pub network: Option<(Option<String>, a3s_box_core::spec::NetworkSpec)>,
}

/// Where a container's main process's output goes.
pub trait OutputSink: Send + Sync {
    /// Bytes the workload wrote on `stream`.
    fn write(&mut self, stream: StdStream, bytes: &[u8]);
    /// Everything written so far is to be kept (the run ended).
    fn flush(&mut self) {}
}

impl OutputSink for crate::state::log::LogWriter {
    fn write(&mut self, stream: StdStream, bytes: &[u8]) {
        crate::state::log::LogWriter::write(self, stream, bytes)
    }

    fn flush(&mut self) {
        crate::state::log::LogWriter::flush(self)
    }
}

/// Output nobody keeps (the attached clients get their copy).
#[derive(Debug, Default)]
pub struct Discard;

impl OutputSink for Discard {
    fn write(&mut self, _: StdStream, _: &[u8]) {}
}

/// A container of the sandbox, as its supervisor starts it.
pub struct ContainerSetup {
    /// The box's 64-hex id (also its id in the guest).
    pub id: String,
    /// The box's name.
    pub name: String,
    /// The box's directory (its state, log and lock).
    pub dir: PathBuf,
    /// The image reference or root directory (for events).
    pub image: String,
    /// What it runs.
    pub options: RunOptions,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// Removed once it ends (`--rm`).
    pub auto_remove: bool,
    /// What `stop` sends first.
    pub stop_signal: i32,
    /// Where its output goes.
    pub sink: Box<dyn OutputSink>,
}

impl ContainerSetup {
    /// The setup of the stored box `record`, its output going to `sink`.
    pub fn of_record(
        record: &crate::state::BoxRecord,
        sink: Box<dyn OutputSink>,
    ) -> a3s_box_core::Result<Self> {
        let (_, home) = crate::state::BoxStore::of_box_dir(&record.dir)?;
        let c = record.config.container();
        Ok(ContainerSetup {
            id: record.config.id.clone(),
            name: record.config.name.clone(),
            dir: record.dir.clone(),
            image: crate::manager::views::list::image_of(record),
            options: crate::manager::lower::run_options(&record.config.spec, &home)?,
            restart: c.restart,
            auto_remove: c.auto_remove,
            stop_signal: c.stop_signal.map_or(libc::SIGTERM, |s| s.number()),
            sink,
        })
    }
}

impl std::fmt::Debug for ContainerSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerSetup")
            .field("id", &self.id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Where a container is in its life, as the actor sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Known, not started.
    Created,
    /// Its main process is being started (or its VM booted).
    Starting,
    /// Its main process runs.
    Running,
    /// Its main process ended.
    Exited,
    /// Waiting out the back-off before the restart policy starts it again.
    Restarting,
}

/// Someone waiting for a container's exit.
pub(super) struct ExitWaiter {
    pub condition: WaitCondition,
    pub reply: tokio::sync::oneshot::Sender<Outcome>,
}

/// A container in the actor's table.
pub(super) struct Container {
    pub setup: ContainerSetup,
    pub phase: Phase,
    /// Its root exists in the VM.
    pub in_guest: bool,
    /// Its main process's id on the wire, from its start until it ended.
    pub process: Option<u32>,
    pub exit_code: Option<i32>,
    pub restart_count: u32,
    pub stopped_by_user: bool,
    /// Started at least once by this supervisor.
    pub ever_started: bool,
    /// Output credit of the main process not yet returned.
    pub credit: CreditBatch,
    /// The last stderr chunk (a start failure's reason).
    pub last_stderr: String,
    /// Replies owed once it starts (or fails to).
    pub start_waiters: Vec<tokio::sync::oneshot::Sender<Outcome>>,
    pub exit_waiters: Vec<ExitWaiter>,
    /// Replies owed once a stop completes.
    pub stop_waiters: Vec<tokio::sync::oneshot::Sender<Outcome>>,
    /// Numbers the stops, so a late timer of an old stop does nothing.
    pub stop_gen: u64,
    /// An exit reported by the guest, recorded once the VM is gone (a
    /// standalone box's state is final only then).
    pub pending_exit: Option<i32>,
    /// A pod's container: its box's shim lock, held while in the pod.
    pub lock: Option<Flock<File>>,
    /// Its root is being created in the VM.
    pub creating: bool,
    /// It reached `Started` in the current run.
    pub started_this_run: bool,
    /// The next restart's back-off (`None`: the first).
    pub backoff: Option<std::time::Duration>,
    /// Its removal from the VM is for its box's removal (`--rm`).
    pub removing_box: bool,
    /// Replies owed once it left the VM.
    pub remove_waiters: Vec<tokio::sync::oneshot::Sender<Outcome>>,
}

impl Container {
    pub fn new(setup: ContainerSetup, restart_count: u32) -> Self {
        Container {
            setup,
            phase: Phase::Created,
            in_guest: false,
            process: None,
            exit_code: None,
            restart_count,
            stopped_by_user: false,
            ever_started: false,
            credit: CreditBatch::default(),
            last_stderr: String::new(),
            start_waiters: Vec::new(),
            exit_waiters: Vec::new(),
            stop_waiters: Vec::new(),
            stop_gen: 0,
            pending_exit: None,
            lock: None,
            creating: false,
            started_this_run: false,
            backoff: None,
            removing_box: false,
            remove_waiters: Vec::new(),
        }
    }

    /// Its main process runs, or is about to.
    pub fn is_live(&self) -> bool {
        matches!(self.phase, Phase::Starting | Phase::Running)
    }

    /// Note output of the main process (remembering a stderr line for a
    /// start failure's reason).
    pub fn output(&mut self, stream: StdStream, bytes: &[u8]) {
        if stream == StdStream::Stderr {
            self.last_stderr = String::from_utf8_lossy(bytes).trim().to_string();
        }
        self.setup.sink.write(stream, bytes);
    }

    /// Its hostname in the guest.
    pub fn hostname(&self) -> String {
        self.setup
            .options
            .hostname
            .clone()
            .unwrap_or_else(|| self.setup.id.chars().take(12).collect())
    }

    /// The main process to start as `process`; `in_container` names the
    /// container (a pod's) or leaves it to `Boot`'s.
    pub fn main_process(&self, process: u32, in_container: bool) -> ProcessSpec {
        let o = &self.setup.options;
        let (executable, args) = o.command.split_first().map_or_else(
            || (String::new(), Vec::new()),
            |(e, a)| (e.clone(), a.to_vec()),
        );
        ProcessSpec {
            process,
            container: in_container.then(|| self.setup.id.clone()),
            executable,
            args,
            env: o.env.clone(),
            workdir: o.workdir.clone().unwrap_or_else(|| "/".into()),
            user: o.user.clone(),
            stdin: o.stdin,
            terminal: o.tty.then(WindowSize::default),
            builtin: o.builtin,
        }
    }

    /// The container as it joins a running pod: its image on the image
    /// share, its layer in its own directory of the pod's disk.
    pub fn joining_spec(
        &self,
        hostname: String,
        tag: &str,
        (path, fstype): (String, String),
        storage: &VmStorage,
    ) -> ContainerSpec {
        let short: String = self.setup.id.chars().take(12).collect();
        ContainerSpec {
            id: self.setup.id.clone(),
            hostname,
            root: RootSpec {
                image: RootImage::SharedFile {
                    tag: tag.into(),
                    path,
                },
                fstype,
            },
            storage: Some(Box::new(StorageSpec {
                writable: (!storage.read_only).then(writable_disk),
                writable_dir: (!storage.read_only).then(|| format!("containers/{short}")),
                tmpfs_upper_bytes: storage.tmpfs_upper_bytes,
                read_only: storage.read_only,
                mounts: storage.mounts.clone(),
            })),
            limits: None,
            workdir: None,
        }
    }
}

/// Container `id` as `Boot` creates it: its root on the VM's root disk,
/// the storage the VM was given.
pub(crate) fn boot_container(id: &str, fstype: &str, storage: &VmStorage) -> ContainerSpec {
    ContainerSpec {
        id: id.to_string(),
        hostname: id.chars().take(12).collect(),
        root: RootSpec {
            image: RootImage::Device {
                path: "/dev/vda".into(),
            },
            fstype: fstype.into(),
        },
        storage: Some(Box::new(StorageSpec {
            writable: storage.has_writable_disk().then(writable_disk),
            writable_dir: None,
            tmpfs_upper_bytes: storage.tmpfs_upper_bytes,
            read_only: storage.read_only,
            mounts: storage.mounts.clone(),
        })),
        limits: None,
        workdir: None,
    }
}

fn writable_disk() -> DiskSpec {
    DiskSpec {
        serial: WRITABLE_SERIAL.into(),
        fstype: LAYER_FSTYPE.into(),
    }
}
