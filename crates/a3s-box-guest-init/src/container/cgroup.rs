//! Each container's cgroup: cgroup2 is mounted on `/sys/fs/cgroup` when
//! the first container is created, and each container gets the child
//! `/sys/fs/cgroup/<id>` with the limits of its `ResourceLimits`. Every
//! process of the container is cloned straight into it (`CLONE_INTO_CGROUP`
//! with the directory descriptor kept here). Removing the container kills
//! the cgroup's processes (`cgroup.kill`) and removes it.
//!
//! The cpu, memory, pids (and cpuset) controllers are enabled only once a
//! container's limits need them ([`Cgroup::create`]); the kernel then adds
//! them to every container's cgroup. A container without limits is still
//! in a cgroup of its own (its processes are counted, killed and removed
//! together) but is not charged: with the memory controller on, every
//! page a process touches is charged to its cgroup, which made each
//! `exec` about 1 ms (5-10 %) slower under emulation (`docs/design.md`).

use std::fs::{self, File};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::OnceLock;

use a3s_box_core::config::ResourceLimits;
use nix::mount::{mount, MsFlags};

use crate::error::{Context, InitError};
use crate::pid1::log::{debug, warning};

const CGROUP_FS: &str = "/sys/fs/cgroup";
/// The controllers every container's cgroup gets, if the kernel has them.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// Enabled only for a container that limits its CPUs.
const CPUSET: &str = "cpuset";
/// CFS period when only a quota is given (Docker's default), in µs.
const DEFAULT_CPU_PERIOD_US: u64 = 100_000;

/// cgroup2 mounted, or why not.
static MOUNTED: OnceLock<Result<(), String>> = OnceLock::new();
/// The controllers enabled for containers, or why none are.
static ENABLED: OnceLock<Result<Vec<&'static str>, String>> = OnceLock::new();
/// The cpuset controller enabled, or why not.
static CPUSET_ENABLED: OnceLock<Result<(), String>> = OnceLock::new();

fn mounted() -> Result<(), String> {
    MOUNTED
        .get_or_init(|| {
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            mount(
                Some("cgroup2"),
                CGROUP_FS,
                Some("cgroup2"),
                flags,
                None::<&str>,
            )
            .context(|| format!("mount cgroup2 on {CGROUP_FS}"))
            .map_err(|e| e.to_string())
        })
        .clone()
}

/// `+controller` in the root's `cgroup.subtree_control`.
fn enable(controller: &str) -> Result<(), String> {
    let control = format!("{CGROUP_FS}/cgroup.subtree_control");
    fs::write(&control, format!("+{controller}"))
        .map_err(|e| format!("enable the {controller} controller: {e}"))
}

/// Enable what [`CONTROLLERS`] the kernel has (once; later callers wait).
fn enabled() -> &'static Result<Vec<&'static str>, String> {
    ENABLED.get_or_init(|| {
        mounted()?;
        let available = fs::read_to_string(format!("{CGROUP_FS}/cgroup.controllers"))
            .map_err(|e| format!("read the cgroup controllers: {e}"))?;
        let mut enabled = Vec::new();
        for controller in CONTROLLERS {
            if !available.split_whitespace().any(|a| a == controller) {
                continue;
            }
            match enable(controller) {
                Ok(()) => enabled.push(controller),
                Err(e) => warning!("{e}"),
            }
        }
        debug!("cgroup controllers {enabled:?} enabled");
        Ok(enabled)
    })
}

/// The controller `file` belongs to (`pids.max` → `pids`).
fn controller_of(file: &str) -> &str {
    file.split('.').next().unwrap_or(file)
}

