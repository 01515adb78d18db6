//! The data plane of box networking, as a box's supervisor drives it: one
//! network namespace per network, held by its helper (`a3s-box-netd`),
//! holding a bridge, the uplink (pasta), the DNS server and the nft rules;
//! one TAP per box and network, handed to QEMU as a descriptor; published
//! ports relayed by the supervisor ([`proxy`]). See `docs/networking.md`.
//!
//! A supervisor uses [`PreparedNetwork`]:
//! 1. [`PreparedNetwork::prepare`] before the VM: checks, host ports bound
//!    (a port in use fails here, nothing else made), one attach per
//!    network ([`client`]);
//! 2. [`PreparedNetwork::qemu`] (NICs and their descriptors),
//!    [`PreparedNetwork::guest`] (the guest's `NetworkConfig`),
//!    [`PreparedNetwork::instance`] and [`PreparedNetwork::port_map`] (the
//!    seed contract's fields);
//! 3. [`PreparedNetwork::start`] once QEMU runs: the port relays, and a
//!    watch on each helper (a helper that dies kills the VM, and
//!    [`PreparedNetwork::failure`] says why: never a silent disconnect);
//! 4. while the VM runs, [`PreparedNetwork::connect`] and
//!    [`PreparedNetwork::disconnect`] put a spare NIC on a network or park
//!    one again (`live`);
//! 5. drop it once the VM is gone: the box is detached everywhere.

pub mod client;
mod live;
pub mod mode;
pub mod proxy;
pub mod seqpacket;
pub mod state;
pub mod wire;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use a3s_box_core::guest::message::{
    DnsConfig, HostEntry, InterfaceConfig, Ipv4Cidr, MacAddr as GuestMac, NetworkConfig,
};
use a3s_box_core::spec::{HostAddr, MacAddr, NetworkMode, NetworkSpec};
use a3s_box_core::{BoxError, NetworkInstanceConfig, Result};
use tokio::task::JoinHandle;

use self::client::Attached;
use self::proxy::PortProxies;
use self::state::{EndpointState, NetworkState};
use self::wire::{AttachRequest, EgressRequest, PROTOCOL_VERSION};
use super::ports::{self, BoundPort};
use super::store::{NetworkRecord, NetworkStore};
use crate::config::EngineConfig;
use crate::vmm::plan::{Device, NetBackend, NetDevice};
use crate::vmm::qemu::provider::PassFd;

/// QEMU gets the TAPs from this descriptor number on.
pub const FIRST_TAP_FD: RawFd = 20;
/// Most NICs a box has, spares included (a spare's name holds its slot in
/// one hex digit).
const MAX_NICS: usize = 16;

/// Who the box is, for its networks.
#[derive(Debug, Clone, Copy)]
pub struct BoxIdentity<'a> {
    /// Its full id.
    pub id: &'a str,
    /// Its name (`None`: an anonymous foreground box, known by its short id).
    pub name: Option<&'a str>,
    /// Its directory (where [`state::NETWORK_STATE_FILE`] goes).
    pub dir: &'a Path,
    /// Spare NICs to boot with (parked in its first network's namespace).
    pub spare_nics: u8,
}

/// One network the box is on.
#[derive(Debug)]
struct Link {
    attachment: wire::Attachment,
    /// Open while the box is attached.
    connection: seqpacket::SeqPacket,
    socket: PathBuf,
    /// The box's NIC ([`PreparedNetwork::slots`]) on this network.
    slot: usize,
    /// `--network-alias`es here.
    aliases: Vec<String>,
}

/// One of the box's NICs, in QEMU's order: its MAC is fixed at boot, its
/// TAP moves between networks.
#[derive(Debug)]
struct Slot {
    mac: MacAddr,
    tap: Arc<OwnedFd>,
}

