//! What an egress allow-list allows, independent of how it is enforced:
//! [`NamePolicy`] (host names and `*.domain` patterns, for the DNS server)
//! and [`EgressPolicy`] (those plus the static address blocks, for the
//! firewall), each destination with the [`Ports`] it may be reached on.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use a3s_box_core::spec::{Cidr, EgressRule, EgressTarget};

/// The ports a destination may be reached on (TCP and UDP alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Ports {
    any: bool,
    only: BTreeSet<u16>,
}

impl Ports {
    /// Every port.
    pub fn any() -> Self {
        Ports {
            any: true,
            only: BTreeSet::new(),
        }
    }

    /// The ports a rule's port gives: `None` is every port.
    pub fn of(port: Option<u16>) -> Self {
        let mut ports = Ports::default();
        ports.add(port);
        ports
    }

    /// Allow `port` too (`None`: every port).
    pub fn add(&mut self, port: Option<u16>) {
        match port {
            None => {
                self.any = true;
                self.only.clear();
            }
            Some(p) if !self.any => {
                self.only.insert(p);
            }
            Some(_) => {}
        }
    }

    /// Allow every port of `other` too.
    pub fn merge(&mut self, other: &Ports) {
        if other.any {
            self.add(None);
        }
        for p in &other.only {
            self.add(Some(*p));
        }
    }

    /// Whether every port is allowed.
    pub fn is_any(&self) -> bool {
        self.any
    }

    /// The ports allowed when not every one is.
    pub fn list(&self) -> &BTreeSet<u16> {
        &self.only
    }

    /// Whether `port` is allowed.
    pub fn allows(&self, port: u16) -> bool {
        self.any || self.only.contains(&port)
    }

    /// Whether every port `other` allows is allowed here.
    pub fn covers(&self, other: &Ports) -> bool {
        self.any || (!other.any && other.only.is_subset(&self.only))
    }
}

/// `name` as the policy compares it: lower case, no trailing dot.
pub fn normalize_name(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The host-name half of an allow-list: exact names and `*.domain`
/// patterns (every name under the domain, not the domain itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamePolicy {
    exact: BTreeMap<String, Ports>,
    /// `.domain` suffixes.
    suffixes: BTreeMap<String, Ports>,
}

impl NamePolicy {
    /// The name rules of `rules` (address rules are left out).
    pub fn from_rules(rules: &[EgressRule]) -> Self {
        let mut policy = NamePolicy::default();
        for rule in rules {
            let EgressTarget::Name(name) = &rule.target else {
                continue;
            };
            let name = normalize_name(name);
            let entry = match name.strip_prefix("*.") {
                Some(domain) => policy.suffixes.entry(format!(".{domain}")),
                None => policy.exact.entry(name),
            };
            entry.or_default().add(rule.port);
        }
        policy
    }

    /// Whether no name is allowed.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.suffixes.is_empty()
    }

    /// The ports every rule matching `name` allows together; `None` if no
    /// rule matches.
    pub fn allows(&self, name: &str) -> Option<Ports> {
        let name = normalize_name(name);
        let mut ports: Option<Ports> = None;
        let mut add = |p: &Ports| ports.get_or_insert_with(Ports::default).merge(p);
        if let Some(p) = self.exact.get(&name) {
            add(p);
        }
        for (suffix, p) in &self.suffixes {
            if name.len() > suffix.len() && name.ends_with(suffix.as_str()) {
                add(p);
            }
        }
        ports
    }
}

/// One address block the firewall allows from the start.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StaticAllow {
    /// The block (a single address is a /32 or /128).
    pub block: Cidr,
    /// Its ports.
    pub ports: Ports,
}

/// A whole allow-list: names for the DNS server, blocks for the firewall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Names and `*.domain` patterns.
    pub names: NamePolicy,
    /// Addresses and blocks: the rules' own, and the `--add-host`
    /// addresses of allowed names (a box resolves those without DNS).
    pub statics: Vec<StaticAllow>,
}

