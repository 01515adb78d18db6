//! Networks through the engine: `network create|ls|inspect|rm|prune`, with
//! Docker's `network inspect` shape. The store, leases and the embedded DNS
//! live in [`crate::network`]; this module decides who uses a network.

use std::collections::BTreeMap;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::spec::NetworkMode;
use a3s_box_core::Result;
use serde::Serialize;

use super::Engine;
use crate::network::dataplane::client;
use crate::network::dataplane::state::NetworkState;
use crate::network::ipam::Ipam;
use crate::network::store::{NetworkCreate, NetworkRecord, NetworkStore};
use crate::state::BoxRecord;

/// A network as Docker's `network inspect` shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkView {
    /// Its name.
    pub name: String,
    /// 64-hex id.
    pub id: String,
    /// When it was created.
    pub created: String,
    /// Always `local`.
    pub scope: &'static str,
    /// Always `bridge`.
    pub driver: String,
    /// No IPv6 yet.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    /// Its subnet and gateway.
    #[serde(rename = "IPAM")]
    pub ipam: IpamView,
    /// No egress beyond the network.
    pub internal: bool,
    /// Boxes with an address on it, by id.
    pub containers: BTreeMap<String, EndpointView>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// What only A3S Box has.
    #[serde(rename = "A3s")]
    pub a3s: NetworkA3sView,
}

/// Docker's `IPAM`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamView {
    /// Always `default`.
    pub driver: &'static str,
    /// One entry: the subnet.
    pub config: Vec<IpamConfigView>,
}

/// One `IPAM.Config` entry.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamConfigView {
    /// `10.89.0.0/24`.
    pub subnet: String,
    /// The gateway (and the boxes' DNS server and host-gateway).
    pub gateway: String,
}

/// One box on a network.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct EndpointView {
    /// The box's name.
    pub name: String,
    /// `10.89.0.2/24`.
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    /// Its interface's MAC.
    pub mac_address: String,
}

/// What only A3S Box has.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkA3sView {
    /// The allow-list every box of the network gets.
    pub egress_allow: Vec<String>,
}

/// Whether `record`'s spec asks for network `net`.
fn asks_for(record: &BoxRecord, net: &NetworkRecord) -> bool {
    match &record.config.spec.sandbox.network.mode {
        NetworkMode::Networks(list) => list.iter().any(|a| a.name == net.name),
        NetworkMode::Default => net.is_default(),
        NetworkMode::None => false,
    }
}

impl Engine {
    fn networks(&self) -> NetworkStore {
        NetworkStore::new(&self.home)
    }

    /// Names of the boxes (any state) that use `net`: their spec names it.
    fn network_users(&self, net: &NetworkRecord) -> Vec<String> {
        self.boxes
            .store()
            .list()
            .unwrap_or_default()
            .iter()
            .filter(|r| asks_for(r, net))
            .map(|r| r.config.name.clone())
            .collect()
    }

    fn network_view(&self, store: &NetworkStore, net: &NetworkRecord) -> Result<NetworkView> {
        let names: BTreeMap<String, String> = self
            .boxes
            .store()
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.config.id, r.config.name))
            .collect();
        let prefix = net.subnet.prefix_len;
        let containers = Ipam::new(store, net)?
            .leases()?
            .into_iter()
            .map(|lease| {
                let endpoint = EndpointView {
                    name: names.get(&lease.box_id).cloned().unwrap_or_default(),
                    ipv4_address: format!("{}/{prefix}", lease.ipv4),
                    mac_address: lease.mac.to_string(),
                };
                (lease.box_id, endpoint)
            })
            .collect();
        Ok(NetworkView {
            name: net.name.clone(),
            id: net.id.clone(),
            created: net.created.clone(),
            scope: "local",
            driver: net.driver.clone(),
            enable_ipv6: false,
            ipam: IpamView {
                driver: "default",
                config: vec![IpamConfigView {
                    subnet: net.subnet.to_string(),
                    gateway: net.gateway.to_string(),
                }],
            },
            internal: net.internal,
            containers,
            labels: net.labels.clone(),
            a3s: NetworkA3sView {
                egress_allow: net.egress.iter().map(ToString::to_string).collect(),
            },
        })
    }

    /// The published ports of a running box, each with its host side
    /// (none while it does not run).
    pub fn box_ports(&self, key: &str) -> Result<Vec<a3s_box_core::spec::PortMapping>> {
        let record = self.boxes.store().get(key)?;
        let running = matches!(
            record.state.status,
            a3s_box_core::status::BoxStatus::Running | a3s_box_core::status::BoxStatus::Paused
        );
        Ok(running
            .then(|| crate::network::dataplane::state::NetworkState::read(&record.dir))
            .flatten()
            .map(|s| s.ports)
            .unwrap_or_default())
    }

    /// Create a network.
    pub fn network_create(&self, req: NetworkCreate) -> Result<NetworkView> {
        let store = self.networks();
        let net = store.create(req)?;
        self.events.record(
            &Event::now(EventType::Network, EventAction::Create, &net.id).with("name", &net.name),
        );
        self.network_view(&store, &net)
    }

    /// Every network, the default one first.
    pub fn network_list(&self) -> Result<Vec<NetworkView>> {
        let store = self.networks();
        store
            .list()?
            .iter()
            .map(|n| self.network_view(&store, n))
            .collect()
    }

    /// One network, by name, id or id prefix (`bridge` is `default`).
    pub fn network_inspect(&self, key: &str) -> Result<NetworkView> {
        let store = self.networks();
        let net = store.get(key)?;
        self.network_view(&store, &net)
    }

    /// Remove a network (refused while a box uses it); its name.
    pub fn network_remove(&self, key: &str) -> Result<String> {
        let net = self.networks().remove(key, |net| self.network_users(net))?;
        self.events.record(
            &Event::now(EventType::Network, EventAction::Destroy, &net.id).with("name", &net.name),
        );
        Ok(net.name)
    }

    /// Remove every network no box uses (not `default`); their names.
    pub fn network_prune(&self) -> Result<Vec<String>> {
        let removed = self
            .networks()
            .prune(|_| true, |net| self.network_users(net))?;
        for net in &removed {
            self.events.record(
                &Event::now(EventType::Network, EventAction::Destroy, &net.id)
                    .with("name", &net.name),
            );
        }
        Ok(removed.into_iter().map(|n| n.name).collect())
    }
}

impl Engine {
    /// Tell the helpers of the networks a running box is on (its
    /// `network.json`) that it has a new name. A helper that cannot be
    /// told is logged, not fatal: the name in the store changed.
    pub(super) async fn rename_on_networks(&self, record: &BoxRecord, new_name: &str) {
        let Some(state) = NetworkState::read(&record.dir) else {
            return;
        };
        let store = NetworkStore::new(&self.home);
        for endpoint in &state.networks {
            let dir = store.network_dir(&endpoint.network);
            let renamed = match client::socket_path(&dir) {
                Ok(socket) => client::rename(&socket, &record.config.id, new_name).await,
                Err(e) => Err(e),
            };
            if let Err(e) = renamed {
                tracing::warn!(network = %endpoint.network, "rename the box in DNS: {e}");
            }
        }
    }
}