/// A box's networks, from before its VM boots until it is gone.
#[derive(Debug)]
pub struct PreparedNetwork {
    box_id: String,
    name: String,
    dir: PathBuf,
    links: Vec<Arc<Link>>,
    /// Every NIC: one per network at boot, then the spares.
    slots: Vec<Slot>,
    /// Slots whose TAPs are parked in the first network's namespace.
    parked: Vec<usize>,
    /// The first network's helper socket, where spares park.
    park_socket: Option<PathBuf>,
    /// Its attach connection, kept once the box left that network (the
    /// helper, and the spares parked in its namespace, must stay).
    park_hold: Option<Arc<Link>>,
    /// The network whose gateway is the box's default route.
    route: Option<String>,
    ports: Vec<BoundPort>,
    guest: Option<NetworkConfig>,
    proxies: Option<PortProxies>,
    watchers: HashMap<String, JoinHandle<()>>,
    vm: Option<Arc<OwnedFd>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl Drop for PreparedNetwork {
    fn drop(&mut self) {
        for w in self.watchers.values() {
            w.abort();
        }
        if !self.slots.is_empty() {
            NetworkState::remove(&self.dir);
        }
    }
}

/// The MAC of the box's spare NIC `slot`: locally administered, unicast,
/// from the box id.
fn spare_mac(box_id: &str, slot: usize) -> MacAddr {
    let hex: Vec<u8> = box_id
        .as_bytes()
        .chunks(2)
        .take(3)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .unwrap_or(0)
        })
        .collect();
    let byte = |i: usize| hex.get(i).copied().unwrap_or(0);
    MacAddr([0x06, 0xa3, byte(0), byte(1), byte(2), slot as u8])
}

impl PreparedNetwork {
    /// Prepare the networks `spec` asks for (`None`, or `--network none`:
    /// loopback only). Errors leave nothing behind: no host port, no
    /// address, no helper started for nothing.
    pub async fn prepare(
        engine: &EngineConfig,
        who: BoxIdentity<'_>,
        spec: Option<&NetworkSpec>,
    ) -> Result<PreparedNetwork> {
        let name = who
            .name
            .map_or_else(|| short(who.id).to_string(), str::to_string);
        let mut prepared = PreparedNetwork {
            box_id: who.id.to_string(),
            name: name.clone(),
            dir: who.dir.to_path_buf(),
            links: Vec::new(),
            slots: Vec::new(),
            parked: Vec::new(),
            park_socket: None,
            park_hold: None,
            route: None,
            ports: Vec::new(),
            guest: None,
            proxies: None,
            watchers: HashMap::new(),
            vm: None,
            lost: Arc::default(),
        };
        let Some(spec) = spec.filter(|s| s.mode != NetworkMode::None) else {
            return Ok(prepared);
        };
        let store = NetworkStore::new(&engine.home_dir());
        let networks = resolve_networks(&store, spec)?;
        let first = &networks[0].0;
        let host_gateway = host_gateway(engine, first);
        check(spec, first, host_gateway)?;
        // Host ports first: a port in use fails before anything is made.
        prepared.ports = ports::bind_ports(&ports::published(spec))?;
        let egress = egress_request(spec, &networks, host_gateway);
        let internal_only = networks.iter().all(|(n, _)| n.internal);
        let spare_slots: Vec<usize> = (networks.len()..MAX_NICS.max(networks.len()))
            .take(usize::from(who.spare_nics))
            .collect();
        let mut spares = Vec::new();
        for (i, (net, attachment)) in networks.iter().enumerate() {
            let dir = store.network_dir(&net.name);
            let request = AttachRequest {
                mac: if i == 0 { spec.mac_address } else { None },
                // Spares park in the first network's namespace.
                spares: match i {
                    0 => spare_slots
                        .iter()
                        .map(|&slot| wire::spare_name(who.id, slot))
                        .collect(),
                    _ => Vec::new(),
                },
                ..attach_request(
                    who.id,
                    &name,
                    attachment,
                    spec,
                    egress.clone(),
                    internal_only,
                )
            };
            let aliases = request.aliases.clone();
            let Attached {
                attachment,
                taps,
                connection,
            } = client::attach(engine, net, &dir, request, None).await?;
            let mut taps = taps.into_iter();
            let tap = taps.next().ok_or_else(|| {
                BoxError::io(
                    "attach to the network",
                    std::io::Error::other("the helper sent no TAP"),
                )
            })?;
            prepared.slots.push(Slot {
                mac: attachment.mac,
                tap: Arc::new(tap),
            });
            if i == 0 {
                spares = spare_slots
                    .iter()
                    .zip(taps)
                    .map(|(&slot, tap)| Slot {
                        mac: spare_mac(who.id, slot),
                        tap: Arc::new(tap),
                    })
                    .collect();
                prepared.park_socket = Some(client::socket_path(&dir)?);
            }
            prepared.links.push(Arc::new(Link {
                attachment,
                connection,
                socket: client::socket_path(&dir)?,
                slot: i,
                aliases,
            }));
        }
        // The spares' NICs come after the networks'.
        prepared.parked = (networks.len()..networks.len() + spares.len()).collect();
        prepared.slots.extend(spares);
        prepared.route = networks
            .first()
            .filter(|(n, _)| !n.internal)
            .map(|(n, _)| n.name.clone());
        prepared.guest = Some(prepared.guest_config(spec));
        prepared.state().write(who.dir)?;
        Ok(prepared)
    }

