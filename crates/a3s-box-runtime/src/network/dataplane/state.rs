//! Where a running box is on its networks and which host ports it holds:
//! `<box dir>/network.json`, written by its supervisor once the box is
//! attached and its ports bound, removed when it stops. `inspect`
//! (`NetworkSettings`) and `port` read it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use a3s_box_core::spec::{MacAddr, PortMapping};
use a3s_box_core::{BoxError, Result};
use serde::{Deserialize, Serialize};

/// The file in the box directory.
pub const NETWORK_STATE_FILE: &str = "network.json";

/// A running box's networks and published ports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkState {
    /// One entry per network, in the order of the box's NICs.
    pub networks: Vec<EndpointState>,
    /// Published ports with every part settled (host address and port).
    pub ports: Vec<PortMapping>,
}

/// The box on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointState {
    /// The network's name.
    pub network: String,
    /// The network's id.
    pub network_id: String,
    /// The box's address.
    pub ipv4: Ipv4Addr,
    /// The subnet's prefix length.
    pub prefix_len: u8,
    /// The network's gateway.
    pub gateway: Ipv4Addr,
    /// The box's MAC there.
    pub mac: MacAddr,
    /// `--network-alias`es there.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// `host-gateway` there, if any.
    #[serde(default)]
    pub host_gateway: Option<Ipv4Addr>,
}

impl NetworkState {
    /// The state in box directory `dir` (`None`: the box is not running,
    /// or runs without a network).
    pub fn read(dir: &Path) -> Option<NetworkState> {
        let bytes = std::fs::read(dir.join(NETWORK_STATE_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Write it into box directory `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| BoxError::io("encode the network state", std::io::Error::other(e)))?;
        crate::state::write_atomic(&dir.join(NETWORK_STATE_FILE), &bytes)
    }

    /// Remove it from box directory `dir`.
    pub fn remove(dir: &Path) {
        let _ = std::fs::remove_file(dir.join(NETWORK_STATE_FILE));
    }
}

/// The published `ports` of `port`/`protocol` (all with `None`), as
/// `docker port` prints them: `80/tcp -> 0.0.0.0:8080`, or only the host
/// side when filtered.
pub fn port_lines(
    ports: &[PortMapping],
    filter: Option<(u16, Option<a3s_box_core::spec::Protocol>)>,
) -> Vec<String> {
    let mut ports = ports.to_vec();
    ports.sort_by_key(|p| (p.container_port, p.protocol));
    ports
        .iter()
        .filter(|p| {
            filter.is_none_or(|(port, proto)| {
                p.container_port == port && proto.is_none_or(|x| x == p.protocol)
            })
        })
        .map(|p| {
            let host = match p.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
                IpAddr::V6(ip) => format!("[{ip}]"),
                IpAddr::V4(ip) => ip.to_string(),
            };
            let line = format!(
                "{host}:{}",
                p.host_port.map(|p| p.to_string()).unwrap_or_default()
            );
            match filter {
                Some(_) => line,
                None => format!("{}/{} -> {line}", p.container_port, p.protocol),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lines_are_dockers() {
        let state = NetworkState {
            networks: Vec::new(),
            ports: [
                "127.0.0.1:8080:80",
                "0.0.0.0:9000:53/udp",
                "0.0.0.0:8081:80",
            ]
            .iter()
            .flat_map(|s| a3s_box_core::spec::parse_publish(s).unwrap())
            .collect(),
        };
        assert_eq!(
            port_lines(&state.ports, None),
            [
                "53/udp -> 0.0.0.0:9000",
                "80/tcp -> 127.0.0.1:8080",
                "80/tcp -> 0.0.0.0:8081"
            ]
        );
        assert_eq!(
            port_lines(&state.ports, Some((80, None))),
            ["127.0.0.1:8080", "0.0.0.0:8081"]
        );
        assert!(port_lines(
            &state.ports,
            Some((80, Some(a3s_box_core::spec::Protocol::Udp)))
        )
        .is_empty());
        let dir = tempfile::tempdir().unwrap();
        assert!(NetworkState::read(dir.path()).is_none());
        state.write(dir.path()).unwrap();
        assert_eq!(NetworkState::read(dir.path()), Some(state));
        NetworkState::remove(dir.path());
        assert!(NetworkState::read(dir.path()).is_none());
    }
}
