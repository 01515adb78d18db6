//! Address leases of one network: box id → IPv4 address and MAC, in
//! `networks/<name>/leases.json`, changed only under the flock(2) of
//! `networks/<name>/leases.lock` (so concurrent starts, in threads or
//! processes, get distinct addresses).
//!
//! Addresses are handed out in order after the last one given (so an
//! address just released is not reused at once), skipping the gateway and
//! the subnet's network and broadcast addresses. A MAC is the one asked
//! for, else derived from the address (`02:42:` and the four bytes of the
//! address, locally administered and unicast, as Docker does), else random.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use a3s_box_core::spec::MacAddr;
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use serde::{Deserialize, Serialize};

use super::lock_exclusive;
use super::store::{NetworkRecord, NetworkStore, NETWORK_FILE};
use super::subnet::Ipv4Block;

/// The lease table in a network's directory.
pub const LEASES_FILE: &str = "leases.json";
/// The lock taken while the lease table changes.
pub const LEASE_LOCK: &str = "leases.lock";

/// One box's address on a network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lease {
    /// The box's id, as the engine gave it.
    pub box_id: String,
    /// Its address.
    pub ipv4: Ipv4Addr,
    /// Its NIC's MAC on this network.
    pub mac: MacAddr,
    /// When the lease was made (RFC 3339).
    pub created: String,
}

/// What a box asks for on a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseRequest {
    /// `--ip` (`None`: the next free address).
    pub ipv4: Option<Ipv4Addr>,
    /// `--mac-address` (`None`: derived from the address).
    pub mac: Option<MacAddr>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LeaseTable {
    /// The address handed out last: the search for a free one starts after it.
    #[serde(default)]
    last: Option<Ipv4Addr>,
    #[serde(default)]
    leases: Vec<Lease>,
}

/// The leases of one network.
#[derive(Debug, Clone)]
pub struct Ipam {
    dir: PathBuf,
    network: NetworkRecord,
    block: Ipv4Block,
}

impl Ipam {
    /// The leases of `network` in `store`.
    pub fn new(store: &NetworkStore, network: &NetworkRecord) -> Result<Self> {
        Ok(Ipam {
            dir: store.network_dir(&network.name),
            block: network.block()?,
            network: network.clone(),
        })
    }

    /// The network the leases are on.
    pub fn network(&self) -> &NetworkRecord {
        &self.network
    }

    /// Lease an address to `box_id`: the one it already has (when it asks
    /// for no other), the one asked for, or the next free one.
    ///
    /// Refused: an address outside the subnet or the gateway (Invalid), an
    /// address or MAC another box has (Conflict), a full subnet
    /// (Unavailable), a network removed meanwhile (NotFound).
    pub fn allocate(&self, box_id: &str, request: LeaseRequest) -> Result<Lease> {
        if let Some(ip) = request.ipv4 {
            self.check_requested(ip)?;
        }
        self.update(|table| {
            let mine = table.leases.iter().position(|l| l.box_id == box_id);
            if let Some(i) = mine {
                let lease = &table.leases[i];
                let same_ip = request.ipv4.is_none_or(|ip| ip == lease.ipv4);
                let same_mac = request.mac.is_none_or(|mac| mac == lease.mac);
                if same_ip && same_mac {
                    return Ok(lease.clone());
                }
                table.leases.remove(i);
            }
            let ipv4 = match request.ipv4 {
                Some(ip) => {
                    if let Some(other) = table.leases.iter().find(|l| l.ipv4 == ip) {
                        return Err(BoxError::Conflict(format!(
                            "address {ip} on network {} is in use by box {}: pick another --ip or leave it out",
                            self.network.name,
                            short(&other.box_id)
                        )));
                    }
                    ip
                }
                None => self.next_free(table)?,
            };
            let mac = match request.mac {
                Some(mac) => {
                    if let Some(other) = table.leases.iter().find(|l| l.mac == mac) {
                        return Err(BoxError::Conflict(format!(
                            "MAC address {mac} on network {} is in use by box {}",
                            self.network.name,
                            short(&other.box_id)
                        )));
                    }
                    mac
                }
                None => free_mac(table, ipv4)?,
            };
            let lease = Lease {
                box_id: box_id.to_string(),
                ipv4,
                mac,
                created: now_rfc3339(),
            };
            table.last = Some(ipv4);
            table.leases.push(lease.clone());
            Ok(lease)
        })
    }

    /// Give back `box_id`'s address; the lease it had, if any.
    pub fn release(&self, box_id: &str) -> Result<Option<Lease>> {
        self.update(|table| {
            let i = table.leases.iter().position(|l| l.box_id == box_id);
            Ok(i.map(|i| table.leases.remove(i)))
        })
    }

