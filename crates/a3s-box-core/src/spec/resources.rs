//! [`Resources`]: the VM's size and the limits inside it, with their rules.

use serde::{Deserialize, Serialize};

use super::SpecError;
use crate::config::ResourceLimits;
use crate::units;

/// vCPUs of a VM unless given.
pub const DEFAULT_VCPUS: u8 = 2;
/// Most vCPUs a VM may have (QEMU's microvm machine).
pub const MAX_VCPUS: u8 = 64;
/// Memory of a VM unless given.
pub const DEFAULT_MEMORY_MIB: u32 = 512;
/// Least memory a VM boots with (kernel, guest-init and a workload).
pub const MIN_MEMORY_MIB: u32 = 64;
/// Shortest and longest CFS period Docker allows (`--cpu-period`), in µs.
pub const CPU_PERIOD_RANGE_US: (u64, u64) = (1_000, 1_000_000);
/// Shortest CFS quota Docker allows (`--cpu-quota`), in µs (-1: none).
pub const MIN_CPU_QUOTA_US: i64 = 1_000;

/// `ulimit` names Docker accepts.
const ULIMITS: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// What the sandbox's VM is given, and limits for the workload inside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Resources {
    /// Virtual CPUs (`--cpus`, 1 to [`MAX_VCPUS`], default 2).
    pub vcpus: u8,
    /// Guest memory in MiB (`--memory`, at least [`MIN_MEMORY_MIB`],
    /// default 512).
    pub memory_mib: u32,
    /// Limits applied inside the guest (pids, cpuset, CFS, ulimits).
    pub limits: ResourceLimits,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            vcpus: DEFAULT_VCPUS,
            memory_mib: DEFAULT_MEMORY_MIB,
            limits: ResourceLimits::default(),
        }
    }
}

impl Resources {
    /// Check sizes and limits; fields are relative (`vcpus`,
    /// `limits.cpuset_cpus`).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(SpecError::out_of_range(
                "vcpus",
                self.vcpus.to_string(),
                format!("a VM has 1 to {MAX_VCPUS} vCPUs"),
            ));
        }
        if self.memory_mib < MIN_MEMORY_MIB {
            return Err(SpecError::out_of_range(
                "memory_mib",
                format!("{}m", self.memory_mib),
                format!("a VM needs at least {MIN_MEMORY_MIB} MiB of memory (e.g. 512m)"),
            ));
        }
        self.validate_limits().map_err(|e| e.within("limits"))
    }

    fn validate_limits(&self) -> Result<(), SpecError> {
        let l = &self.limits;
        if l.pids_limit == Some(0) {
            return Err(SpecError::out_of_range(
                "pids_limit",
                "0",
                "a workload needs at least one process: give a positive limit or none",
            ));
        }
        if let Some(cpus) = &l.cpuset_cpus {
            check_cpuset(cpus, self.vcpus)?;
        }
        if let Some(period) = l.cpu_period {
            let (lo, hi) = CPU_PERIOD_RANGE_US;
            if !(lo..=hi).contains(&period) {
                return Err(SpecError::out_of_range(
                    "cpu_period",
                    period.to_string(),
                    format!("the CFS period is {lo} to {hi} µs"),
                ));
            }
        }
        if let Some(quota) = l.cpu_quota {
            if quota != -1 && quota < MIN_CPU_QUOTA_US {
                return Err(SpecError::out_of_range(
                    "cpu_quota",
                    quota.to_string(),
                    format!(
                        "the CFS quota is at least {MIN_CPU_QUOTA_US} µs (1 ms), or -1 for none"
                    ),
                ));
            }
        }
        if l.cpu_shares == Some(0) {
            return Err(SpecError::out_of_range(
                "cpu_shares",
                "0",
                "CPU shares are a positive weight (1024 is the default)",
            ));
        }
        let memory_bytes = u64::from(self.memory_mib) << 20;
        if let Some(reservation) = l.memory_reservation {
            if reservation > memory_bytes {
                return Err(SpecError::conflict(
                    "memory_reservation",
                    format!(
                        "the memory reservation ({reservation} bytes) exceeds the VM's memory ({} MiB): lower it or raise --memory",
                        self.memory_mib
                    ),
                ));
            }
        }
        if let Some(swap) = l.memory_swap {
            let at_least_memory = u64::try_from(swap).is_ok_and(|s| s >= memory_bytes);
            if swap != -1 && !at_least_memory {
                return Err(SpecError::out_of_range(
                    "memory_swap",
                    swap.to_string(),
                    "memory plus swap is at least the memory, or -1 for unlimited swap",
                ));
            }
        }
        for (i, ulimit) in l.ulimits.iter().enumerate() {
            check_ulimit(ulimit).map_err(|e| e.within_item("ulimits", i))?;
        }
        Ok(())
    }
}

/// cpuset syntax (`0-3`, `0,2`) naming vCPUs below `vcpus`.
fn check_cpuset(text: &str, vcpus: u8) -> Result<(), SpecError> {
    let bad = |reason: String| SpecError::invalid("cpuset_cpus", text, reason);
    for part in text.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (Ok(lo), Ok(hi)) = (lo.parse::<u32>(), hi.parse::<u32>()) else {
            return Err(bad("use vCPU numbers and ranges, as in 0-3 or 0,2".into()));
        };
        if lo > hi {
            return Err(bad(format!("the range {part} runs backwards")));
        }
        if hi >= u32::from(vcpus) {
            return Err(bad(format!(
                "the VM has vCPUs 0 to {}: raise --cpus or name fewer",
                vcpus.saturating_sub(1)
            )));
        }
    }
    Ok(())
}

