//! [`NetworkSpec`]: the sandbox's network attachments, published ports,
//! DNS, extra hosts and egress allow-list, with their rules. Data only
//! for now: the networking work gives it effect. The Docker string
//! syntaxes are parsed in [`super::network_parse`].

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{rules, SpecError};

/// Network modes that are not network names.
pub const RESERVED_NETWORK_NAMES: [&str; 4] = ["none", "default", "bridge", "host"];

/// The sandbox's networking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkSpec {
    /// `--network`: no network, the default one, or named networks.
    pub mode: NetworkMode,
    /// `-p`: container ports published on the host.
    pub ports: Vec<PortMapping>,
    /// `-P`: publish every exposed port on a host port the engine picks.
    pub publish_all: bool,
    /// `--expose` (and the image's `EXPOSE`, once resolved).
    pub expose: Vec<ExposedPort>,
    /// `--dns`, `--dns-search`, `--dns-option`.
    pub dns: DnsConfig,
    /// `--add-host`: extra `/etc/hosts` entries.
    pub extra_hosts: Vec<ExtraHost>,
    /// `--egress-allow`: where the box may connect. Empty: anywhere; else
    /// only to these (an allow-list enforced on the host side).
    pub egress: Vec<EgressRule>,
    /// `--mac-address` of the box's NIC (`None`: the engine picks one).
    pub mac_address: Option<MacAddr>,
}

/// `--network`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// No NIC at all: only loopback inside the box (`--network none`).
    None,
    /// The engine's default network, with outbound access (`default`,
    /// `bridge`).
    #[default]
    #[serde(alias = "bridge")]
    Default,
    /// These user-defined networks, the first one carrying the default
    /// route.
    Networks(Vec<NetworkAttachment>),
}

/// One user-defined network the box joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkAttachment {
    /// The network's name.
    pub name: String,
    /// `--network-alias`: more names other boxes on it resolve to this box.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `--ip`: a fixed address on it (`None`: the engine assigns one).
    #[serde(default)]
    pub ipv4: Option<Ipv4Addr>,
}

/// `tcp` or `udp`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// One published port (`-p`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortMapping {
    /// Host address to listen on (`None`: every address).
    #[serde(default)]
    pub host_ip: Option<IpAddr>,
    /// Host port (`None`: the engine picks a free one).
    #[serde(default)]
    pub host_port: Option<u16>,
    /// Port inside the box.
    pub container_port: u16,
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

impl fmt::Display for PortMapping {
    /// The `-p` form that parses back to this mapping.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:")?,
            Some(IpAddr::V4(ip)) => write!(f, "{ip}:")?,
            None => {}
        }
        match (self.host_ip, self.host_port) {
            (_, Some(port)) => write!(f, "{port}:")?,
            (Some(_), None) => f.write_str(":")?,
            (None, None) => {}
        }
        write!(f, "{}/{}", self.container_port, self.protocol)
    }
}

/// One exposed port (`--expose`): documented, published only with `-P`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExposedPort {
    /// Port inside the box.
    pub port: u16,
    /// Protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

impl fmt::Display for ExposedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.port, self.protocol)
    }
}

/// The box's resolver configuration (`None`/empty: the engine's default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// `--dns`: name servers.
    pub servers: Vec<IpAddr>,
    /// `--dns-search`: search domains.
    pub search: Vec<String>,
    /// `--dns-option`: resolv.conf options (`ndots:2`, `edns0`).
    pub options: Vec<String>,
}

/// An `/etc/hosts` entry (`--add-host`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraHost {
    /// The host name.
    pub name: String,
    /// What it resolves to.
    pub addr: HostAddr,
}

impl fmt::Display for ExtraHost {
    /// Docker's `HostConfig.ExtraHosts` form, `NAME:ADDR`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.addr {
            HostAddr::Ip(IpAddr::V6(ip)) => write!(f, "{}:[{ip}]", self.name),
            HostAddr::Ip(IpAddr::V4(ip)) => write!(f, "{}:{ip}", self.name),
            HostAddr::HostGateway => write!(f, "{}:host-gateway", self.name),
        }
    }
}

/// The address of an [`ExtraHost`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostAddr {
    /// A fixed address.
    Ip(IpAddr),
    /// `host-gateway`: the address at which the box reaches the host.
    HostGateway,
}

/// One `--egress-allow` rule.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// Where to.
    pub target: EgressTarget,
    /// Only this port (`None`: any port).
    #[serde(default)]
    pub port: Option<u16>,
}

