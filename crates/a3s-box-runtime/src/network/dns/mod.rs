//! The embedded DNS server the boxes of a network query (at the network's
//! gateway address, run by the process that holds the network).
//!
//! - names of boxes on the client's networks (name, `--network-alias`,
//!   short id, each also as `NAME.NETWORK`) get authoritative A answers
//!   (and PTR answers for their addresses) from a [`Directory`] the owner
//!   updates live;
//! - every other name is forwarded, as received, to upstream servers (the
//!   box's `--dns`, else the server's: the host's `resolv.conf`
//!   nameservers, see [`resolv`]);
//! - a client with an egress allow-list ([`ClientPolicy::names`]) gets
//!   NXDOMAIN for every name no rule allows (reported to the
//!   [`DnsObserver`] as denied), and every A/AAAA answer for an allowed
//!   name is reported (address, TTL, ports) to the observer, which adds
//!   it to the box's firewall *before* the box gets the answer.
//!
//! Denied names get NXDOMAIN rather than REFUSED: musl's resolver ignores
//! a REFUSED answer and waits for its timeout.

mod forward;
pub mod names;
pub mod resolv;
mod server;

use std::net::IpAddr;

use async_trait::async_trait;

use super::egress::{Ports, ResolvedAddr};

pub use forward::UpstreamSockets;
pub use names::{ClientPolicy, Directory, HostEntry};
pub use server::{DnsServer, DnsServerConfig};

/// TTL of the answers for boxes' names: short, as boxes come and go.
pub const LOCAL_TTL_SECS: u32 = 10;

/// An answer the server gave for a name the client's allow-list allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedAnswer {
    /// Who asked.
    pub client: IpAddr,
    /// The box that asked, if known.
    pub box_id: Option<String>,
    /// The name asked for (lower case, no trailing dot).
    pub name: String,
    /// The ports the matching rules allow.
    pub ports: Ports,
    /// The A and AAAA records of the answer.
    pub addrs: Vec<ResolvedAddr>,
}

/// A query refused because no rule of the client's allow-list names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedQuery {
    /// Who asked.
    pub client: IpAddr,
    /// The box that asked, if known.
    pub box_id: Option<String>,
    /// The name asked for (lower case, no trailing dot).
    pub name: String,
    /// The record type asked for (`A`, `AAAA`, `TXT`, …).
    pub query_type: String,
}

/// What the server tells its owner about clients with an allow-list.
#[async_trait]
pub trait DnsObserver: Send + Sync + std::fmt::Debug {
    /// An allowed name resolved: the client gets the answer when this
    /// returns (so the firewall knows the addresses first).
    async fn allowed(&self, answer: &AllowedAnswer);
    /// A name was refused.
    fn denied(&self, query: &DeniedQuery);
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