    /// The NICs for QEMU (one per network, in order, then the spares) and
    /// the TAP descriptors QEMU inherits for them.
    pub fn qemu(&self) -> (Vec<Device>, Vec<PassFd>) {
        let mut devices = Vec::new();
        let mut fds = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let fd = FIRST_TAP_FD + i as RawFd;
            devices.push(Device::Net(NetDevice {
                id: format!("net{i}"),
                mac: slot.mac.0,
                backend: NetBackend::TapFd { fd },
            }));
            fds.push(PassFd {
                fd: slot.tap.clone(),
                target: fd,
            });
        }
        (devices, fds)
    }

    /// What the guest configures (`None`: loopback only).
    pub fn guest(&self) -> Option<NetworkConfig> {
        self.guest.clone()
    }

    /// The seed contract's `InstanceSpec.network`: the first NIC (its
    /// device comes from [`PreparedNetwork::qemu`], so the socket path is
    /// empty).
    pub fn instance(&self) -> Option<NetworkInstanceConfig> {
        let a = &self.links.first()?.attachment;
        Some(NetworkInstanceConfig {
            passt_socket_path: PathBuf::new(),
            ip_address: a.ipv4,
            gateway: a.gateway,
            prefix_len: a.prefix_len,
            mac_address: a.mac.0,
            dns_servers: vec![a.gateway],
        })
    }

    /// The seed contract's `InstanceSpec.port_map`: `HOST_PORT:BOX_PORT`
    /// (UDP ones with `/udp`), for the record; the supervisor relays them.
    pub fn port_map(&self) -> Vec<String> {
        self.ports
            .iter()
            .map(|p| match p.protocol {
                a3s_box_core::spec::Protocol::Tcp => {
                    format!("{}:{}", p.host_port, p.container_port)
                }
                a3s_box_core::spec::Protocol::Udp => {
                    format!("{}:{}/udp", p.host_port, p.container_port)
                }
            })
            .collect()
    }

    /// Once QEMU (`vm_pid`) runs: relay the published ports, and kill the
    /// VM if a network's helper dies. Must be called within a tokio
    /// runtime.
    pub fn start(&mut self, vm_pid: u32) -> Result<()> {
        let Some(first) = self.links.first() else {
            return Ok(());
        };
        self.proxies = Some(
            PortProxies::start(&mut self.ports, first.socket.clone(), &self.box_id)
                .map_err(|e| BoxError::io("relay the published ports", e))?,
        );
        let vm = pidfd_open(vm_pid).map_err(|e| BoxError::io("watch the VM", e))?;
        self.vm = Some(Arc::new(vm));
        for link in self.links.clone() {
            self.watch(link);
        }
        Ok(())
    }

    /// Kill the VM if `link`'s helper dies (never a silent disconnect).
    fn watch(&mut self, link: Arc<Link>) {
        let Some(vm) = self.vm.clone() else {
            return;
        };
        let lost = self.lost.clone();
        let net = link.attachment.network.clone();
        let watcher = tokio::spawn(async move {
            let _ = link.connection.closed().await;
            let net = &link.attachment.network;
            *lost.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!(
                "the helper of network {net} (a3s-box-netd, pid {}) exited: the box lost its network and was stopped (see networks/{net}/netd.log)",
                link.attachment.netd_pid
            ));
            tracing::warn!(network = %net, "network helper gone: killing the VM");
            // SAFETY: pidfd_send_signal on a pidfd we own; no pointers.
            unsafe {
                libc::syscall(
                    libc::SYS_pidfd_send_signal,
                    vm.as_raw_fd(),
                    libc::SIGKILL,
                    std::ptr::null::<libc::siginfo_t>(),
                    0,
                )
            };
        });
        if let Some(old) = self.watchers.insert(net, watcher) {
            old.abort();
        }
    }

    /// Why the box lost its network while it ran, if it did.
    pub fn failure(&self) -> Option<BoxError> {
        let lost = self
            .lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()?;
        Some(BoxError::Unavailable(lost))
    }

    /// `outcome` of the run, unless the network was lost (the real reason
    /// the VM stopped).
    pub fn outcome<T>(&self, outcome: Result<T>) -> Result<T> {
        match self.failure() {
            Some(e) => Err(e),
            None => outcome,
        }
    }

    fn guest_config(&self, spec: &NetworkSpec) -> NetworkConfig {
        let attachments: Vec<_> = self.links.iter().map(|l| &l.attachment).collect();
        // The default route: the first network unless it is --internal.
        let route = attachments
            .first()
            .filter(|a| !a.internal)
            .map(|a| a.gateway);
        let interfaces = attachments
            .iter()
            .enumerate()
            .map(|(i, a)| InterfaceConfig {
                mac: GuestMac(a.mac.0),
                ipv4: Some(Ipv4Cidr {
                    address: a.ipv4,
                    prefix_len: a.prefix_len,
                }),
                gateway: if i == 0 { route } else { None },
                mtu: Some(a.mtu),
            })
            .collect();
        let host_gateway = attachments.first().and_then(|a| a.host_gateway);
        let extra_hosts = spec
            .extra_hosts
            .iter()
            .filter_map(|h| {
                let address = match h.addr {
                    HostAddr::Ip(ip) => ip,
                    HostAddr::HostGateway => IpAddr::V4(host_gateway?),
                };
                Some(HostEntry {
                    name: h.name.clone(),
                    address,
                })
            })
            .collect();
        NetworkConfig {
            interfaces,
            // Every name goes through the network's DNS server (which
            // forwards to --dns, or the host's servers): boxes' names and
            // the egress allow-list need it to.
            dns: attachments.first().map(|a| DnsConfig {
                nameservers: vec![IpAddr::V4(a.gateway)],
                search: spec.dns.search.clone(),
                options: spec.dns.options.clone(),
            }),
            extra_hosts,
        }
    }

    fn state(&self) -> NetworkState {
        NetworkState {
            networks: self
                .links
                .iter()
                .map(|l| {
                    let a = &l.attachment;
                    EndpointState {
                        network: a.network.clone(),
                        network_id: a.network_id.clone(),
                        ipv4: a.ipv4,
                        prefix_len: a.prefix_len,
                        gateway: a.gateway,
                        mac: a.mac,
                        aliases: l.aliases.clone(),
                        host_gateway: a.host_gateway,
                    }
                })
                .collect(),
            ports: self.ports.iter().map(BoundPort::mapping).collect(),
        }
    }
}