impl EgressPolicy {
    /// The policy of `rules` (a box's and its networks' together).
    /// `hosts` are the box's `--add-host` entries with `host-gateway`
    /// already turned into an address: an entry whose name a rule allows
    /// is allowed by address, with that rule's ports.
    pub fn new(rules: &[EgressRule], hosts: &[(String, IpAddr)]) -> Self {
        let names = NamePolicy::from_rules(rules);
        let mut statics = Vec::new();
        for rule in rules {
            let block = match &rule.target {
                EgressTarget::Name(_) => continue,
                EgressTarget::Ip(ip) => single(*ip),
                EgressTarget::Cidr(c) => *c,
            };
            statics.push(StaticAllow {
                block,
                ports: Ports::of(rule.port),
            });
        }
        for (name, ip) in hosts {
            if let Some(ports) = names.allows(name) {
                statics.push(StaticAllow {
                    block: single(*ip),
                    ports,
                });
            }
        }
        EgressPolicy {
            names,
            statics: minimize(statics),
        }
    }
}

/// The block of one address.
pub fn single(ip: IpAddr) -> Cidr {
    Cidr {
        addr: ip,
        prefix_len: if ip.is_ipv4() { 32 } else { 128 },
    }
}

/// Whether `inner` lies within `outer`.
pub fn block_within(inner: &Cidr, outer: &Cidr) -> bool {
    inner.addr.is_ipv4() == outer.addr.is_ipv4()
        && inner.prefix_len >= outer.prefix_len
        && outer.contains(inner.addr)
}

/// IPv4 link-local (with the cloud metadata address 169.254.169.254).
pub const LINK_LOCAL_V4: Cidr = Cidr {
    addr: IpAddr::V4(Ipv4Addr::new(169, 254, 0, 0)),
    prefix_len: 16,
};
/// IPv6 link-local.
pub const LINK_LOCAL_V6: Cidr = Cidr {
    addr: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0)),
    prefix_len: 10,
};

/// Whether a rule names a link-local block or address (which the firewall
/// otherwise refuses, even under a wider rule such as `0.0.0.0/0`).
pub fn names_link_local(block: &Cidr) -> bool {
    block_within(block, &LINK_LOCAL_V4) || block_within(block, &LINK_LOCAL_V6)
}

