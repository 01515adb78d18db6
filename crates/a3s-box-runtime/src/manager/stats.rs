//! `stats`: what each running box uses, as its supervisor reports it. CPU
//! and block I/O are the VM's (its QEMU process: every vCPU and disk
//! request goes through it), read twice over the interval for a rate;
//! memory in use and the process count come from the guest, since the VM's
//! RSS says little about what its workload uses. A pod's containers report
//! their pod's VM.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::BoxManager;
use crate::sandbox::rpc::{Reply, Request, SandboxStats};
use crate::state::BoxRecord;

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

impl BoxManager {
    async fn sample(&self, record: &BoxRecord) -> Option<SandboxStats> {
        let mut client = self.client(record).await.ok()?;
        match client.call(Request::Stats).await {
            Ok(Reply::Stats(s)) => Some(s),
            _ => None,
        }
    }

    /// Sample `records` (running boxes) over `interval`. A box that stops
    /// meanwhile is left out.
    pub async fn stats(&self, records: &[BoxRecord], interval: Duration) -> Vec<BoxStats> {
        let start = Instant::now();
        let mut before = Vec::with_capacity(records.len());
        for record in records {
            before.push(self.sample(record).await);
        }
        tokio::time::sleep(interval.saturating_sub(start.elapsed())).await;
        let secs = start.elapsed().as_secs_f64();
        let mut out = Vec::new();
        for (record, first) in records.iter().zip(before) {
            let Some(first) = first else { continue };
            let Some(last) = self.sample(record).await else {
                continue;
            };
            let limit = match self.pod_of(record) {
                Ok(Some(pod)) => pod.config.sandbox.resources.memory_mib,
                _ => record.config.spec.sandbox.resources.memory_mib,
            };
            let limit = u64::from(limit) * 1024 * 1024;
            let usage = first
                .mem_total_bytes
                .saturating_sub(first.mem_available_bytes);
            let ticks = last.cpu_ticks.saturating_sub(first.cpu_ticks) as f64;
            let per_second = if last.ticks_per_second > 0.0 {
                last.ticks_per_second
            } else {
                100.0
            };
            out.push(BoxStats {
                id: record.config.id.clone(),
                name: record.config.name.clone(),
                cpu_percent: ticks / per_second / secs * 100.0,
                mem_usage_bytes: usage,
                mem_limit_bytes: limit,
                mem_percent: if limit > 0 {
                    usage as f64 * 100.0 / limit as f64
                } else {
                    0.0
                },
                net_rx_bytes: 0,
                net_tx_bytes: 0,
                block_read_bytes: last.block_read_bytes,
                block_write_bytes: last.block_write_bytes,
                pids: first.pids,
            });
        }
        out
    }
}