/// How many NICs `spec`'s networks take (spares not counted).
pub fn nic_count(spec: Option<&NetworkSpec>) -> usize {
    match spec.map(|s| &s.mode) {
        None | Some(NetworkMode::None) => 0,
        Some(NetworkMode::Default) => 1,
        Some(NetworkMode::Networks(list)) => list.len(),
    }
}

/// What `create` and `run` check before anything is made: every network
/// named exists, an `--ip` is a host address of its network, and the
/// first network can give what `-p` and `host-gateway` need.
pub fn check_spec(engine: &EngineConfig, spec: &NetworkSpec) -> Result<()> {
    if spec.mode == NetworkMode::None {
        if let Some(h) = spec
            .extra_hosts
            .iter()
            .find(|h| h.addr == HostAddr::HostGateway)
        {
            return Err(BoxError::Invalid(format!(
                "--add-host {h}: a box on --network none has no NIC, so there is no host gateway"
            )));
        }
        return Ok(());
    }
    let store = NetworkStore::new(&engine.home_dir());
    let networks = resolve_networks(&store, spec)?;
    for (net, attachment) in &networks {
        if let Some(ip) = attachment.as_ref().and_then(|a| a.ipv4) {
            super::ipam::Ipam::new(&store, net)?.check_requested(ip)?;
        }
    }
    let first = &networks[0].0;
    let host_gateway = host_gateway(engine, first);
    check(spec, first, host_gateway)
}

