//! Named networks: `$A3S_HOME/networks/<name>/network.json`, and the
//! built-in `default` network (Docker's `bridge`).
//!
//! ```text
//! networks/.store.lock          flock(2) held while networks are created or removed
//! networks/<name>/network.json  the NetworkRecord (written once, atomically)
//! networks/<name>/leases.json   address leases (see super::ipam)
//! networks/<name>/leases.lock   flock(2) held while leases change
//! ```
//!
//! Creating or removing a network happens under the store lock; removing
//! also takes the network's lease lock, so no box gets an address on a
//! network being removed (an allocation re-checks `network.json` under
//! the lease lock). Readers take no lock: files are replaced atomically.
//!
//! The `default` network is written on first use, like any other, but
//! cannot be created, removed or pruned by name.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use a3s_box_core::spec::{rules, Cidr, EgressRule, NetworkSpec, SpecError, RESERVED_NETWORK_NAMES};
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use serde::{Deserialize, Serialize};

use super::subnet::{host_routes, Ipv4Block};
use super::{ipam, lock_exclusive, networks_dir};
use crate::home::Home;

/// The built-in network boxes join unless told otherwise.
pub const DEFAULT_NETWORK: &str = "default";
/// Docker's name for the default network, accepted as a synonym.
pub const DEFAULT_NETWORK_ALIAS: &str = "bridge";
/// The one driver: a bridge (or its passt equivalent) with NAT to the host.
pub const DRIVER_BRIDGE: &str = "bridge";
/// A network's record in its directory.
pub const NETWORK_FILE: &str = "network.json";
const STORE_LOCK: &str = ".store.lock";

/// Where automatically picked subnets come from.
pub const SUBNET_POOL: Ipv4Block = block(Ipv4Addr::new(10, 89, 0, 0), 16);
/// Prefix length of an automatically picked subnet.
pub const POOL_PREFIX_LEN: u8 = 24;
/// The default network's subnet, unless the host routes it already.
pub const DEFAULT_SUBNET: Ipv4Block = block(Ipv4Addr::new(10, 88, 0, 0), 16);
/// Shortest and longest prefix of a network's subnet: a /30 holds the
/// gateway and one box.
pub const SUBNET_PREFIX_RANGE: (u8, u8) = (8, 30);

const fn block(addr: Ipv4Addr, prefix_len: u8) -> Ipv4Block {
    match Ipv4Block::from_octets(addr.octets(), prefix_len) {
        Some(b) => b,
        None => panic!("invalid constant block"),
    }
}

/// Blocks no network may overlap: "this network", loopback, link-local,
/// multicast and reserved.
const FORBIDDEN: [(Ipv4Addr, u8, &str); 4] = [
    (Ipv4Addr::new(0, 0, 0, 0), 8, "\"this network\""),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(224, 0, 0, 0), 3, "multicast and reserved"),
];

/// A network as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkRecord {
    /// 64-hex id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Always [`DRIVER_BRIDGE`].
    pub driver: String,
    /// The IPv4 subnet boxes get addresses in.
    pub subnet: Cidr,
    /// The network's own address in the subnet: boxes' default route,
    /// DNS server and `host-gateway`.
    pub gateway: Ipv4Addr,
    /// `--internal`: no egress beyond the network.
    #[serde(default)]
    pub internal: bool,
    /// `-l k=v`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--egress-allow` rules every box on the network gets.
    #[serde(default)]
    pub egress: Vec<EgressRule>,
    /// When it was created (RFC 3339).
    pub created: String,
}

impl NetworkRecord {
    /// The 12-hex short id.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Whether this is the built-in default network.
    pub fn is_default(&self) -> bool {
        self.name == DEFAULT_NETWORK
    }

    /// The subnet as an IPv4 block.
    pub fn block(&self) -> Result<Ipv4Block> {
        Ipv4Block::from_cidr(&self.subnet).ok_or_else(|| {
            BoxError::Invalid(format!(
                "network {}: subnet {} is not IPv4",
                self.name, self.subnet
            ))
        })
    }

    /// The address `host-gateway` stands for on this network: the
    /// uplink's gateway, which pasta maps to the host's loopback
    /// (`dataplane::wire::HOST_GATEWAY`); none on an `--internal` network.
    /// (The engine may turn it off everywhere: `NetworkSettings::host_gateway`.)
    pub fn host_gateway(&self) -> Option<Ipv4Addr> {
        (!self.internal).then_some(super::dataplane::wire::HOST_GATEWAY)
    }
}

