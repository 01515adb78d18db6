//! What the host can give a VM: available memory and the CPUs this process
//! may run on, checked before a VM is started so that "too big" is said in
//! numbers instead of ending in a hypervisor error.

use a3s_box_core::BoxError;

/// What the host offers now (kept apart from the check so it is testable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostResources {
    /// `MemAvailable` of /proc/meminfo, in bytes, when readable.
    pub memory_available_bytes: Option<u64>,
    /// CPUs in this process's affinity mask, when known.
    pub cpus: Option<usize>,
}

impl HostResources {
    /// Read them from this host.
    pub fn probe() -> Self {
        HostResources {
            memory_available_bytes: std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|text| mem_available(&text)),
            cpus: nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0))
                .ok()
                .map(|set| {
                    (0..nix::sched::CpuSet::count())
                        .filter(|&cpu| set.is_set(cpu).unwrap_or(false))
                        .count()
                }),
        }
    }

    /// Refuse a VM of `vcpus` CPUs and `memory_mib` MiB this host cannot
    /// give (`Unavailable`, with the numbers). Unknown figures pass.
    pub fn check(&self, vcpus: u8, memory_mib: u32) -> Result<(), BoxError> {
        if let Some(available) = self.memory_available_bytes {
            if u64::from(memory_mib) << 20 > available {
                return Err(BoxError::Unavailable(format!(
                    "--memory {}: the host has {:.1} GiB available",
                    memory_flag(memory_mib),
                    available as f64 / (1u64 << 30) as f64
                )));
            }
        }
        if let Some(cpus) = self.cpus {
            if usize::from(vcpus) > cpus {
                return Err(BoxError::Unavailable(format!(
                    "--cpus {vcpus}: this host gives a3s-box {cpus} CPU{}",
                    if cpus == 1 { "" } else { "s" }
                )));
            }
        }
        Ok(())
    }
}

/// `MemAvailable` in bytes from the text of /proc/meminfo.
fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// A memory size the way `--memory` takes it.
fn memory_flag(mib: u32) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}g", mib / 1024)
    } else {
        format!("{mib}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_much_memory_or_too_many_cpus_is_said_in_numbers() {
        let host = HostResources {
            memory_available_bytes: Some(21_474_836_480 + (429 << 20)),
            cpus: Some(2),
        };
        host.check(2, 512).unwrap();
        let err = host.check(1, 100 * 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--memory 100g: the host has 20.4 GiB available"
        );
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Unavailable);
        assert!(host
            .check(1, 30_000)
            .unwrap_err()
            .to_string()
            .starts_with("--memory 30000m:"));
        let err = host.check(4, 256).unwrap_err();
        assert_eq!(err.to_string(), "--cpus 4: this host gives a3s-box 2 CPUs");
        HostResources::default().check(64, u32::MAX).unwrap();
    }

    #[test]
    fn meminfo_and_affinity_are_read() {
        let text = "MemTotal:       24567000 kB\nMemFree: 1 kB\nMemAvailable:   23946332 kB\n";
        assert_eq!(mem_available(text), Some(23_946_332 * 1024));
        assert_eq!(mem_available("MemTotal: 1 kB\n"), None);
        let host = HostResources::probe();
        assert!(host.memory_available_bytes.unwrap() > 0);
        assert!(host.cpus.unwrap() >= 1);
    }
}