    /// `box_id`'s lease, if it has one.
    pub fn lease(&self, box_id: &str) -> Result<Option<Lease>> {
        Ok(self
            .read_table()?
            .leases
            .into_iter()
            .find(|l| l.box_id == box_id))
    }

    /// Every lease, in the order they were made.
    pub fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self.read_table()?.leases)
    }

    /// Drop the leases of boxes `exists` says are gone; the dropped ones.
    pub fn reconcile(&self, exists: impl Fn(&str) -> bool) -> Result<Vec<Lease>> {
        self.update(|table| {
            let (keep, gone): (Vec<Lease>, Vec<Lease>) =
                table.leases.drain(..).partition(|l| exists(&l.box_id));
            table.leases = keep;
            Ok(gone)
        })
    }

    /// Refuse an `--ip` outside the subnet's host addresses or on the
    /// gateway (Invalid).
    pub fn check_requested(&self, ip: Ipv4Addr) -> Result<()> {
        let name = &self.network.name;
        if !self.block.is_host(ip) {
            return Err(BoxError::Invalid(format!(
                "address {ip} is not a host address of network {name} ({}): pick one in the subnet",
                self.block
            )));
        }
        if ip == self.network.gateway {
            return Err(BoxError::Invalid(format!(
                "address {ip} is the gateway of network {name}: pick another"
            )));
        }
        Ok(())
    }

    fn next_free(&self, table: &LeaseTable) -> Result<Ipv4Addr> {
        let taken: HashSet<Ipv4Addr> = table.leases.iter().map(|l| l.ipv4).collect();
        let first = u32::from(self.block.network());
        let size = self.block.size();
        let start = table
            .last
            .filter(|ip| self.block.contains(*ip))
            .map_or(0, |ip| u64::from(u32::from(ip) - first) + 1);
        (0..size)
            .map(|i| Ipv4Addr::from(first + ((start + i) % size) as u32))
            .find(|ip| {
                self.block.is_host(*ip) && *ip != self.network.gateway && !taken.contains(ip)
            })
            .ok_or_else(|| {
                BoxError::Unavailable(format!(
                    "network {} has no free address left in {}",
                    self.network.name, self.block
                ))
            })
    }

    fn read_table(&self) -> Result<LeaseTable> {
        let path = self.dir.join(LEASES_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                BoxError::io(
                    format!("read {}", path.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LeaseTable::default()),
            Err(e) => Err(BoxError::io(format!("read {}", path.display()), e)),
        }
    }

    /// Run `change` on the table under the lease lock and write it back.
    fn update<T>(&self, change: impl FnOnce(&mut LeaseTable) -> Result<T>) -> Result<T> {
        let _lock = lock_exclusive(&self.dir.join(LEASE_LOCK)).map_err(|e| self.gone_or(e))?;
        // The network may have been removed (or removed and created again)
        // while we waited for the lock.
        let record = self.dir.join(NETWORK_FILE);
        let current: Option<NetworkRecord> = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        if current.is_none_or(|n| n.id != self.network.id) {
            return Err(BoxError::not_found("network", &self.network.name));
        }
        let mut table = self.read_table()?;
        let out = change(&mut table)?;
        let bytes = serde_json::to_vec_pretty(&table).map_err(|e| {
            BoxError::io(
                "encode leases",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        crate::state::write_atomic(&self.dir.join(LEASES_FILE), &bytes)?;
        Ok(out)
    }

    /// A lock that cannot be opened because the directory is gone means
    /// the network is gone.
    fn gone_or(&self, e: BoxError) -> BoxError {
        if self.dir.is_dir() {
            e
        } else {
            BoxError::not_found("network", &self.network.name)
        }
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// The MAC derived from `ip`, or a random one if another box has that.
fn free_mac(table: &LeaseTable, ip: Ipv4Addr) -> Result<MacAddr> {
    let used = |mac: MacAddr| table.leases.iter().any(|l| l.mac == mac);
    let [a, b, c, d] = ip.octets();
    let derived = MacAddr([0x02, 0x42, a, b, c, d]);
    if !used(derived) {
        return Ok(derived);
    }
    loop {
        let mac = random_mac()?;
        if !used(mac) {
            return Ok(mac);
        }
    }
}

/// A random unicast, locally administered MAC.
pub fn random_mac() -> Result<MacAddr> {
    use std::io::Read;
    let mut bytes = [0u8; 6];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| BoxError::io("read /dev/urandom", e))?;
    bytes[0] = (bytes[0] & 0xfe) | 0x02;
    Ok(MacAddr(bytes))
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
mod tests;
