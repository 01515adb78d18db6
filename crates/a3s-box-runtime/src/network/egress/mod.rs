//! The egress allow-list on the host side of the VM (the guest is not
//! trusted to enforce it): a box's (or network's) `spec::EgressRule`s as an
//! nftables table, and the addresses the DNS server allowed fed into it.
//!
//! - [`policy`]: what the rules allow ([`EgressPolicy`], [`NamePolicy`],
//!   [`Ports`]), shared with the DNS server;
//! - [`ruleset`]: an [`EgressPlan`] compiled into an `nft -f` script (pure);
//! - [`nft`]: running `nft` in a network namespace;
//! - [`Firewall`]: a table applied; DNS answers added to its sets with
//!   timeouts, the denied attempts read back;
//! - [`FirewallFeed`]: the DNS server's observer that feeds each box's
//!   firewall before the box gets the answer.
//!
//! No `--egress-allow` rule means no table: the box may connect anywhere.
//! With any rule, everything else is refused — see [`ruleset`] for the
//! order of the checks. DNS-fed elements expire [`RESOLVED_GRACE_SECS`]
//! after the answer's TTL (at least [`MIN_RESOLVED_SECS`]); established
//! connections outlive them.

mod feed;
pub mod nft;
pub mod policy;
pub mod ruleset;

use std::net::IpAddr;

use a3s_box_core::spec::{HostAddr, NetworkSpec, Protocol};
use a3s_box_core::{BoxError, Result};

use super::store::NetworkRecord;

pub use feed::FirewallFeed;
pub use nft::{Netns, Nft};
pub use policy::{EgressPolicy, NamePolicy, Ports};

/// The named counter of denied packets in every table.
pub const DENIED_COUNTER: &str = "denied";
/// How long a denied destination stays in the `denied` sets unseen.
pub const DENIED_TIMEOUT_SECS: u64 = 3600;
/// Shortest life of a DNS-fed element (before the grace).
pub const MIN_RESOLVED_SECS: u64 = 60;
/// Added to a DNS answer's TTL: a client may connect a little after its
/// cached answer expires.
pub const RESOLVED_GRACE_SECS: u64 = 30;
/// Longest life of a DNS-fed element.
pub const MAX_RESOLVED_SECS: u64 = 7 * 24 * 3600;

/// Where the table sees a box's packets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attach {
    /// Everything the namespace itself sends (a passt or proxy process
    /// there speaks for the box): the `output` hook.
    Output,
    /// Packets routed through the namespace (a bridge and TAPs): the
    /// `forward` hook, those arriving on `iifname` and/or from `saddr`.
    /// On a shared bridge, match the box's address, and have the data
    /// plane drop frames from a TAP whose source is not its lease.
    Forward {
        /// The interface packets arrive on (the TAP, or the bridge).
        iifname: Option<String>,
        /// The box's address.
        saddr: Option<IpAddr>,
    },
}

/// Everything needed to build a box's (or network's) egress table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPlan {
    /// The nft table's name (a letter, then letters, digits, `_`), unique
    /// in the namespace: `a3s_` and the box's short id, say.
    pub table: String,
    /// Where it hooks in.
    pub attach: Vec<Attach>,
    /// What is allowed.
    pub policy: EgressPolicy,
    /// Our DNS server's addresses as the hook sees them: the only place
    /// port 53 may go.
    pub resolvers: Vec<IpAddr>,
    /// The host gateway, when it is a link-local address: it is egress
    /// like any other (names resolving to it and rules naming it allow
    /// it), not a part of the refused link-local block.
    pub host_gateway: Option<IpAddr>,
    /// Packets with this mark pass untouched (set on the DNS server's
    /// upstream sockets when it runs in the same namespace).
    pub exempt_mark: Option<u32>,
    /// Names the box (or network) in the log prefix of denied packets.
    pub log_tag: String,
}

/// A box's allow-list: its own `--egress-allow` rules and those of every
/// network in `networks` (the ones it joins), with its `--add-host`
/// entries (`host-gateway` standing for `host_gateway`, the address as
/// the firewall's hook sees it). `None` when there is no rule at all: no
/// table, the box may connect anywhere.
pub fn box_policy(
    spec: &NetworkSpec,
    networks: &[NetworkRecord],
    host_gateway: IpAddr,
) -> Option<EgressPolicy> {
    let mut rules = spec.egress.clone();
    for net in networks {
        rules.extend(net.egress.iter().cloned());
    }
    if rules.is_empty() {
        return None;
    }
    let hosts: Vec<(String, IpAddr)> = spec
        .extra_hosts
        .iter()
        .map(|h| {
            let ip = match h.addr {
                HostAddr::Ip(ip) => ip,
                HostAddr::HostGateway => host_gateway,
            };
            (h.name.clone(), ip)
        })
        .collect();
    Some(EgressPolicy::new(&rules, &hosts))
}

/// One address a DNS answer gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResolvedAddr {
    /// The address.
    pub addr: IpAddr,
    /// The answer's TTL.
    pub ttl_secs: u32,
}

