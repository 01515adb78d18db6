//! `network connect` and `network disconnect` of a running box. QEMU's
//! `microvm` has no hotplug, so the box booted with spare NICs whose TAPs
//! are parked (down, on no bridge) in its first network's namespace.
//! Connecting lends one to the network's helper (the parking helper moves
//! the TAP into that namespace with `IFLA_NET_NS_FD`), which adopts it as
//! an attach does (lease with the NIC's MAC, bridge, guard, egress table,
//! names); the guest then configures the interface. Disconnecting asks
//! the network's helper to detach the box and park the TAP again.

use std::os::fd::AsFd;
use std::sync::Arc;

use a3s_box_core::guest::message::{InterfaceConfig, Ipv4Cidr, MacAddr as GuestMac};
use a3s_box_core::spec::{MacAddr, NetworkSpec};
use a3s_box_core::{BoxError, Result};

use super::client::{self, Attached};
use super::wire::{self, AttachRequest};
use super::{
    attach_request, egress_request, host_gateway, resolve_networks, Link, PreparedNetwork,
};
use crate::config::EngineConfig;
use crate::network::store::NetworkStore;

impl PreparedNetwork {
    /// Put the running box on `network` (named in `spec`, the box's spec
    /// with the network added): what the guest must configure. Refused
    /// when no spare NIC is left.
    pub async fn connect(
        &mut self,
        engine: &EngineConfig,
        spec: &NetworkSpec,
        network: &str,
    ) -> Result<InterfaceConfig> {
        if self.links.iter().any(|l| l.attachment.network == network) {
            return Err(BoxError::Conflict(format!(
                "box {} is already on network {network}",
                self.name
            )));
        }
        let park = self.park_socket.clone().ok_or_else(|| {
            BoxError::Invalid(format!(
                "box {} runs with --network none: it has no network stack to connect",
                self.name
            ))
        })?;
        let Some(&slot) = self.parked.first() else {
            return Err(BoxError::Unavailable(format!(
                "box {} has no spare NIC left ({} in use): a running box joins a network on a NIC it booted with; restart it to join at boot, or boot boxes with more spares (\"spare-nics\" in $A3S_HOME/config.json or A3S_BOX_SPARE_NICS, now {}; a VM has 8 virtio devices, its disks, shares and NICs come first)",
                self.name,
                self.slots.len(),
                engine.network.spare_nics
            )));
        };
        let store = NetworkStore::new(&engine.home_dir());
        let networks = resolve_networks(&store, spec)?;
        let Some((net, attachment)) = networks.iter().find(|(n, _)| n.name == network) else {
            return Err(BoxError::Invalid(format!(
                "network {network} is not in the box's new spec"
            )));
        };
        let first = &networks[0].0;
        let host_gateway = host_gateway(engine, first);
        let dir = store.network_dir(&net.name);
        let request = AttachRequest {
            mac: Some(self.slots[slot].mac),
            adopt: Some(wire::spare_name(&self.box_id, slot)),
            ..attach_request(
                &self.box_id,
                &self.name,
                attachment,
                spec,
                egress_request(spec, &networks, host_gateway),
                networks.iter().all(|(n, _)| n.internal),
            )
        };
        // The network's namespace (its helper started if none runs), the
        // spare moved there, then adopted.
        let target = client::namespace(engine, net, &dir).await?;
        let spare = wire::spare_name(&self.box_id, slot);
        let tap = wire::tap_name(&self.box_id);
        client::lend(&park, &self.box_id, &spare, &tap, target.as_fd()).await?;
        let parking = client::namespace_at(&park).await?;
        let aliases = request.aliases.clone();
        let Attached {
            attachment,
            connection,
            ..
        } = client::attach(engine, net, &dir, request, Some(parking.as_fd())).await?;
        let route = (self.route.is_none() && !attachment.internal).then_some(attachment.gateway);
        if route.is_some() {
            self.route = Some(network.to_string());
        }
        let config = InterfaceConfig {
            mac: GuestMac(self.slots[slot].mac.0),
            ipv4: Some(Ipv4Cidr {
                address: attachment.ipv4,
                prefix_len: attachment.prefix_len,
            }),
            gateway: route,
            mtu: Some(attachment.mtu),
        };
        let link = Arc::new(Link {
            attachment,
            connection,
            socket: client::socket_path(&dir)?,
            slot,
            aliases,
        });
        self.parked.retain(|&s| s != slot);
        self.links.push(link.clone());
        self.watch(link);
        self.state().write(&self.dir)?;
        tracing::info!(network, slot, "connected");
        Ok(config)
    }

    /// Take the running box off `network`: the MAC of the NIC the guest
    /// must deconfigure (its TAP is parked as a spare again).
    pub async fn disconnect(&mut self, network: &str) -> Result<MacAddr> {
        let Some(at) = self
            .links
            .iter()
            .position(|l| l.attachment.network == network)
        else {
            return Err(BoxError::Conflict(format!(
                "box {} is not on network {network}",
                self.name
            )));
        };
        if self.links.len() == 1 {
            return Err(BoxError::Invalid(format!(
                "network {network} is the only network of box {}: connect it to another one first",
                self.name
            )));
        }
        let park = self
            .park_socket
            .clone()
            .ok_or_else(|| BoxError::Invalid(format!("box {} has no network", self.name)))?;
        let parking = client::namespace_at(&park).await?;
        let link = self.links[at].clone();
        // Its watcher would take the end of the attach for a dead helper.
        if let Some(w) = self.watchers.remove(network) {
            w.abort();
        }
        let spare = wire::spare_name(&self.box_id, link.slot);
        if let Err(e) = client::release(&link.connection, &spare, parking.as_fd()).await {
            self.watch(link);
            return Err(e);
        }
        self.links.remove(at);
        self.parked.push(link.slot);
        if self.route.as_deref() == Some(network) {
            self.route = None;
        }
        let mac = self.slots[link.slot].mac;
        if link.socket == park {
            // The parking helper must stay while spares are parked there.
            self.park_hold = Some(link);
        }
        self.state().write(&self.dir)?;
        tracing::info!(network, "disconnected");
        Ok(mac)
    }
}