/// The networks of `spec`, in order, with their attachments (`None` for
/// the default network).
fn resolve_networks(
    store: &NetworkStore,
    spec: &NetworkSpec,
) -> Result<Vec<(NetworkRecord, Option<a3s_box_core::spec::NetworkAttachment>)>> {
    match &spec.mode {
        NetworkMode::None => Ok(Vec::new()),
        NetworkMode::Default => Ok(vec![(store.default_network()?, None)]),
        NetworkMode::Networks(list) if list.is_empty() => Err(BoxError::Invalid(
            "name at least one network, or use none or default".into(),
        )),
        NetworkMode::Networks(list) => list
            .iter()
            .map(|a| Ok((store.get(&a.name)?, Some(a.clone()))))
            .collect(),
    }
}

/// What the networks cannot give.
fn check(spec: &NetworkSpec, first: &NetworkRecord, host_gateway: Option<Ipv4Addr>) -> Result<()> {
    if first.internal && (!spec.ports.is_empty() || spec.publish_all) {
        return Err(BoxError::Invalid(format!(
            "network {} is --internal: nothing outside it can reach the box, so its ports cannot be published (drop -p/-P, or put a non-internal network first)",
            first.name
        )));
    }
    if host_gateway.is_none() {
        if let Some(h) = spec
            .extra_hosts
            .iter()
            .find(|h| h.addr == HostAddr::HostGateway)
        {
            let why = if first.internal {
                format!("network {} is --internal", first.name)
            } else {
                "the engine maps no host gateway (host-gateway is off in config.json)".into()
            };
            return Err(BoxError::Invalid(format!(
                "--add-host {h}: there is no host gateway: {why}"
            )));
        }
    }
    Ok(())
}

/// The allow-list the helpers enforce: the box's rules and its networks'.
/// An attach of box `box_id` (called `name`) to one network with
/// `aliases` (its `attachment` of `spec`), before its MAC, spares and
/// adoption are said.
/// The host gateway boxes whose first network is `first` see, unless
/// `host-gateway` is turned off.
fn host_gateway(engine: &EngineConfig, first: &NetworkRecord) -> Option<Ipv4Addr> {
    first.host_gateway().filter(|_| engine.network.host_gateway)
}

fn attach_request(
    box_id: &str,
    name: &str,
    attachment: &Option<a3s_box_core::spec::NetworkAttachment>,
    spec: &NetworkSpec,
    egress: Option<EgressRequest>,
    internal_only: bool,
) -> AttachRequest {
    AttachRequest {
        version: PROTOCOL_VERSION,
        box_id: box_id.to_string(),
        name: name.to_string(),
        aliases: attachment
            .as_ref()
            .map(|a| a.aliases.clone())
            .unwrap_or_default(),
        ipv4: attachment.as_ref().and_then(|a| a.ipv4),
        mac: None,
        egress,
        dns_servers: spec.dns.servers.clone(),
        internal_only,
        spares: Vec::new(),
        adopt: None,
    }
}

fn egress_request(
    spec: &NetworkSpec,
    networks: &[(NetworkRecord, Option<a3s_box_core::spec::NetworkAttachment>)],
    host_gateway: Option<Ipv4Addr>,
) -> Option<EgressRequest> {
    let mut rules = spec.egress.clone();
    for (net, _) in networks {
        rules.extend(net.egress.iter().cloned());
    }
    if rules.is_empty() {
        return None;
    }
    let hosts = spec
        .extra_hosts
        .iter()
        .filter_map(|h| {
            let ip = match h.addr {
                HostAddr::Ip(ip) => ip,
                HostAddr::HostGateway => IpAddr::V4(host_gateway?),
            };
            Some((h.name.clone(), ip))
        })
        .collect();
    Some(EgressRequest { rules, hosts })
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags; the result is checked.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_macs_are_local_unicast_and_differ_by_slot_and_box() {
        let a = "0123456789abcdef".repeat(4);
        let b = "fedcba9876543210".repeat(4);
        let mac = spare_mac(&a, 2);
        assert_eq!(mac.0, [0x06, 0xa3, 0x01, 0x23, 0x45, 2]);
        assert_eq!(mac.0[0] & 1, 0, "unicast");
        assert_eq!(mac.0[0] & 2, 2, "locally administered");
        assert_ne!(spare_mac(&a, 3), mac);
        assert_ne!(spare_mac(&b, 2), mac);
    }
}