impl fmt::Display for EgressRule {
    /// The `--egress-allow` form that parses back to this rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v6 = matches!(self.target, EgressTarget::Ip(IpAddr::V6(_)))
            || matches!(self.target, EgressTarget::Cidr(c) if c.addr.is_ipv6());
        match (self.port, v6) {
            (Some(port), true) => write!(f, "[{}]:{port}", self.target),
            (Some(port), false) => write!(f, "{}:{port}", self.target),
            (None, _) => write!(f, "{}", self.target),
        }
    }
}

/// What an [`EgressRule`] allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EgressTarget {
    /// A host name (lower case), or `*.domain` for every name under it.
    Name(String),
    /// One address.
    Ip(IpAddr),
    /// An address block.
    Cidr(Cidr),
}

impl fmt::Display for EgressTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EgressTarget::Name(name) => f.write_str(name),
            EgressTarget::Ip(ip) => write!(f, "{ip}"),
            EgressTarget::Cidr(cidr) => write!(f, "{cidr}"),
        }
    }
}

/// An address block, `ADDR/PREFIX`, with no bits set past the prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    /// The first address of the block.
    pub addr: IpAddr,
    /// Prefix length (≤ 32 for IPv4, ≤ 128 for IPv6).
    pub prefix_len: u8,
}