/// What `network create` asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkCreate {
    /// The name.
    pub name: String,
    /// `--subnet` (`None`: a free /24 of [`SUBNET_POOL`]).
    pub subnet: Option<Cidr>,
    /// `--gateway` (`None`: the subnet's first host address).
    pub gateway: Option<Ipv4Addr>,
    /// `--internal`.
    pub internal: bool,
    /// `-l k=v`.
    pub labels: BTreeMap<String, String>,
    /// `--egress-allow`.
    pub egress: Vec<EgressRule>,
}

/// The store of networks.
#[derive(Debug, Clone)]
pub struct NetworkStore {
    dir: PathBuf,
    pool: Ipv4Block,
    routes: Option<Vec<Ipv4Block>>,
}

impl NetworkStore {
    /// The networks of `home`.
    pub fn new(home: &Home) -> Self {
        Self::at(networks_dir(home))
    }

    /// The networks in `dir`.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        NetworkStore {
            dir: dir.into(),
            pool: SUBNET_POOL,
            routes: None,
        }
    }

    /// Pick subnets from `pool` instead of [`SUBNET_POOL`].
    pub fn with_pool(mut self, pool: Ipv4Block) -> Self {
        self.pool = pool;
        self
    }

    /// Take `routes` as the host's routes instead of reading them.
    pub fn with_host_routes(mut self, routes: Vec<Ipv4Block>) -> Self {
        self.routes = Some(routes);
        self
    }

    /// The directory of all networks.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory of the network `name`.
    pub fn network_dir(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn store_lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>> {
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| BoxError::io(format!("create {}", self.dir.display()), e))?;
        lock_exclusive(&self.dir.join(STORE_LOCK))
    }

    fn host_routes(&self) -> Result<Vec<Ipv4Block>> {
        match &self.routes {
            Some(routes) => Ok(routes.clone()),
            None => host_routes(),
        }
    }

    /// Create a network. Refused: a reserved name or one in use, a subnet
    /// overlapping another network's, a gateway outside the subnet.
    pub fn create(&self, request: NetworkCreate) -> Result<NetworkRecord> {
        let (subnet, gateway) = check_create(&request)?;
        let _lock = self.store_lock()?;
        let existing = self.load_all()?;
        if existing.iter().any(|n| n.name == request.name) {
            return Err(BoxError::Conflict(format!(
                "network with name {} already exists",
                request.name
            )));
        }
        let subnet = match subnet {
            Some(subnet) => {
                if let Some(other) = overlapping(&existing, subnet) {
                    return Err(BoxError::Conflict(format!(
                        "subnet {subnet} overlaps network {} ({}): give another --subnet",
                        other.name, other.subnet
                    )));
                }
                subnet
            }
            None => self.free_subnet(&existing)?,
        };
        let gateway = gateway.unwrap_or(subnet.first_host());
        let record = NetworkRecord {
            id: new_id()?,
            name: request.name,
            driver: DRIVER_BRIDGE.into(),
            subnet: subnet.to_cidr(),
            gateway,
            internal: request.internal,
            labels: request.labels,
            egress: request.egress,
            created: now_rfc3339(),
        };
        self.write_new(&record)?;
        Ok(record)
    }

    /// The built-in default network, written on first use.
    pub fn default_network(&self) -> Result<NetworkRecord> {
        if let Some(record) = self.read(DEFAULT_NETWORK)? {
            return Ok(record);
        }
        let _lock = self.store_lock()?;
        if let Some(record) = self.read(DEFAULT_NETWORK)? {
            return Ok(record);
        }
        let existing = self.load_all()?;
        let routed = self.host_routes()?;
        let subnet = if overlapping(&existing, DEFAULT_SUBNET).is_none()
            && !routed.iter().any(|r| r.overlaps(DEFAULT_SUBNET))
        {
            DEFAULT_SUBNET
        } else {
            self.free_subnet(&existing)?
        };
        let record = NetworkRecord {
            id: new_id()?,
            name: DEFAULT_NETWORK.into(),
            driver: DRIVER_BRIDGE.into(),
            subnet: subnet.to_cidr(),
            gateway: subnet.first_host(),
            internal: false,
            labels: BTreeMap::new(),
            egress: Vec::new(),
            created: now_rfc3339(),
        };
        self.write_new(&record)?;
        Ok(record)
    }

    /// The network named `key`, or whose id is or starts with `key`
    /// (`bridge` is the default network).
    pub fn get(&self, key: &str) -> Result<NetworkRecord> {
        if key == DEFAULT_NETWORK || key == DEFAULT_NETWORK_ALIAS {
            return self.default_network();
        }
        if key.is_empty() {
            return Err(BoxError::not_found("network", key));
        }
        if !key.contains('/') && !key.starts_with('.') {
            if let Some(record) = self.read(key)? {
                return Ok(record);
            }
        }
        let all = self.list()?;
        if let Some(record) = all.iter().find(|n| n.id == key) {
            return Ok(record.clone());
        }
        let matches: Vec<&NetworkRecord> = all.iter().filter(|n| n.id.starts_with(key)).collect();
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(BoxError::not_found("network", key)),
            many => Err(BoxError::Invalid(format!(
                "network {key} is ambiguous ({} networks have an id starting with it): give more of the id",
                many.len()
            ))),
        }
    }

    /// Every network, the default one first, then by name.
    pub fn list(&self) -> Result<Vec<NetworkRecord>> {
        let default = self.default_network()?;
        let mut all = self.load_all()?;
        all.retain(|n| !n.is_default());
        all.insert(0, default);
        Ok(all)
    }

    /// Remove the network `key`, refused while `users` (the engine's view
    /// of which boxes use the network) names any box. Its leases go with it.
    pub fn remove(
        &self,
        key: &str,
        users: impl Fn(&NetworkRecord) -> Vec<String>,
    ) -> Result<NetworkRecord> {
        let record = self.get(key)?;
        if record.is_default() {
            return Err(BoxError::Invalid(format!(
                "{} is the built-in network and cannot be removed",
                record.name
            )));
        }
        let _lock = self.store_lock()?;
        self.remove_locked(&record, &users)?;
        Ok(record)
    }

    /// Remove every network `select` picks that no box uses (the default
    /// network stays); the removed ones.
    pub fn prune(
        &self,
        select: impl Fn(&NetworkRecord) -> bool,
        users: impl Fn(&NetworkRecord) -> Vec<String>,
    ) -> Result<Vec<NetworkRecord>> {
        let _lock = self.store_lock()?;
        let mut removed = Vec::new();
        for record in self.load_all()? {
            if record.is_default() || !select(&record) {
                continue;
            }
            match self.remove_locked(&record, &users) {
                Ok(()) => removed.push(record),
                Err(e) if e.kind() == a3s_box_core::ErrorKind::Conflict => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    fn remove_locked(
        &self,
        record: &NetworkRecord,
        users: &impl Fn(&NetworkRecord) -> Vec<String>,
    ) -> Result<()> {
        let dir = self.network_dir(&record.name);
        let _leases = lock_exclusive(&dir.join(ipam::LEASE_LOCK))?;
        // Still the same network (not removed and created again meanwhile)?
        match self.read(&record.name)? {
            Some(now) if now.id == record.id => {}
            _ => return Err(BoxError::not_found("network", &record.name)),
        }
        let using = users(record);
        if !using.is_empty() {
            return Err(BoxError::Conflict(format!(
                "network {} is in use by {}: disconnect or remove {} first",
                record.name,
                using.join(", "),
                if using.len() == 1 { "it" } else { "them" }
            )));
        }
        std::fs::remove_dir_all(&dir)
            .map_err(|e| BoxError::io(format!("remove {}", dir.display()), e))
    }

    /// A free subnet of the pool: overlapping no network and no host route.
    fn free_subnet(&self, existing: &[NetworkRecord]) -> Result<Ipv4Block> {
        let routed = self.host_routes()?;
        self.pool
            .subnets(POOL_PREFIX_LEN.max(self.pool.prefix_len()))
            .find(|s| overlapping(existing, *s).is_none() && !routed.iter().any(|r| r.overlaps(*s)))
            .ok_or_else(|| {
                BoxError::Unavailable(format!(
                    "no free /{POOL_PREFIX_LEN} subnet is left in {}: remove unused networks (network prune) or give --subnet",
                    self.pool
                ))
            })
    }

    fn read(&self, name: &str) -> Result<Option<NetworkRecord>> {
        let path = self.network_dir(name).join(NETWORK_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                BoxError::io(
                    format!("read {}", path.display()),
                    std::io::Error::new(std::io::ErrorKind::InvalidData, e),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(BoxError::io(format!("read {}", path.display()), e)),
        }
    }

    fn write_new(&self, record: &NetworkRecord) -> Result<()> {
        let dir = self.network_dir(&record.name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| BoxError::io(format!("create {}", dir.display()), e))?;
        let bytes = serde_json::to_vec_pretty(record).map_err(|e| {
            BoxError::io(
                "encode network record",
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
        crate::state::write_atomic(&dir.join(NETWORK_FILE), &bytes).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&dir);
        })
    }

    /// Every readable record, by name; unreadable ones are skipped with a
    /// warning.
    fn load_all(&self) -> Result<Vec<NetworkRecord>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(BoxError::io(format!("read {}", self.dir.display()), e)),
        };
        let mut all = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            match self.read(&name) {
                Ok(Some(record)) => all.push(record),
                Ok(None) => {}
                Err(e) => tracing::warn!("skipping network {name}: {e}"),
            }
        }
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }
}

