//! `inspect`: a box as Docker's `GET /containers/{id}/json` shows it, plus an
//! `A3s` section with what only a VM has (accelerator, vCPUs, supervisor).

use std::collections::BTreeMap;
use std::path::PathBuf;

use a3s_box_core::spec::{Mount, RootSource};
use a3s_box_core::status::BoxStatus;
use serde::Serialize;

use super::list::image_of;
use crate::state::BoxRecord;

/// A box, inspected.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct BoxInspect {
    /// Full id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The program.
    pub path: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Where it is in its life.
    pub state: StateView,
    /// The image reference or root directory.
    pub image: String,
    /// The image's manifest digest the box runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// Restarts made by the restart policy.
    pub restart_count: u32,
    /// What it runs.
    pub config: ConfigView,
    /// How it is hosted.
    pub host_config: HostConfigView,
    /// Its mounts.
    pub mounts: Vec<MountView>,
    /// The pod it belongs to (id), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    /// What only a VM has.
    #[serde(rename = "A3s")]
    pub a3s: A3sView,
}

/// Docker's `State`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateView {
    /// `running`, `exited`, ...
    pub status: BoxStatus,
    /// The workload runs (paused included, as Docker).
    pub running: bool,
    /// The vCPUs are stopped.
    pub paused: bool,
    /// Between two runs of a restart policy.
    pub restarting: bool,
    /// Never set: memory limits of a VM end in the guest's OOM killer.
    #[serde(rename = "OOMKilled")]
    pub oom_killed: bool,
    /// Could not be cleaned up.
    pub dead: bool,
    /// Host pid of the VM (QEMU), 0 when not running.
    pub pid: u32,
    /// Last exit code.
    pub exit_code: i32,
    /// Why it ended, when not by itself.
    pub error: String,
    /// When it last started.
    pub started_at: String,
    /// When it last ended.
    pub finished_at: String,
}

/// Docker's `Config`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConfigView {
    /// Hostname.
    pub hostname: String,
    /// User spec.
    pub user: String,
    /// `KEY=VALUE`.
    pub env: Vec<String>,
    /// The command line.
    pub cmd: Vec<String>,
    /// The image reference or root directory.
    pub image: String,
    /// The root directory booted.
    pub rootfs: PathBuf,
    /// Working directory.
    pub working_dir: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub open_stdin: bool,
}

/// Docker's `HostConfig`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfigView {
    /// `{"Name": "on-failure", "MaximumRetryCount": 3}`.
    pub restart_policy: RestartPolicyView,
    /// `--rm`.
    pub auto_remove: bool,
    /// `--read-only`.
    pub readonly_rootfs: bool,
    /// vCPUs, as Docker's NanoCpus.
    pub nano_cpus: u64,
    /// Memory in bytes.
    pub memory: u64,
}

/// Docker's `RestartPolicy`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RestartPolicyView {
    /// `no`, `always`, `on-failure`, `unless-stopped`.
    pub name: String,
    /// on-failure's limit (0: none).
    pub maximum_retry_count: u32,
}

/// One of Docker's `Mounts`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MountView {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: &'static str,
    /// The volume's name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The host path (or empty for tmpfs).
    pub source: String,
    /// The path in the box.
    pub destination: String,
    /// Writable.
    #[serde(rename = "RW")]
    pub rw: bool,
}

/// What only a VM has.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct A3sView {
    /// Accelerator it runs with and why (or the choice when not running).
    pub accelerator: String,
    /// vCPUs.
    pub v_cpus: u8,
    /// Memory in MiB.
    #[serde(rename = "MemoryMiB")]
    pub memory_mib: u32,
    /// Pid of its supervisor.
    pub shim_pid: Option<u32>,
    /// Its directory.
    pub dir: PathBuf,
}

impl BoxInspect {
    /// The view of `r` (in pod `pod`).
    pub fn of(r: &BoxRecord, pod: Option<String>) -> Self {
        use a3s_box_core::status::RestartPolicy;
        let (c, s) = (&r.config, &r.state);
        let container = c.container();
        let p = &container.process;
        let sandbox = &c.spec.sandbox;
        let command = container.command();
        let (path, args) = match command.split_first() {
            Some((p, a)) => (p.clone(), a.to_vec()),
            None => (String::new(), Vec::new()),
        };
        let (name, max) = match container.restart {
            RestartPolicy::OnFailure { max_retries } => {
                ("on-failure".to_string(), max_retries.unwrap_or(0))
            }
            other => (other.to_string(), 0),
        };
        let rootfs = match &container.root {
            RootSource::Dir { path } => path.clone(),
            RootSource::Image { .. } => Default::default(),
        };
        BoxInspect {
            id: c.id.clone(),
            name: c.name.clone(),
            created: c.created.clone(),
            path,
            args,
            state: StateView {
                status: s.status,
                running: matches!(s.status, BoxStatus::Running | BoxStatus::Paused),
                paused: s.status == BoxStatus::Paused,
                restarting: s.status == BoxStatus::Restarting,
                oom_killed: false,
                dead: s.status == BoxStatus::Dead,
                pid: s.vm_pid.unwrap_or(0),
                exit_code: s.exit_code.unwrap_or(0),
                error: s.error.clone().unwrap_or_default(),
                started_at: s.started_at.clone().unwrap_or_default(),
                finished_at: s.finished_at.clone().unwrap_or_default(),
            },
            image: image_of(r),
            image_digest: match &container.root {
                RootSource::Image { digest, .. } => digest.clone(),
                RootSource::Dir { .. } => None,
            },
            restart_count: s.restart_count,
            config: ConfigView {
                hostname: sandbox
                    .hostname
                    .clone()
                    .unwrap_or_else(|| c.id[..12].to_string()),
                user: p.user.clone().unwrap_or_default(),
                env: p.env.iter().map(ToString::to_string).collect(),
                cmd: command,
                image: image_of(r),
                rootfs,
                working_dir: p.cwd.clone().unwrap_or_default(),
                labels: container.labels.clone(),
                tty: p.tty,
                open_stdin: p.stdin,
            },
            host_config: HostConfigView {
                restart_policy: RestartPolicyView {
                    name,
                    maximum_retry_count: max,
                },
                auto_remove: container.auto_remove,
                readonly_rootfs: container.storage.read_only,
                nano_cpus: u64::from(sandbox.resources.vcpus) * 1_000_000_000,
                memory: u64::from(sandbox.resources.memory_mib) << 20,
            },
            mounts: container.storage.mounts.iter().map(MountView::of).collect(),
            pod,
            a3s: A3sView {
                accelerator: s
                    .accelerator
                    .clone()
                    .unwrap_or_else(|| sandbox.vm.accel.to_string()),
                v_cpus: sandbox.resources.vcpus,
                memory_mib: sandbox.resources.memory_mib,
                shim_pid: s.shim_pid,
                dir: r.dir.clone(),
            },
        }
    }
}

impl MountView {
    fn of(m: &Mount) -> Self {
        let (kind, name, source) = match m {
            Mount::Bind { source, .. } => ("bind", None, source.display().to_string()),
            Mount::Volume { name, .. } => ("volume", name.clone(), String::new()),
            Mount::Tmpfs { .. } => ("tmpfs", None, String::new()),
        };
        MountView {
            kind,
            name,
            source,
            destination: m.target().to_string(),
            rw: !m.read_only(),
        }
    }
}
