//! The DNS server's live tables ([`Directory`]): the boxes of each network
//! (name, aliases, id → address), and what each client (a box, by source
//! address) may see and ask. The engine or holder updates them as boxes
//! start, stop, connect, disconnect and are renamed; queries see every
//! change at once.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use a3s_box_core::spec::NetworkSpec;

use super::resolv::DNS_PORT;
use crate::network::egress::policy::normalize_name;
use crate::network::egress::{EgressPolicy, NamePolicy};
use crate::network::store::NetworkRecord;

/// Length of a short box id, which resolves like a name.
const SHORT_ID_LEN: usize = 12;

/// One box on one network.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostEntry {
    /// The box's id (its first 12 characters resolve too).
    pub box_id: String,
    /// The box's name.
    pub name: String,
    /// `--network-alias`es on this network.
    pub aliases: Vec<String>,
    /// Its address on this network.
    pub ipv4: Ipv4Addr,
}

impl HostEntry {
    /// Whether `name` (normalized) names this box on `network`: its name,
    /// an alias or its short or full id, bare or followed by
    /// `.<network>`.
    fn answers(&self, network: &str, name: &str) -> bool {
        let qualified = name.strip_suffix(network).and_then(|n| n.strip_suffix('.'));
        [Some(name), qualified]
            .into_iter()
            .flatten()
            .any(|n| self.is_called(n))
    }

    fn is_called(&self, name: &str) -> bool {
        let id = self.box_id.to_ascii_lowercase();
        let short = &id[..id.len().min(SHORT_ID_LEN)];
        name == self.name.to_ascii_lowercase()
            || self.aliases.iter().any(|a| name == a.to_ascii_lowercase())
            || (name.len() >= SHORT_ID_LEN && (name == short || name == id))
    }
}

/// What one client of the DNS server sees and may ask.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientPolicy {
    /// The box asking (`None`: unknown), passed to the observer.
    pub box_id: Option<String>,
    /// The networks whose boxes it resolves.
    pub networks: Vec<String>,
    /// Its egress allow-list (`None`: every name may be resolved). Names
    /// it does not allow get NXDOMAIN and are reported as denied.
    pub names: Option<Arc<NamePolicy>>,
    /// Where other names are forwarded (`--dns`); `None`: the server's
    /// upstreams; an empty list: nowhere (an `--internal` network), so
    /// other names get NXDOMAIN.
    pub upstreams: Option<Vec<SocketAddr>>,
}

impl ClientPolicy {
    /// The policy of a box (Docker's rules): it resolves the boxes of
    /// `networks` (those it joins); names are filtered by `egress` (see
    /// `egress::box_policy`); other names go to its `--dns` servers, else
    /// the server's upstreams, or nowhere when every network it joins is
    /// `--internal`.
    pub fn for_box(
        box_id: &str,
        spec: &NetworkSpec,
        networks: &[NetworkRecord],
        egress: Option<&EgressPolicy>,
    ) -> Self {
        let upstreams = if !networks.is_empty() && networks.iter().all(|n| n.internal) {
            Some(Vec::new())
        } else if !spec.dns.servers.is_empty() {
            Some(
                spec.dns
                    .servers
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, DNS_PORT))
                    .collect(),
            )
        } else {
            None
        };
        ClientPolicy {
            box_id: Some(box_id.to_string()),
            networks: networks.iter().map(|n| n.name.clone()).collect(),
            names: egress.map(|e| Arc::new(e.names.clone())),
            upstreams,
        }
    }
}

#[derive(Debug, Default)]
struct Tables {
    /// (network, box id) → entry.
    hosts: BTreeMap<(String, String), HostEntry>,
    clients: HashMap<IpAddr, Arc<ClientPolicy>>,
}

/// The live name and client tables, shared by the server and its owner.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    tables: Arc<RwLock<Tables>>,
}

