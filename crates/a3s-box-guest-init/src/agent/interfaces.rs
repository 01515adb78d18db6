//! `network connect`/`disconnect` of the running sandbox: configuring or
//! taking down the interface ([`crate::net`]), the sandbox's interfaces as
//! they are now (a new container's /etc files are written from them), and
//! every container's `/etc/hosts` kept in step, as Docker does: the
//! container's hostname at each of its addresses, a line added on connect
//! and the lines of the address removed on disconnect, every other line
//! (`--add-host`, localhost, the workload's own) left as it is.
//!
//! A container whose root is being assembled while an interface comes or
//! goes is caught up as it becomes ready ([`Session::container_ready`]):
//! changes and readiness are ordered by the one lock on the interfaces.

use std::net::Ipv4Addr;
use std::sync::{Arc, MutexGuard, PoisonError};

use a3s_box_core::guest::message::{GuestMessage, InterfaceConfig, MacAddr, NetworkConfig};

use super::session::{spawn_thread, Session};
use crate::container::Container;
use crate::net::files;
use crate::pid1::log::{debug, warning};
use crate::storage::etc_files;

/// The addresses of `interfaces`, in order.
fn addresses(interfaces: &[InterfaceConfig]) -> Vec<Ipv4Addr> {
    interfaces
        .iter()
        .filter_map(|i| i.ipv4.map(|a| a.address))
        .collect()
}

/// How one container's `/etc/hosts` changes.
#[derive(Debug, Clone, Copy)]
enum HostsChange {
    /// Its own line for this address.
    Add(Ipv4Addr),
    /// No more lines for this address.
    Remove(Ipv4Addr),
}

impl Session {
    fn interfaces(&self) -> MutexGuard<'_, Vec<InterfaceConfig>> {
        self.interfaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The sandbox's network as it is now, and its addresses: what a new
    /// container's /etc files are written from.
    pub(super) fn network_now(&self) -> (Option<NetworkConfig>, Vec<Ipv4Addr>) {
        let interfaces = self.interfaces().clone();
        let addresses = addresses(&interfaces);
        let network = match self.network.as_deref() {
            Some(network) => Some(NetworkConfig {
                interfaces,
                ..network.clone()
            }),
            None if interfaces.is_empty() => None,
            None => Some(NetworkConfig {
                interfaces,
                ..NetworkConfig::default()
            }),
        };
        (network, addresses)
    }

    /// Container `container` is ready, its /etc files written when the
    /// sandbox's addresses were `planned`: its `/etc/hosts` catches up with
    /// the interfaces that came or went since.
    pub(super) fn container_ready(&self, container: Arc<Container>, planned: &[Ipv4Addr]) {
        let interfaces = self.interfaces();
        let now = addresses(&interfaces);
        let changes: Vec<HostsChange> = planned
            .iter()
            .filter(|a| !now.contains(a))
            .map(|a| HostsChange::Remove(*a))
            .chain(
                now.iter()
                    .filter(|a| !planned.contains(a))
                    .map(|a| HostsChange::Add(*a)),
            )
            .collect();
        for change in changes {
            self.change_hosts(&container, change);
        }
        self.containers.created(container);
    }

    /// `ConfigureInterface`: configured on a thread of its own (it waits for
    /// the link), then every container's `/etc/hosts` gets its line.
    pub fn configure_interface(self: &Arc<Self>, iface: InterfaceConfig) {
        let session = Arc::clone(self);
        spawn_thread(self, format!("if-{}", iface.mac), move || {
            let mac = iface.mac;
            let reply = match crate::net::configure_one(&iface) {
                Ok(()) => {
                    session.interface_up(iface);
                    GuestMessage::InterfaceConfigured { mac }
                }
                Err(e) => GuestMessage::InterfaceFailed {
                    mac,
                    reason: e.to_string(),
                },
            };
            session.send_message(reply);
        });
    }

    /// `DeconfigureInterface`: the interface goes down, then its address
    /// leaves every container's `/etc/hosts`.
    pub fn deconfigure_interface(&self, mac: MacAddr) {
        let reply = match crate::net::deconfigure(mac) {
            Ok(()) => {
                self.interface_down(mac);
                GuestMessage::InterfaceConfigured { mac }
            }
            Err(e) => GuestMessage::InterfaceFailed {
                mac,
                reason: e.to_string(),
            },
        };
        self.send_message(reply);
    }

    /// Interface `iface` is configured (again).
    fn interface_up(&self, iface: InterfaceConfig) {
        let mut interfaces = self.interfaces();
        let new = iface.ipv4.map(|a| a.address);
        if let Some(at) = interfaces.iter().position(|i| i.mac == iface.mac) {
            let old = interfaces.remove(at);
            if let Some(address) = old.ipv4.map(|a| a.address).filter(|a| Some(*a) != new) {
                self.change_every_hosts(HostsChange::Remove(address));
            }
        }
        if let Some(address) = new {
            self.change_every_hosts(HostsChange::Add(address));
        }
        interfaces.push(iface);
    }

    /// The interface with `mac` is down and without its address.
    fn interface_down(&self, mac: MacAddr) {
        let mut interfaces = self.interfaces();
        let Some(at) = interfaces.iter().position(|i| i.mac == mac) else {
            return;
        };
        let old = interfaces.remove(at);
        if let Some(cidr) = old.ipv4 {
            self.change_every_hosts(HostsChange::Remove(cidr.address));
        }
    }

    /// Change the `/etc/hosts` of every ready container.
    fn change_every_hosts(&self, change: HostsChange) {
        for container in self.containers.ready() {
            self.change_hosts(&container, change);
        }
    }

    /// Change the `/etc/hosts` of `container`, in place. A container whose
    /// `/etc/hosts` is a mount of the user's is left alone; a failure is
    /// only logged (the interface itself is configured).
    fn change_hosts(&self, container: &Container, change: HostsChange) {
        let extra = self.network.as_deref().map_or(&[][..], |n| &n.extra_hosts);
        let edited = etc_files::edit(
            &container.layout.etc(),
            etc_files::HOSTS,
            |hosts| match change {
                HostsChange::Add(a) => files::hosts_with_address(hosts, a, &container.hostname),
                HostsChange::Remove(a) => files::hosts_without_address(hosts, a, extra),
            },
        );
        match edited {
            Ok(true) => debug!("container {}: /etc/hosts: {change:?}", container.id),
            Ok(false) => {}
            Err(e) => warning!("container {}: /etc/hosts: {change:?}: {e}", container.id),
        }
    }
}