/// `name=soft[:hard]` with soft ≤ hard.
fn check_ulimit(text: &str) -> Result<(), SpecError> {
    let bad = |reason: String| SpecError::invalid("", text, reason);
    let (name, values) = text
        .split_once('=')
        .ok_or_else(|| bad("use NAME=SOFT[:HARD], as in nofile=1024:2048".into()))?;
    if !ULIMITS.contains(&name) {
        return Err(bad(format!(
            "unknown limit {name:?}: use one of {}",
            ULIMITS.join(", ")
        )));
    }
    let (soft, hard) = values.split_once(':').unwrap_or((values, values));
    let (Ok(soft), Ok(hard)) = (soft.parse::<i64>(), hard.parse::<i64>()) else {
        return Err(bad(
            "the limits are whole numbers, as in nofile=1024:2048".into()
        ));
    };
    if soft > hard && hard != -1 {
        return Err(bad(format!(
            "the soft limit {soft} exceeds the hard limit {hard}"
        )));
    }
    Ok(())
}

/// `--memory 512m`: the VM's memory in whole MiB (units as Docker's).
pub fn parse_memory(text: &str) -> Result<u32, SpecError> {
    units::memory_mib(text).map_err(|reason| SpecError::invalid("--memory", text, reason))
}

/// A size such as `64m` or `1g` in bytes, for the flag `field`.
pub fn parse_size(field: &str, text: &str) -> Result<u64, SpecError> {
    units::size_bytes(text).map_err(|reason| SpecError::invalid(field, text, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(limits: ResourceLimits) -> Resources {
        Resources {
            vcpus: 4,
            memory_mib: 1024,
            limits,
        }
    }

    #[test]
    fn sizes_are_bounded() {
        Resources::default().validate().unwrap();
        for (vcpus, memory_mib, field) in
            [(0, 512, "vcpus"), (65, 512, "vcpus"), (2, 63, "memory_mib")]
        {
            let e = Resources {
                vcpus,
                memory_mib,
                ..Resources::default()
            }
            .validate()
            .unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.kind),
                (field, super::super::SpecErrorKind::OutOfRange)
            );
        }
    }

    #[test]
    fn limits_follow_dockers_rules() {
        let ok = ResourceLimits {
            pids_limit: Some(100),
            cpuset_cpus: Some("0-1,3".into()),
            cpu_shares: Some(512),
            cpu_quota: Some(50_000),
            cpu_period: Some(100_000),
            memory_reservation: Some(256 << 20),
            memory_swap: Some(-1),
            ulimits: vec![
                "nofile=1024:2048".into(),
                "nproc=64".into(),
                "core=0:-1".into(),
            ],
        };
        with(ok).validate().unwrap();
        let cases: [(ResourceLimits, &str); 11] = [
            (
                ResourceLimits {
                    pids_limit: Some(0),
                    ..Default::default()
                },
                "limits.pids_limit",
            ),
            (
                ResourceLimits {
                    cpuset_cpus: Some("4".into()),
                    ..Default::default()
                },
                "limits.cpuset_cpus",
            ),
            (
                ResourceLimits {
                    cpuset_cpus: Some("2-1".into()),
                    ..Default::default()
                },
                "limits.cpuset_cpus",
            ),
            (
                ResourceLimits {
                    cpuset_cpus: Some("a".into()),
                    ..Default::default()
                },
                "limits.cpuset_cpus",
            ),
            (
                ResourceLimits {
                    cpu_period: Some(999),
                    ..Default::default()
                },
                "limits.cpu_period",
            ),
            (
                ResourceLimits {
                    cpu_quota: Some(10),
                    ..Default::default()
                },
                "limits.cpu_quota",
            ),
            (
                ResourceLimits {
                    cpu_shares: Some(0),
                    ..Default::default()
                },
                "limits.cpu_shares",
            ),
            (
                ResourceLimits {
                    memory_reservation: Some(2 << 30),
                    ..Default::default()
                },
                "limits.memory_reservation",
            ),
            (
                ResourceLimits {
                    memory_swap: Some(1 << 20),
                    ..Default::default()
                },
                "limits.memory_swap",
            ),
            (
                ResourceLimits {
                    ulimits: vec!["nofile=10:5".into()],
                    ..Default::default()
                },
                "limits.ulimits[0]",
            ),
            (
                ResourceLimits {
                    ulimits: vec!["x=1".into()],
                    ..Default::default()
                },
                "limits.ulimits[0]",
            ),
        ];
        for (limits, field) in cases {
            let e = with(limits).validate().unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn memory_and_sizes_parse_with_units() {
        assert_eq!(parse_memory("1g").unwrap(), 1024);
        let e = parse_memory("100k").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid --memory \"100k\": a VM needs a whole number of MiB, at least 1m"
        );
        assert!(parse_memory("lots")
            .unwrap_err()
            .message
            .contains("e.g. 512m"));
        assert_eq!(parse_size("--tmpfs", "64k").unwrap(), 64 << 10);
    }
}