impl Directory {
    /// An empty directory.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Tables> {
        self.tables.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Tables> {
        self.tables.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Put `entry` on `network` (replacing the box's entry there).
    pub fn add_host(&self, network: &str, entry: HostEntry) {
        self.write()
            .hosts
            .insert((network.to_string(), entry.box_id.clone()), entry);
    }

    /// Take the box off `network` (`network disconnect`); whether it was on.
    pub fn remove_host(&self, network: &str, box_id: &str) -> bool {
        self.write()
            .hosts
            .remove(&(network.to_string(), box_id.to_string()))
            .is_some()
    }

    /// Take the box off every network (it stopped or was removed).
    pub fn remove_box(&self, box_id: &str) {
        self.write().hosts.retain(|(_, id), _| id != box_id);
    }

    /// The box is now called `name` on every network.
    pub fn rename(&self, box_id: &str, name: &str) {
        for ((_, id), entry) in self.write().hosts.iter_mut() {
            if id == box_id {
                entry.name = name.to_string();
            }
        }
    }

    /// The entries of `network`.
    pub fn hosts(&self, network: &str) -> Vec<HostEntry> {
        self.read()
            .hosts
            .iter()
            .filter(|((net, _), _)| net == network)
            .map(|(_, e)| e.clone())
            .collect()
    }

    /// The addresses `name` has on `networks`, in the order of the
    /// networks, without repeats (empty: no box has that name there).
    pub fn lookup(&self, networks: &[String], name: &str) -> Vec<Ipv4Addr> {
        let name = normalize_name(name);
        let tables = self.read();
        let mut found = Vec::new();
        for network in networks {
            let network = network.to_ascii_lowercase();
            for ((net, _), entry) in &tables.hosts {
                if net.eq_ignore_ascii_case(&network)
                    && entry.answers(&network, &name)
                    && !found.contains(&entry.ipv4)
                {
                    found.push(entry.ipv4);
                }
            }
        }
        found
    }

    /// The name of the box with `ip` on one of `networks`.
    pub fn reverse(&self, networks: &[String], ip: Ipv4Addr) -> Option<String> {
        let tables = self.read();
        networks.iter().find_map(|network| {
            tables
                .hosts
                .iter()
                .find(|((net, _), e)| net == network && e.ipv4 == ip)
                .map(|(_, e)| e.name.clone())
        })
    }

    /// Mirror the boxes of the home's other networks: every entry not on
    /// `own` is replaced by `foreign` (network → its boxes), and each
    /// client resolves, besides `own` (when it did), the foreign networks
    /// its own box is on. A box on several networks asks only its first
    /// network's server (its `resolv.conf` names one), which so answers
    /// for all of them; a box on `own` alone sees nothing more.
    pub fn mirror(&self, own: &str, foreign: BTreeMap<String, Vec<HostEntry>>) {
        let mut tables = self.write();
        tables.hosts.retain(|(net, _), _| net == own);
        for (network, entries) in &foreign {
            for entry in entries {
                tables
                    .hosts
                    .insert((network.clone(), entry.box_id.clone()), entry.clone());
            }
        }
        for policy in tables.clients.values_mut() {
            let Some(id) = policy.box_id.clone() else {
                continue;
            };
            let mut networks: Vec<String> = policy
                .networks
                .iter()
                .filter(|n| n.as_str() == own)
                .cloned()
                .collect();
            networks.extend(
                foreign
                    .iter()
                    .filter(|(_, entries)| entries.iter().any(|e| e.box_id == id))
                    .map(|(network, _)| network.clone()),
            );
            if networks != policy.networks {
                Arc::make_mut(policy).networks = networks;
            }
        }
    }

    /// Queries from `addr` are the box `policy` describes.
    pub fn set_client(&self, addr: IpAddr, policy: ClientPolicy) {
        self.write().clients.insert(addr, Arc::new(policy));
    }

    /// Forget the client at `addr`.
    pub fn remove_client(&self, addr: IpAddr) {
        self.write().clients.remove(&addr);
    }

    /// The policy of the client at `addr`, if it is known.
    pub fn client(&self, addr: IpAddr) -> Option<Arc<ClientPolicy>> {
        self.read().clients.get(&addr).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_on_several_networks_resolves_them_all_from_its_first() {
        let d = Directory::new();
        d.add_host("a", entry("x1", "x", &[], [10, 1, 0, 2]));
        d.add_host("a", entry("y1", "y", &[], [10, 1, 0, 3]));
        let client = |id: &str| ClientPolicy {
            box_id: Some(id.into()),
            networks: vec!["a".into()],
            ..ClientPolicy::default()
        };
        let x_ip: IpAddr = Ipv4Addr::new(10, 1, 0, 2).into();
        let y_ip: IpAddr = Ipv4Addr::new(10, 1, 0, 3).into();
        d.set_client(x_ip, client("x1"));
        d.set_client(y_ip, client("y1"));
        // x is also on b (its helper's file says so), where z lives.
        let b = vec![
            entry("x1", "x", &[], [10, 2, 0, 2]),
            entry("z1", "z", &["zed"], [10, 2, 0, 3]),
        ];
        d.mirror("a", BTreeMap::from([("b".to_string(), b)]));
        let x = d.client(x_ip).unwrap();
        assert_eq!(x.networks, ["a", "b"]);
        assert_eq!(d.lookup(&x.networks, "zed"), [Ipv4Addr::new(10, 2, 0, 3)]);
        let y = d.client(y_ip).unwrap();
        assert_eq!(y.networks, ["a"], "y is not on b");
        assert!(d.lookup(&y.networks, "z").is_empty());
        // x left b: z is gone for x too.
        d.mirror(
            "a",
            BTreeMap::from([("b".to_string(), vec![entry("z1", "z", &[], [10, 2, 0, 3])])]),
        );
        let x = d.client(x_ip).unwrap();
        assert_eq!(x.networks, ["a"]);
        assert!(d.lookup(&x.networks, "z").is_empty());
        assert_eq!(d.hosts("a").len(), 2, "the own network's entries stay");
    }

    fn entry(id: &str, name: &str, aliases: &[&str], ip: [u8; 4]) -> HostEntry {
        HostEntry {
            box_id: id.into(),
            name: name.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            ipv4: Ipv4Addr::from(ip),
        }
    }

    const ID_A: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const ID_B: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    fn nets(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn names_aliases_and_ids_resolve_on_shared_networks_only() {
        let dir = Directory::new();
        dir.add_host("front", entry(ID_A, "web", &["www"], [10, 89, 0, 2]));
        dir.add_host("back", entry(ID_A, "web", &[], [10, 89, 1, 2]));
        dir.add_host("back", entry(ID_B, "db", &["postgres"], [10, 89, 1, 3]));
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let front = nets(&["front"]);
        let back = nets(&["back"]);
        assert_eq!(dir.lookup(&front, "web"), [ip("10.89.0.2")]);
        assert_eq!(dir.lookup(&front, "WWW."), [ip("10.89.0.2")]);
        assert_eq!(dir.lookup(&front, "web.front"), [ip("10.89.0.2")]);
        assert_eq!(dir.lookup(&front, "web.back"), Vec::<Ipv4Addr>::new());
        assert_eq!(dir.lookup(&front, &ID_A[..12]), [ip("10.89.0.2")]);
        assert_eq!(dir.lookup(&front, ID_A), [ip("10.89.0.2")]);
        assert!(dir.lookup(&front, &ID_A[..6]).is_empty(), "too short an id");
        assert!(dir.lookup(&front, "db").is_empty(), "not on front");
        assert_eq!(dir.lookup(&back, "postgres"), [ip("10.89.1.3")]);
        assert_eq!(
            dir.lookup(&nets(&["front", "back"]), "web"),
            [ip("10.89.0.2"), ip("10.89.1.2")]
        );
        assert_eq!(dir.reverse(&back, ip("10.89.1.3")).as_deref(), Some("db"));
        assert_eq!(dir.reverse(&front, ip("10.89.1.3")), None);
        assert_eq!(dir.hosts("back").len(), 2);
    }

    #[test]
    fn changes_show_at_once() {
        let dir = Directory::new();
        dir.add_host("n", entry(ID_A, "web", &[], [10, 0, 0, 2]));
        let n = nets(&["n"]);
        dir.rename(ID_A, "site");
        assert!(dir.lookup(&n, "web").is_empty());
        assert_eq!(dir.lookup(&n, "site").len(), 1);
        dir.add_host("n", entry(ID_A, "site", &["x"], [10, 0, 0, 9]));
        assert_eq!(dir.lookup(&n, "x"), [Ipv4Addr::new(10, 0, 0, 9)]);
        assert!(dir.remove_host("n", ID_A));
        assert!(!dir.remove_host("n", ID_A));
        assert!(dir.lookup(&n, "site").is_empty());
        dir.add_host("n", entry(ID_A, "a", &[], [10, 0, 0, 2]));
        dir.add_host("m", entry(ID_A, "a", &[], [10, 0, 1, 2]));
        dir.remove_box(ID_A);
        assert!(dir.lookup(&nets(&["n", "m"]), "a").is_empty());
    }

    fn record(name: &str, internal: bool, egress: &[&str]) -> NetworkRecord {
        NetworkRecord {
            id: "f".repeat(64),
            name: name.into(),
            driver: "bridge".into(),
            subnet: "10.89.0.0/24".parse().unwrap(),
            gateway: Ipv4Addr::new(10, 89, 0, 1),
            internal,
            labels: Default::default(),
            egress: egress.iter().map(|r| r.parse().unwrap()).collect(),
            created: String::new(),
        }
    }

    #[test]
    fn a_boxs_policy_follows_its_networks_dns_and_rules() {
        use crate::network::egress::box_policy;
        let mut spec = NetworkSpec::default();
        let gw: IpAddr = "10.89.0.1".parse().unwrap();
        let open = record("open", false, &[]);
        let closed = record("closed", true, &["db.internal:5432"]);
        assert!(box_policy(&spec, std::slice::from_ref(&open), gw).is_none());

        let p = ClientPolicy::for_box(ID_A, &spec, std::slice::from_ref(&open), None);
        assert_eq!(p.networks, ["open"]);
        assert_eq!(p.upstreams, None, "the server's upstreams");
        assert!(p.names.is_none());

        let p = ClientPolicy::for_box(ID_A, &spec, std::slice::from_ref(&closed), None);
        assert_eq!(p.upstreams, Some(vec![]), "internal only: no forwarding");
        let both = [closed.clone(), open.clone()];
        assert_eq!(
            ClientPolicy::for_box(ID_A, &spec, &both, None).upstreams,
            None
        );

        spec.dns.servers = vec!["192.0.2.53".parse().unwrap()];
        spec.egress = vec!["api.example.com:443".parse().unwrap()];
        spec.extra_hosts = vec![
            "db.internal:host-gateway".parse().unwrap(),
            "other:192.0.2.9".parse().unwrap(),
        ];
        let policy = box_policy(&spec, &both, gw).unwrap();
        assert!(policy.names.allows("api.example.com").is_some());
        assert!(
            policy.names.allows("db.internal").is_some(),
            "the network's rule"
        );
        assert_eq!(
            policy.statics.len(),
            1,
            "db.internal by its --add-host address"
        );
        assert_eq!(policy.statics[0].block.to_string(), "10.89.0.1/32");
        let p = ClientPolicy::for_box(ID_A, &spec, std::slice::from_ref(&open), Some(&policy));
        assert_eq!(p.upstreams, Some(vec!["192.0.2.53:53".parse().unwrap()]));
        assert!(p.names.unwrap().allows("db.internal").is_some());
    }

    #[test]
    fn clients_are_known_by_address() {
        let dir = Directory::new();
        let addr: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(dir.client(addr).is_none());
        dir.set_client(
            addr,
            ClientPolicy {
                box_id: Some(ID_A.into()),
                networks: nets(&["n"]),
                ..ClientPolicy::default()
            },
        );
        assert_eq!(dir.client(addr).unwrap().box_id.as_deref(), Some(ID_A));
        dir.remove_client(addr);
        assert!(dir.client(addr).is_none());
    }
}