/// How long a DNS-fed element lives for an answer with `ttl` seconds.
pub fn resolved_timeout_secs(ttl: u32) -> u64 {
    (u64::from(ttl).max(MIN_RESOLVED_SECS) + RESOLVED_GRACE_SECS).min(MAX_RESOLVED_SECS)
}

/// The `nft -f` script adding `addrs` with `ports` to `table`'s DNS-fed
/// sets, each with a fresh timeout (an element already there gets the new
/// timeout: it is added, deleted and added again in one transaction).
pub fn resolved_script(table: &str, addrs: &[ResolvedAddr], ports: &Ports) -> String {
    let mut out = String::new();
    for a in addrs {
        let f = if a.addr.is_ipv4() { "4" } else { "6" };
        let timeout = resolved_timeout_secs(a.ttl_secs);
        let keys: Vec<(String, String)> = if ports.is_any() {
            vec![(format!("dns{f}"), a.addr.to_string())]
        } else {
            ports
                .list()
                .iter()
                .map(|p| (format!("dns{f}_ports"), format!("{} . {p}", a.addr)))
                .collect()
        };
        for (set, key) in keys {
            let at = format!("inet {table} {set}");
            out.push_str(&format!(
                "add element {at} {{ {key} timeout {timeout}s }}\n\
                 delete element {at} {{ {key} }}\n\
                 add element {at} {{ {key} timeout {timeout}s }}\n"
            ));
        }
    }
    out
}

/// A destination the table refused, as recorded in its `denied` sets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeniedAttempt {
    /// Where to.
    pub addr: IpAddr,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Destination port.
    pub port: u16,
    /// Packets refused (connection attempts, retries, datagrams).
    pub packets: u64,
}

/// An applied egress table.
#[derive(Debug, Clone)]
pub struct Firewall {
    nft: Nft,
    table: String,
}

impl Firewall {
    /// Create (or replace) `plan`'s table.
    pub fn apply(nft: Nft, plan: &EgressPlan) -> Result<Firewall> {
        nft.apply(&plan.ruleset()?)?;
        Ok(Firewall {
            nft,
            table: plan.table.clone(),
        })
    }

    /// A handle on a table applied earlier (by a holder that restarted).
    pub fn existing(nft: Nft, table: &str) -> Result<Firewall> {
        ruleset::check_identifier("nft table", table)?;
        Ok(Firewall {
            nft,
            table: table.to_string(),
        })
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Allow `addrs` on `ports` until their timeouts.
    pub fn allow_resolved(&self, addrs: &[ResolvedAddr], ports: &Ports) -> Result<()> {
        if addrs.is_empty() {
            return Ok(());
        }
        self.nft.apply(&resolved_script(&self.table, addrs, ports))
    }

    /// [`Firewall::allow_resolved`] off the async runtime's threads.
    pub async fn allow_resolved_async(&self, addrs: &[ResolvedAddr], ports: &Ports) -> Result<()> {
        if addrs.is_empty() {
            return Ok(());
        }
        self.nft
            .apply_async(resolved_script(&self.table, addrs, ports))
            .await
    }

    /// The destinations refused in the last [`DENIED_TIMEOUT_SECS`].
    pub fn denied(&self) -> Result<Vec<DeniedAttempt>> {
        let mut all = Vec::new();
        for set in ["denied4", "denied6"] {
            let json = self.nft.json(&["list", "set", "inet", &self.table, set])?;
            all.extend(parse_denied(&json));
        }
        Ok(all)
    }

    /// Packets refused since the table was made.
    pub fn denied_packets(&self) -> Result<u64> {
        let json = self
            .nft
            .json(&["list", "counter", "inet", &self.table, DENIED_COUNTER])?;
        let packets = objects(&json).find_map(|o| o.get("counter")?.get("packets")?.as_u64());
        packets.ok_or_else(|| {
            BoxError::io(
                "read the denied counter",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "no counter in output"),
            )
        })
    }

    /// Delete the table (missing already is fine).
    pub fn remove(&self) -> Result<()> {
        let t = &self.table;
        self.nft
            .apply(&format!("table inet {t} {{}}\ndelete table inet {t}\n"))
    }
}

/// The objects of `nft -j` output (`{"nftables": [obj, …]}`).
fn objects(json: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    json.get("nftables")
        .and_then(|v| v.as_array())
        .into_iter()
        .flatten()
}

/// The elements of a `denied` set listed with `nft -j list set`.
fn parse_denied(json: &serde_json::Value) -> Vec<DeniedAttempt> {
    let elems = objects(json)
        .filter_map(|o| o.get("set")?.get("elem")?.as_array())
        .flatten();
    elems
        .filter_map(|e| {
            let (val, packets) = match e.get("elem") {
                Some(inner) => (
                    inner.get("val")?,
                    inner
                        .get("counter")
                        .and_then(|c| c.get("packets")?.as_u64())
                        .unwrap_or(0),
                ),
                None => (e, 0),
            };
            let parts = val.get("concat")?.as_array()?;
            let [addr, proto, port] = parts.as_slice() else {
                return None;
            };
            Some(DeniedAttempt {
                addr: addr.as_str()?.parse().ok()?,
                protocol: match proto.as_str()? {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    _ => return None,
                },
                port: u16::try_from(port.as_u64()?).ok()?,
                packets,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