/// Merge the ports of equal blocks and drop the blocks another one covers
/// (block and ports), so the firewall's interval sets get no overlapping
/// elements. Blocks either nest or are disjoint, so that is enough.
fn minimize(statics: Vec<StaticAllow>) -> Vec<StaticAllow> {
    let mut merged: Vec<StaticAllow> = Vec::new();
    for s in statics {
        match merged.iter_mut().find(|m| m.block == s.block) {
            Some(m) => m.ports.merge(&s.ports),
            None => merged.push(s),
        }
    }
    let covered = |i: usize, s: &StaticAllow| {
        merged.iter().enumerate().any(|(j, o)| {
            j != i
                && block_within(&s.block, &o.block)
                && o.block != s.block
                && o.ports.covers(&s.ports)
                // A named link-local block stays: the wider one is refused there.
                && (!names_link_local(&s.block) || names_link_local(&o.block))
        })
    };
    merged
        .iter()
        .enumerate()
        .filter(|(i, s)| !covered(*i, s))
        .map(|(_, s)| s.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(texts: &[&str]) -> Vec<EgressRule> {
        texts.iter().map(|t| t.parse().unwrap()).collect()
    }

    fn ports(any: bool, only: &[u16]) -> Ports {
        let mut p = Ports::default();
        if any {
            p.add(None);
        }
        for o in only {
            p.add(Some(*o));
        }
        p
    }

    #[test]
    fn ports_merge_to_any() {
        let mut p = Ports::of(Some(443));
        p.add(Some(80));
        assert!(p.allows(80) && p.allows(443) && !p.allows(22));
        assert!(!p.is_any());
        p.add(None);
        assert!(p.is_any() && p.list().is_empty() && p.allows(22));
        p.add(Some(1));
        assert!(p.list().is_empty());
        assert!(Ports::any().covers(&Ports::of(Some(1))));
        assert!(!Ports::of(Some(1)).covers(&Ports::any()));
        assert!(ports(false, &[1, 2]).covers(&ports(false, &[2])));
    }

    #[test]
    fn names_match_exactly_or_under_a_domain() {
        let policy = NamePolicy::from_rules(&rules(&[
            "api.example.com:443",
            "*.example.com:80",
            "db.internal",
            "10.0.0.0/8",
        ]));
        assert_eq!(
            policy.allows("api.example.com"),
            Some(ports(false, &[80, 443]))
        );
        assert_eq!(
            policy.allows("API.Example.COM."),
            Some(ports(false, &[80, 443]))
        );
        assert_eq!(policy.allows("a.b.example.com"), Some(ports(false, &[80])));
        assert_eq!(
            policy.allows("example.com"),
            None,
            "the domain itself is not under it"
        );
        assert_eq!(policy.allows("badexample.com"), None);
        assert_eq!(policy.allows("db.internal"), Some(Ports::any()));
        assert_eq!(policy.allows("x.db.internal"), None);
        assert!(!policy.is_empty());
        assert!(NamePolicy::from_rules(&rules(&["1.2.3.4"])).is_empty());
    }

    #[test]
    fn statics_come_from_addresses_blocks_and_allowed_extra_hosts() {
        let policy = EgressPolicy::new(
            &rules(&[
                "192.0.2.7:22",
                "198.51.100.0/24",
                "[2001:db8::1]:443",
                "db.internal:5432",
            ]),
            &[
                ("db.internal".into(), "10.1.2.3".parse().unwrap()),
                ("other.internal".into(), "10.9.9.9".parse().unwrap()),
            ],
        );
        let got: Vec<(String, Ports)> = policy
            .statics
            .iter()
            .map(|s| (s.block.to_string(), s.ports.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("192.0.2.7/32".into(), Ports::of(Some(22))),
                ("198.51.100.0/24".into(), Ports::any()),
                ("2001:db8::1/128".into(), Ports::of(Some(443))),
                ("10.1.2.3/32".into(), Ports::of(Some(5432))),
            ]
        );
    }

    #[test]
    fn covered_blocks_are_dropped_and_equal_ones_merged() {
        let policy = EgressPolicy::new(
            &rules(&[
                "10.0.0.0/8:443",
                "10.1.0.0/16:443",
                "10.2.0.0/16:80",
                "10.3.0.0/16",
                "10.3.0.0/16:22",
                "0.0.0.0/0",
                "169.254.169.254:80",
            ]),
            &[],
        );
        let got: Vec<String> = policy.statics.iter().map(|s| s.block.to_string()).collect();
        assert_eq!(got, ["0.0.0.0/0", "169.254.169.254/32"]);
        let policy = EgressPolicy::new(
            &rules(&["10.0.0.0/8:443", "10.1.0.0/16:443", "10.1.0.0/16:80"]),
            &[],
        );
        let got: Vec<(String, Ports)> = policy
            .statics
            .iter()
            .map(|s| (s.block.to_string(), s.ports.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.0.0.0/8".into(), Ports::of(Some(443))),
                ("10.1.0.0/16".into(), ports(false, &[80, 443])),
            ]
        );
    }

    #[test]
    fn link_local_is_named_only_from_inside() {
        let b = |t: &str| t.parse::<Cidr>().unwrap();
        assert!(names_link_local(&b("169.254.169.254/32")));
        assert!(names_link_local(&b("169.254.0.0/16")));
        assert!(names_link_local(&b("fe80::1/128")));
        assert!(!names_link_local(&b("0.0.0.0/0")));
        assert!(!names_link_local(&b("169.0.0.0/8")));
        assert!(!names_link_local(&b("::/0")));
    }
}