/// Make sure the controllers that the cgroup files `files` need are there.
fn enable_for(files: &[(&'static str, String)]) -> Result<(), String> {
    let enabled = enabled().as_ref().map_err(Clone::clone)?;
    for (file, _) in files {
        match controller_of(file) {
            CPUSET => CPUSET_ENABLED.get_or_init(|| enable(CPUSET)).clone()?,
            c if enabled.contains(&c) => {}
            c => return Err(format!("the {c} controller is not available for {file}")),
        }
    }
    Ok(())
}

/// A container's cgroup.
#[derive(Debug)]
pub struct Cgroup {
    path: String,
    /// Its directory, which processes are cloned into.
    dir: File,
}

impl Cgroup {
    /// Create the cgroup of container `id` with `limits`. Without cgroup2
    /// a container with no limits runs in guest-init's cgroup (`None`).
    pub fn create(id: &str, limits: Option<&ResourceLimits>) -> Result<Option<Self>, InitError> {
        let files = limits
            .map(limit_files)
            .transpose()
            .map_err(InitError::Protocol)?;
        let files = files.unwrap_or_default();
        let ready = mounted().and_then(|()| match files.is_empty() {
            true => Ok(()),
            false => enable_for(&files),
        });
        match ready {
            Ok(()) => {}
            Err(e) if files.is_empty() => {
                warning!("container {id} runs without a cgroup: {e}");
                return Ok(None);
            }
            Err(e) => {
                return Err(InitError::Protocol(format!(
                    "no cgroup for the limits: {e}"
                )))
            }
        }
        let path = format!("{CGROUP_FS}/{id}");
        fs::create_dir(&path).context(|| format!("create the cgroup {path}"))?;
        let cgroup = Cgroup {
            dir: File::open(&path).context(|| format!("open {path}"))?,
            path,
        };
        for (file, value) in files {
            let at = format!("{}/{file}", cgroup.path);
            if let Err(e) = fs::write(&at, &value).context(|| format!("set {file} to {value}")) {
                let _ = cgroup.remove();
                return Err(e);
            }
        }
        Ok(Some(cgroup))
    }

    /// The directory descriptor processes are cloned into.
    pub fn dir_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }

    /// SIGKILL every process in the cgroup.
    pub fn kill(&self) -> Result<(), InitError> {
        let at = format!("{}/cgroup.kill", self.path);
        fs::write(&at, "1").context(|| format!("write {at}"))
    }

    /// Whether no process is left in the cgroup.
    pub fn is_empty(&self) -> bool {
        let at = format!("{}/cgroup.events", self.path);
        fs::read_to_string(at).is_ok_and(|events| !populated(&events))
    }

    /// Remove the (empty) cgroup.
    pub fn remove(&self) -> Result<(), InitError> {
        fs::remove_dir(&self.path).context(|| format!("remove the cgroup {}", self.path))
    }
}

/// Whether a `cgroup.events` says processes are left.
fn populated(events: &str) -> bool {
    events.lines().any(|l| l.trim() == "populated 1")
}

/// The cgroup files and values that enforce `limits`, as Docker maps its
/// flags onto cgroup v2. `memory_swap` is not among them (the VM has no
/// swap); `ulimits` are per process ([`super::rlimit`]).
pub fn limit_files(limits: &ResourceLimits) -> Result<Vec<(&'static str, String)>, String> {
    let mut files = Vec::new();
    if let Some(pids) = limits.pids_limit {
        // Docker: 0 (or less) is unlimited.
        let value = if pids == 0 {
            "max".into()
        } else {
            pids.to_string()
        };
        files.push(("pids.max", value));
    }
    if let Some(cpus) = &limits.cpuset_cpus {
        let ok = !cpus.is_empty()
            && cpus
                .chars()
                .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
        if !ok {
            return Err(format!("invalid cpuset {cpus:?}: use a list like 0-2,4"));
        }
        files.push(("cpuset.cpus", cpus.clone()));
    }
    if let Some(shares) = limits.cpu_shares.filter(|s| *s > 0) {
        files.push(("cpu.weight", cpu_weight(shares).to_string()));
    }
    let period = limits.cpu_period.filter(|p| *p > 0);
    match (limits.cpu_quota.filter(|q| *q > 0), period) {
        (Some(quota), period) => {
            let period = period.unwrap_or(DEFAULT_CPU_PERIOD_US);
            files.push(("cpu.max", format!("{quota} {period}")));
        }
        (None, Some(period)) => files.push(("cpu.max", format!("max {period}"))),
        (None, None) => {}
    }
    if let Some(bytes) = limits.memory_reservation {
        files.push(("memory.low", bytes.to_string()));
    }
    Ok(files)
}

/// cgroup v2 `cpu.weight` (1–10000) for Docker's `--cpu-shares` (2–262144),
/// as runc converts it.
fn cpu_weight(shares: u64) -> u64 {
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limits_no_files() {
        assert!(limit_files(&ResourceLimits::default()).unwrap().is_empty());
    }

    #[test]
    fn limits_map_to_cgroup_v2_files() {
        let limits = ResourceLimits {
            pids_limit: Some(64),
            cpuset_cpus: Some("0-1,3".into()),
            cpu_shares: Some(1024),
            cpu_quota: Some(50_000),
            cpu_period: None,
            memory_reservation: Some(64 << 20),
            memory_swap: Some(-1),
            ulimits: vec!["nofile=10:20".into()],
        };
        assert_eq!(
            limit_files(&limits).unwrap(),
            [
                ("pids.max", "64".to_string()),
                ("cpuset.cpus", "0-1,3".to_string()),
                ("cpu.weight", "39".to_string()),
                ("cpu.max", "50000 100000".to_string()),
                ("memory.low", (64u64 << 20).to_string()),
            ]
        );
    }

    #[test]
    fn edge_values_follow_docker() {
        let limits = ResourceLimits {
            pids_limit: Some(0),
            cpu_quota: Some(-1),
            cpu_period: Some(20_000),
            ..ResourceLimits::default()
        };
        assert_eq!(
            limit_files(&limits).unwrap(),
            [
                ("pids.max", "max".to_string()),
                ("cpu.max", "max 20000".to_string())
            ]
        );
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(1), 1);
        let bad = ResourceLimits {
            cpuset_cpus: Some("0;1".into()),
            ..ResourceLimits::default()
        };
        assert!(limit_files(&bad).is_err());
    }

    #[test]
    fn files_name_their_controller() {
        assert_eq!(controller_of("pids.max"), "pids");
        assert_eq!(controller_of("cpuset.cpus"), "cpuset");
        assert_eq!(controller_of("memory.low"), "memory");
    }

    #[test]
    fn events_tell_whether_processes_are_left() {
        assert!(populated("populated 1\nfrozen 0\n"));
        assert!(!populated("populated 0\nfrozen 0\n"));
        assert!(!populated(""));
    }
}
