//! Resource limits applied to a box.

use serde::{Deserialize, Serialize};

/// Resource limits for the workload inside the VM (PID limits, CPU pinning,
/// ulimits, cgroup controls). Every field is optional; `None` means "no limit
/// beyond what the VM size imposes".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// Maximum number of processes (`--pids-limit`).
    #[serde(default)]
    pub pids_limit: Option<u64>,
    /// vCPUs the workload may run on, cpuset syntax ("0-3", "0,2").
    #[serde(default)]
    pub cpuset_cpus: Option<String>,
    /// Relative CPU weight (`--cpu-shares`).
    #[serde(default)]
    pub cpu_shares: Option<u64>,
    /// CFS quota in microseconds per period (`--cpu-quota`).
    #[serde(default)]
    pub cpu_quota: Option<i64>,
    /// CFS period in microseconds (`--cpu-period`).
    #[serde(default)]
    pub cpu_period: Option<u64>,
    /// Soft memory limit in bytes (`--memory-reservation`).
    #[serde(default)]
    pub memory_reservation: Option<u64>,
    /// Memory plus swap limit in bytes (`--memory-swap`).
    #[serde(default)]
    pub memory_swap: Option<i64>,
    /// ulimits, as "name=soft:hard" (`--ulimit`).
    #[serde(default)]
    pub ulimits: Vec<String>,
}