impl Cidr {
    /// Whether `ip` is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32u32.saturating_sub(self.prefix_len.into()))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128u32.saturating_sub(self.prefix_len.into()))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let bad = |reason: String| SpecError::invalid("cidr", text, reason);
        let (addr, len) = text
            .split_once('/')
            .ok_or_else(|| bad("use ADDRESS/PREFIX, as in 10.0.0.0/8".into()))?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad(format!("{addr:?} is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max && len.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| bad(format!("the prefix length is 0 to {max}")))?;
        let cidr = Cidr { addr, prefix_len };
        let first = match addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(prefix_len))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        };
        if first != addr {
            return Err(bad(format!(
                "bits are set past the prefix: did you mean {first}/{prefix_len}?"
            )));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl TryFrom<String> for Cidr {
    type Error = SpecError;

    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

/// A MAC address, written `02:42:ac:11:00:02`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Self, SpecError> {
        let bad = || {
            SpecError::invalid(
                "--mac-address",
                text,
                "use six hex bytes separated by colons, as in 02:42:ac:11:00:02",
            )
        };
        let mut bytes = [0u8; 6];
        let mut parts = text.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl TryFrom<String> for MacAddr {
    type Error = SpecError;

    fn try_from(text: String) -> Result<Self, SpecError> {
        text.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

impl NetworkSpec {
    /// Check the attachments, ports, DNS, hosts and egress rules, and what
    /// `--network none` cannot go with; fields are relative (`ports[0]`).
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_mode()?;
        if self.mode == NetworkMode::None {
            let why = "a box on --network none has no NIC";
            if !self.ports.is_empty() || self.publish_all {
                return Err(SpecError::conflict(
                    "ports",
                    format!("port publishing and --network none: {why}, so nothing can reach its ports; drop -p/-P or use a network"),
                ));
            }
            if !self.egress.is_empty() {
                return Err(SpecError::conflict(
                    "egress",
                    format!("--egress-allow and --network none: {why}, so it cannot connect anywhere; drop --egress-allow or use a network"),
                ));
            }
        }
        // Host ports taken so far: (protocol, port) → indices into `ports`.
        let mut bound: BTreeMap<(Protocol, u16), Vec<usize>> = BTreeMap::new();
        for (i, p) in self.ports.iter().enumerate() {
            let at = |field: &str| format!("ports[{i}].{field}");
            if p.container_port == 0 {
                return Err(SpecError::out_of_range(
                    at("container_port"),
                    "0",
                    "use a port from 1 to 65535",
                ));
            }
            if p.host_port == Some(0) {
                return Err(SpecError::out_of_range(
                    at("host_port"),
                    "0",
                    "use a port from 1 to 65535, or leave it out for one the engine picks",
                ));
            }
            if p.host_ip.is_some_and(|ip| ip.is_multicast()) {
                return Err(SpecError::invalid(
                    at("host_ip"),
                    p.to_string(),
                    "a multicast address cannot be listened on",
                ));
            }
            if let Some(host_port) = p.host_port {
                let seen = bound.entry((p.protocol, host_port)).or_default();
                if let Some(&j) = seen
                    .iter()
                    .find(|&&j| overlap(self.ports[j].host_ip, p.host_ip))
                {
                    return Err(SpecError::conflict(
                        format!("ports[{i}]"),
                        format!("{} and {} use the same host port", self.ports[j], p),
                    ));
                }
                seen.push(i);
            }
        }
        for (i, e) in self.expose.iter().enumerate() {
            if e.port == 0 {
                return Err(SpecError::out_of_range(
                    format!("expose[{i}].port"),
                    "0",
                    "use a port from 1 to 65535",
                ));
            }
        }
        for (i, server) in self.dns.servers.iter().enumerate() {
            if server.is_unspecified() || server.is_multicast() {
                return Err(SpecError::invalid(
                    format!("dns.servers[{i}]"),
                    server.to_string(),
                    "a name server has a unicast address",
                ));
            }
        }
        for (i, domain) in self.dns.search.iter().enumerate() {
            rules::check_host_name(&format!("dns.search[{i}]"), domain, true)?;
        }
        for (i, option) in self.dns.options.iter().enumerate() {
            if option.is_empty() || option.contains(char::is_whitespace) {
                return Err(SpecError::invalid(
                    format!("dns.options[{i}]"),
                    option,
                    "a resolver option is one word, as in ndots:2 or edns0",
                ));
            }
        }
        for (i, host) in self.extra_hosts.iter().enumerate() {
            rules::check_host_name(&format!("extra_hosts[{i}].name"), &host.name, true)?;
        }
        for (i, rule) in self.egress.iter().enumerate() {
            check_egress(rule).map_err(|e| e.within_item("egress", i))?;
        }
        if let Some(mac) = self.mac_address {
            if mac.0[0] & 1 != 0 || mac.0 == [0; 6] {
                return Err(SpecError::invalid(
                    "mac_address",
                    mac.to_string(),
                    "a NIC's address is unicast and not all zero (the first byte is even, as in 02:…)",
                ));
            }
        }
        Ok(())
    }

    fn validate_mode(&self) -> Result<(), SpecError> {
        let NetworkMode::Networks(nets) = &self.mode else {
            return Ok(());
        };
        if nets.is_empty() {
            return Err(SpecError::missing(
                "mode.networks",
                "name at least one network, or use none or default",
            ));
        }
        for (i, net) in nets.iter().enumerate() {
            let at = |field: &str| format!("mode.networks[{i}].{field}");
            rules::check_name(&at("name"), "network", &net.name)?;
            // The default network may be one of several once a box on it
            // is connected to another (`network connect`).
            let joinable = net.name == "default" && nets.len() > 1;
            if RESERVED_NETWORK_NAMES.contains(&net.name.as_str()) && !joinable {
                return Err(SpecError::invalid(
                    at("name"),
                    &net.name,
                    "this is a network mode, not a network name: use it alone as the mode",
                ));
            }
            if nets[..i].iter().any(|n| n.name == net.name) {
                return Err(SpecError::conflict(
                    at("name"),
                    format!("the box joins network {} twice", net.name),
                ));
            }
            for (j, alias) in net.aliases.iter().enumerate() {
                rules::check_host_name(&format!("mode.networks[{i}].aliases[{j}]"), alias, true)?;
            }
            if let Some(ip) = net.ipv4 {
                if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback()
                {
                    return Err(SpecError::invalid(
                        at("ipv4"),
                        ip.to_string(),
                        "a box's address is a unicast address of the network",
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Two listen addresses overlap when equal or when either is "every address".
fn overlap(a: Option<IpAddr>, b: Option<IpAddr>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b || a.is_unspecified() || b.is_unspecified(),
        _ => true,
    }
}

fn check_egress(rule: &EgressRule) -> Result<(), SpecError> {
    if rule.port == Some(0) {
        return Err(SpecError::out_of_range(
            "port",
            "0",
            "use a port from 1 to 65535, or none for any",
        ));
    }
    match &rule.target {
        EgressTarget::Name(name) => {
            let bare = name.strip_prefix("*.").unwrap_or(name);
            rules::check_host_name("target", bare, true)
                .map_err(|e| SpecError::invalid("target", name, e.message))?;
            if name.chars().any(|c| c.is_ascii_uppercase()) {
                return Err(SpecError::invalid(
                    "target",
                    name,
                    "write names in lower case",
                ));
            }
            Ok(())
        }
        EgressTarget::Ip(_) => Ok(()),
        EgressTarget::Cidr(cidr) => cidr
            .to_string()
            .parse::<Cidr>()
            .map(|_| ())
            .map_err(|e| e.with_field("target")),
    }
}
