//! `stats`: what each running box uses. CPU and block I/O are measured on
//! the host (the VM's QEMU process: every vCPU and every disk request goes
//! through it); memory in use and the process count come from the guest,
//! since the VM's RSS says little about what its workload uses.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::BoxManager;
use crate::state::BoxRecord;
use crate::vmm::qemu::process::{cpu_ticks, ticks_per_second};

/// One box's usage over a sampling interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BoxStats {
    /// Full id.
    pub id: String,
    /// Name.
    pub name: String,
    /// CPU time of the VM over the interval, in % of one host CPU.
    pub cpu_percent: f64,
    /// Memory in use in the guest (total − available).
    pub mem_usage_bytes: u64,
    /// The box's memory.
    pub mem_limit_bytes: u64,
    /// Usage / limit, in %.
    pub mem_percent: f64,
    /// Bytes received on the network (boxes have no network device yet).
    pub net_rx_bytes: u64,
    /// Bytes sent on the network.
    pub net_tx_bytes: u64,
    /// Bytes the VM read from its disks.
    pub block_read_bytes: u64,
    /// Bytes the VM wrote to its disks.
    pub block_write_bytes: u64,
    /// Processes in the box.
    pub pids: u64,
}

/// `read_bytes` and `write_bytes` of /proc/PID/io (storage I/O of a process).
fn block_io(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    parse_proc_io(&text)
}

fn parse_proc_io(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    (field("read_bytes:"), field("write_bytes:"))
}

impl BoxManager {
    /// Sample `records` (running boxes) over `interval`. A box that stops
    /// meanwhile is left out.
    pub async fn stats(&self, records: &[BoxRecord], interval: Duration) -> Vec<BoxStats> {
        let start = Instant::now();
        let before: Vec<Option<u64>> = records
            .iter()
            .map(|r| r.state.vm_pid.and_then(cpu_ticks))
            .collect();
        let mut guest = Vec::with_capacity(records.len());
        for record in records {
            guest.push(self.guest_stats(record).await.ok());
        }
        tokio::time::sleep(interval.saturating_sub(start.elapsed())).await;
        let secs = start.elapsed().as_secs_f64();
        let mut out = Vec::new();
        for ((record, t0), guest) in records.iter().zip(before).zip(guest) {
            let (Some(pid), Some(t0), Some(guest)) = (record.state.vm_pid, t0, guest) else {
                continue;
            };
            let Some(t1) = cpu_ticks(pid) else { continue };
            let limit = u64::from(record.config.spec.sandbox.resources.memory_mib) * 1024 * 1024;
            let usage = guest
                .mem_total_bytes
                .saturating_sub(guest.mem_available_bytes);
            let (read, write) = block_io(pid);
            out.push(BoxStats {
                id: record.config.id.clone(),
                name: record.config.name.clone(),
                cpu_percent: t1.saturating_sub(t0) as f64 / ticks_per_second() / secs * 100.0,
                mem_usage_bytes: usage,
                mem_limit_bytes: limit,
                mem_percent: if limit > 0 {
                    usage as f64 * 100.0 / limit as f64
                } else {
                    0.0
                },
                net_rx_bytes: 0,
                net_tx_bytes: 0,
                block_read_bytes: read,
                block_write_bytes: write,
                pids: guest.pids,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_io_fields_are_read_by_name() {
        let text =
            "rchar: 10\nwchar: 20\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_proc_io(text), (4096, 8192));
        assert_eq!(parse_proc_io(""), (0, 0));
    }
}