fn new_id() -> Result<String> {
    crate::manager::new_box_id().map_err(|e| BoxError::io("read /dev/urandom", e))
}

fn overlapping(existing: &[NetworkRecord], subnet: Ipv4Block) -> Option<&NetworkRecord> {
    existing
        .iter()
        .find(|n| n.block().is_ok_and(|b| b.overlaps(subnet)))
}

/// The checks that need no store: the name, the subnet and gateway, the
/// labels and egress rules.
fn check_create(request: &NetworkCreate) -> Result<(Option<Ipv4Block>, Option<Ipv4Addr>)> {
    rules::check_name("name", "network", &request.name)?;
    if RESERVED_NETWORK_NAMES.contains(&request.name.as_str()) {
        return Err(BoxError::Invalid(format!(
            "{} is a pre-defined network mode, not a name a network can take: pick another name",
            request.name
        )));
    }
    let subnet = match request.subnet {
        None => None,
        Some(cidr) => Some(check_subnet(&cidr)?),
    };
    if let Some(gateway) = request.gateway {
        let Some(subnet) = subnet else {
            return Err(BoxError::Invalid(
                "--gateway needs --subnet: give the subnet the gateway is in".into(),
            ));
        };
        if !subnet.is_host(gateway) {
            return Err(BoxError::Invalid(format!(
                "gateway {gateway} is not a host address of subnet {subnet}"
            )));
        }
    }
    for key in request.labels.keys() {
        if key.is_empty() {
            return Err(BoxError::Invalid(
                "a label has a key: use -l KEY=VALUE".into(),
            ));
        }
    }
    let spec = NetworkSpec {
        egress: request.egress.clone(),
        ..NetworkSpec::default()
    };
    spec.validate()
        .map_err(|e: SpecError| e.with_field("--egress-allow"))?;
    Ok((subnet, request.gateway))
}

fn check_subnet(cidr: &Cidr) -> Result<Ipv4Block> {
    let IpAddr::V4(_) = cidr.addr else {
        return Err(BoxError::Invalid(format!(
            "subnet {cidr}: IPv6 networks are not supported yet: give an IPv4 subnet"
        )));
    };
    let subnet = Ipv4Block::from_cidr(cidr)
        .ok_or_else(|| BoxError::Invalid(format!("subnet {cidr} is not an IPv4 block")))?;
    let (shortest, longest) = SUBNET_PREFIX_RANGE;
    if !(shortest..=longest).contains(&subnet.prefix_len()) {
        return Err(BoxError::Invalid(format!(
            "subnet {cidr}: the prefix length is {shortest} to {longest} (a /{longest} holds the gateway and one box)"
        )));
    }
    for (addr, len, what) in FORBIDDEN {
        if let Some(bad) = Ipv4Block::containing(addr, len).filter(|b| b.overlaps(subnet)) {
            return Err(BoxError::Invalid(format!(
                "subnet {cidr} overlaps the {what} block {bad}: pick a private subnet such as 10.90.0.0/24"
            )));
        }
    }
    Ok(subnet)
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
