//! The boxes on the network, as the helper keeps them: each one's lease
//! (`network::ipam`), TAP, anti-spoofing elements, egress table
//! (`network::egress`) and DNS records (`network::dns`). An attach makes
//! all of them or none; a detach removes all of them. Spare TAPs are made
//! parked (down, off the bridge), lent to other namespaces, adopted from
//! a lender and parked again on release (`network connect`/`disconnect`
//! of a running box).

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::spec::Protocol;
use a3s_box_core::{BoxError, Result};
use a3s_box_runtime::network::dataplane::wire::{
    is_spare_of, AttachRequest, Attachment, ConnectRequest, LendRequest, ReleaseRequest,
    RenameRequest, HOST_GATEWAY, NETWORK_MTU, PROTOCOL_VERSION,
};
use a3s_box_runtime::network::dns::resolv::DNS_PORT;
use a3s_box_runtime::network::dns::{ClientPolicy, Directory, DnsObserver, HostEntry};
use a3s_box_runtime::network::egress::{
    Attach, EgressPlan, EgressPolicy, Firewall, FirewallFeed, Netns, Nft,
};
use a3s_box_runtime::network::ipam::{Ipam, Lease, LeaseRequest};
use a3s_box_runtime::network::store::{NetworkRecord, NetworkStore};
use a3s_box_runtime::state::events::EventLog;

use crate::rtnl::{self, LinkChange, Rtnl};
use crate::rules::{self, BRIDGE};
use crate::{gateway, tap, Options};

/// How long a published port's connection to the box may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One attached box.
#[derive(Debug)]
struct Attached {
    name: String,
    lease: Lease,
    tap: String,
    firewall: Option<Arc<Firewall>>,
    /// Denied destinations already reported, with their packet counts.
    denied: HashMap<(IpAddr, Protocol, u16), u64>,
}

/// The boxes of this network.
#[derive(Debug)]
pub struct Boxes {
    network: NetworkRecord,
    ipam: Ipam,
    directory: Directory,
    feed: Arc<FirewallFeed>,
    nft: Nft,
    host_gateway: Option<Ipv4Addr>,
    /// The host-gateway relay runs: boxes with an egress table are kept
    /// off it (`gateway::guard_add`).
    gateway_relay: bool,
    events: EventLog,
    table: Mutex<HashMap<String, Attached>>,
}

impl Boxes {
    /// The (empty) table of `record`'s boxes. Leases left by an earlier
    /// helper are dropped: a new helper has no box yet. `gateway_relay`:
    /// the host-gateway relay runs.
    pub fn new(
        options: &Options,
        record: &NetworkRecord,
        has_uplink: bool,
        gateway_relay: bool,
        events: EventLog,
    ) -> std::result::Result<Self, String> {
        let store = NetworkStore::at(options.dir.parent().unwrap_or(&options.dir));
        let ipam = Ipam::new(&store, record).map_err(|e| e.to_string())?;
        if let Err(e) = ipam.reconcile(|_| false) {
            tracing::warn!("leases of an earlier helper: {e}");
        }
        let sink = {
            let (events, network) = (events.clone(), record.name.clone());
            move |q: &a3s_box_runtime::network::dns::DeniedQuery| {
                let Some(id) = &q.box_id else { return };
                events.record(
                    &Event::now(EventType::Container, EventAction::EgressDenied, id)
                        .with("destination", &q.name)
                        .with("query", &q.query_type)
                        .with("network", &network),
                );
            }
        };
        Ok(Boxes {
            network: record.clone(),
            ipam,
            directory: Directory::new(),
            feed: Arc::new(FirewallFeed::new(None).on_denied(sink)),
            nft: Nft::new(Netns::Current),
            host_gateway: (has_uplink && options.map_host_gateway).then_some(HOST_GATEWAY),
            gateway_relay,
            events,
            table: Mutex::default(),
        })
    }

    /// The DNS server's tables.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The DNS server's observer.
    pub fn feed(&self) -> Arc<dyn DnsObserver> {
        self.feed.clone()
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Attached>> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Put a box on the network: lease, TAP, rules, names. The
    /// descriptors of its TAP (none when it was adopted) and of its spares
    /// come back with the attachment. `parking`: where an adopted TAP goes
    /// back if the attach fails.
    pub fn attach(
        &self,
        req: AttachRequest,
        parking: Option<BorrowedFd<'_>>,
    ) -> Result<(Attachment, Vec<OwnedFd>)> {
        check_version(req.version)?;
        if let Some(bad) = req.spares.iter().find(|n| !is_spare_of(&req.box_id, n)) {
            return Err(BoxError::Invalid(format!(
                "spare TAP name {bad} is not one of box {}",
                short(&req.box_id)
            )));
        }
        if self.table().contains_key(&req.box_id) {
            // Its TAP here is in use: never parked on this error.
            return Err(BoxError::Conflict(format!(
                "box {} is already on network {}",
                short(&req.box_id),
                self.network.name
            )));
        }
        let attached = self.attach_inner(&req);
        if attached.is_err() {
            if let (Some(spare), Some(ns)) = (&req.adopt, parking) {
                let tap = rules::tap_name(&req.box_id);
                if let Err(e) = park(&tap, ns, spare) {
                    tracing::warn!("park {tap} again as {spare}: {e}");
                }
            }
        }
        attached
    }

    fn attach_inner(&self, req: &AttachRequest) -> Result<(Attachment, Vec<OwnedFd>)> {
        let req = req.clone();
        let lease = self.ipam.allocate(
            &req.box_id,
            LeaseRequest {
                ipv4: req.ipv4,
                mac: req.mac,
            },
        )?;
        let tap_name = rules::tap_name(&req.box_id);
        let made = self
            .plumb(&req, &lease, &tap_name)
            .and_then(|(tap, firewall)| {
                let mut fds: Vec<OwnedFd> = tap.into_iter().collect();
                for spare in &req.spares {
                    match make_spare(spare) {
                        Ok(fd) => fds.push(fd),
                        Err(e) => {
                            if let Some(fw) = &firewall {
                                let _ = fw.remove();
                                if self.gateway_relay {
                                    let _ = self.nft.apply(&gateway::guard_remove(lease.ipv4));
                                }
                            }
                            return Err(e);
                        }
                    }
                }
                Ok((fds, firewall))
            });
        let (fds, firewall) = match made {
            Ok(done) => done,
            Err(e) => {
                let _ = self
                    .nft
                    .apply(&rules::guard_remove(&tap_name, lease.mac, lease.ipv4));
                let _ = self.ipam.release(&req.box_id);
                return Err(e);
            }
        };
        let prefix_len = self.network.subnet.prefix_len;
        let default = self.network.is_default();
        if !default {
            self.directory.add_host(
                &self.network.name,
                HostEntry {
                    box_id: req.box_id.clone(),
                    name: req.name.clone(),
                    aliases: req.aliases.clone(),
                    ipv4: lease.ipv4,
                },
            );
        }
        let upstreams = if req.internal_only || self.network.internal {
            Some(Vec::new())
        } else if req.dns_servers.is_empty() {
            None
        } else {
            Some(
                req.dns_servers
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, DNS_PORT))
                    .collect(),
            )
        };
        let policy = req
            .egress
            .as_ref()
            .map(|e| EgressPolicy::new(&e.rules, &e.hosts));
        self.directory.set_client(
            IpAddr::V4(lease.ipv4),
            ClientPolicy {
                box_id: Some(req.box_id.clone()),
                // The default network resolves no box names (Docker's).
                networks: if default {
                    Vec::new()
                } else {
                    vec![self.network.name.clone()]
                },
                names: policy.map(|p| Arc::new(p.names)),
                upstreams,
            },
        );
        if let Some(fw) = &firewall {
            self.feed.insert(&req.box_id, fw.clone());
        }
        let attachment = Attachment {
            network: self.network.name.clone(),
            network_id: self.network.id.clone(),
            ipv4: lease.ipv4,
            prefix_len,
            mac: lease.mac,
            gateway: self.network.gateway,
            mtu: NETWORK_MTU,
            host_gateway: self.host_gateway,
            internal: self.network.internal,
            tap: tap_name.clone(),
            netd_pid: std::process::id(),
            spares: req.spares.clone(),
        };
        tracing::info!(
            box_id = short(&req.box_id),
            ip = %lease.ipv4,
            tap = %tap_name,
            egress = firewall.is_some(),
            "attached"
        );
        self.table().insert(
            req.box_id,
            Attached {
                name: req.name,
                lease,
                tap: tap_name,
                firewall,
                denied: HashMap::new(),
            },
        );
        Ok((attachment, fds))
    }

    /// The TAP on the bridge, its anti-spoofing elements and its egress
    /// table.
    fn plumb(
        &self,
        req: &AttachRequest,
        lease: &Lease,
        tap_name: &str,
    ) -> Result<(Option<OwnedFd>, Option<Arc<Firewall>>)> {
        let tap = match &req.adopt {
            // Lent by the parking helper: already here under its name.
            Some(_) => None,
            None => Some(self.make_tap(tap_name)?),
        };
        let bridge = rtnl::index(BRIDGE).map_err(|e| BoxError::io("find the bridge", e))?;
        let index = rtnl::index(tap_name).map_err(|e| BoxError::io("find the TAP", e))?;
        Rtnl::open()
            .and_then(|mut r| {
                r.set_link(
                    index,
                    LinkChange {
                        mtu: Some(NETWORK_MTU),
                        master: Some(bridge),
                        up: true,
                    },
                )
            })
            .map_err(|e| BoxError::io(format!("put TAP {tap_name} on the bridge"), e))?;
        self.nft
            .apply(&rules::guard_add(tap_name, lease.mac, lease.ipv4))?;
        let Some(egress) = &req.egress else {
            return Ok((tap, None));
        };
        let plan = EgressPlan {
            table: format!(
                "a3s_{}",
                rules::tap_name(&req.box_id).trim_start_matches(rules::TAP_PREFIX)
            ),
            attach: vec![Attach::Forward {
                iifname: Some(BRIDGE.into()),
                saddr: Some(IpAddr::V4(lease.ipv4)),
            }],
            policy: EgressPolicy::new(&egress.rules, &egress.hosts),
            resolvers: vec![IpAddr::V4(self.network.gateway)],
            host_gateway: self.host_gateway.map(IpAddr::V4),
            exempt_mark: None,
            log_tag: short(&req.box_id).to_string(),
        };
        let firewall = Firewall::apply(self.nft.clone(), &plan)?;
        if self.gateway_relay {
            // Its connections to the host gateway must meet its table.
            if let Err(e) = self.nft.apply(&gateway::guard_add(lease.ipv4)) {
                let _ = firewall.remove();
                return Err(e);
            }
        }
        Ok((tap, Some(Arc::new(firewall))))
    }

    /// Make the TAP `tap_name`; its descriptor.
    fn make_tap(&self, tap_name: &str) -> Result<OwnedFd> {
        match tap::create(tap_name) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                // A TAP of an earlier run whose descriptors are still
                // being closed: take it down and make a new one.
                if let Ok(stale) = rtnl::index(tap_name) {
                    let _ = Rtnl::open().and_then(|mut r| r.del_link(stale));
                }
                tap::create(tap_name)
            }
            other => other,
        }
        .map_err(|e| BoxError::io(format!("create TAP {tap_name}"), e))
    }

    /// Move a parked spare of `req.box_id` into the namespace `to` under
    /// `req.name` (`network connect` of a running box).
    pub fn lend(&self, req: &LendRequest, to: BorrowedFd<'_>) -> Result<()> {
        check_version(req.version)?;
        if !is_spare_of(&req.box_id, &req.spare) {
            return Err(BoxError::Invalid(format!(
                "{} is not a spare NIC of box {}",
                req.spare,
                short(&req.box_id)
            )));
        }
        let index = rtnl::index(&req.spare).map_err(|e| {
            BoxError::NotRunning(format!(
                "spare NIC {} of box {} is not parked on network {}: {e}",
                req.spare,
                short(&req.box_id),
                self.network.name
            ))
        })?;
        Rtnl::open()
            .and_then(|mut r| r.move_to(index, to, &req.name))
            .map_err(|e| BoxError::io(format!("lend spare NIC {}", req.spare), e))?;
        tracing::info!(box_id = short(&req.box_id), spare = %req.spare, "lent");
        Ok(())
    }

    /// Take the box off the network and park its TAP in the namespace `to`
    /// as `req.spare` (`network disconnect` of a running box).
    pub fn release(&self, box_id: &str, req: &ReleaseRequest, to: BorrowedFd<'_>) -> Result<()> {
        check_version(req.version)?;
        if !is_spare_of(box_id, &req.spare) {
            return Err(BoxError::Invalid(format!(
                "{} is not a spare NIC of box {}",
                req.spare,
                short(box_id)
            )));
        }
        let tap = self
            .table()
            .get(box_id)
            .map(|a| a.tap.clone())
            .ok_or_else(|| {
                BoxError::NotRunning(format!(
                    "box {} is not on network {}",
                    short(box_id),
                    self.network.name
                ))
            })?;
        self.detach(box_id);
        park(&tap, to, &req.spare)
            .map_err(|e| BoxError::io(format!("park TAP {tap} as {}", req.spare), e))?;
        tracing::info!(box_id = short(box_id), spare = %req.spare, "released");
        Ok(())
    }

    /// Take a box off the network (nothing happens for a box not on it).
    pub fn detach(&self, box_id: &str) {
        let Some(gone) = self.table().remove(box_id) else {
            return;
        };
        self.directory.remove_host(&self.network.name, box_id);
        self.directory.remove_client(IpAddr::V4(gone.lease.ipv4));
        self.feed.remove(box_id);
        if let Some(fw) = &gone.firewall {
            self.report_denied_of(box_id, &gone.name, fw, &mut HashMap::new());
            if let Err(e) = fw.remove() {
                tracing::warn!("remove egress table {}: {e}", fw.table());
            }
            if self.gateway_relay {
                if let Err(e) = self.nft.apply(&gateway::guard_remove(gone.lease.ipv4)) {
                    tracing::warn!("let {} use the host-gateway relay: {e}", gone.lease.ipv4);
                }
            }
        }
        if let Err(e) = self.nft.apply(&rules::guard_remove(
            &gone.tap,
            gone.lease.mac,
            gone.lease.ipv4,
        )) {
            tracing::warn!("remove the guard of {}: {e}", gone.tap);
        }
        if let Err(e) = self.ipam.release(box_id) {
            tracing::warn!("release the address of {}: {e}", short(box_id));
        }
        tracing::info!(box_id = short(box_id), ip = %gone.lease.ipv4, "detached");
    }

    /// An attached box has a new name: its DNS records follow (aliases
    /// are per attachment and stay).
    pub fn rename(&self, req: &RenameRequest) -> Result<()> {
        check_version(req.version)?;
        let mut table = self.table();
        let attached = table.get_mut(&req.box_id).ok_or_else(|| {
            BoxError::NotRunning(format!(
                "box {} is not on network {}",
                short(&req.box_id),
                self.network.name
            ))
        })?;
        attached.name = req.name.clone();
        self.directory.rename(&req.box_id, &req.name);
        tracing::info!(box_id = short(&req.box_id), name = %req.name, "renamed");
        Ok(())
    }

    /// A socket connected, from inside the namespace, to an attached
    /// box's port.
    pub async fn connect(&self, req: &ConnectRequest) -> Result<OwnedFd> {
        check_version(req.version)?;
        let ip = self
            .table()
            .get(&req.box_id)
            .map(|a| a.lease.ipv4)
            .ok_or_else(|| {
                BoxError::NotRunning(format!(
                    "box {} is not on network {}",
                    short(&req.box_id),
                    self.network.name
                ))
            })?;
        let to = SocketAddr::new(IpAddr::V4(ip), req.port);
        let failed =
            |e: std::io::Error| BoxError::io(format!("connect to {to}/{}", req.protocol), e);
        match req.protocol {
            Protocol::Tcp => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(to))
                        .await
                        .map_err(|_| failed(std::io::ErrorKind::TimedOut.into()))?
                        .map_err(failed)?;
                stream.set_nodelay(true).map_err(failed)?;
                let stream = stream.into_std().map_err(failed)?;
                Ok(stream.into())
            }
            Protocol::Udp => {
                let socket =
                    std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(failed)?;
                socket.connect(to).map_err(failed)?;
                Ok(socket.into())
            }
        }
    }

    /// Record new denied destinations of every box with an egress table
    /// as `egress_denied` events.
    pub fn report_denied(&self) {
        let with_tables: Vec<(String, String, Arc<Firewall>, HashMap<_, _>)> = self
            .table()
            .iter()
            .filter_map(|(id, a)| {
                Some((
                    id.clone(),
                    a.name.clone(),
                    a.firewall.clone()?,
                    a.denied.clone(),
                ))
            })
            .collect();
        for (id, name, fw, mut seen) in with_tables {
            self.report_denied_of(&id, &name, &fw, &mut seen);
            if let Some(a) = self.table().get_mut(&id) {
                a.denied = seen;
            }
        }
    }

    fn report_denied_of(
        &self,
        box_id: &str,
        name: &str,
        fw: &Firewall,
        seen: &mut HashMap<(IpAddr, Protocol, u16), u64>,
    ) {
        let Ok(denied) = fw.denied() else {
            return;
        };
        let mut now = HashSet::new();
        for d in denied {
            let key = (d.addr, d.protocol, d.port);
            now.insert(key);
            if seen.insert(key, d.packets).is_none() {
                let destination = match d.addr {
                    IpAddr::V6(a) => format!("[{a}]:{}/{}", d.port, d.protocol),
                    IpAddr::V4(a) => format!("{a}:{}/{}", d.port, d.protocol),
                };
                tracing::info!(box_id = short(box_id), %destination, "egress denied");
                self.events.record(
                    &Event::now(EventType::Container, EventAction::EgressDenied, box_id)
                        .with("name", name)
                        .with("destination", destination)
                        .with("network", &self.network.name),
                );
            }
        }
        seen.retain(|k, _| now.contains(k));
    }
}

/// A spare TAP `name`, parked: down, on no bridge (and not named like a
/// box's TAP, so no guard applies: it carries nothing while down).
fn make_spare(name: &str) -> Result<OwnedFd> {
    tap::create(name).map_err(|e| BoxError::io(format!("create spare TAP {name}"), e))
}

/// Take TAP `tap` down, off the bridge, and into namespace `to` as `name`.
fn park(tap: &str, to: BorrowedFd<'_>, name: &str) -> std::io::Result<()> {
    let index = rtnl::index(tap)?;
    let mut rtnl = Rtnl::open()?;
    rtnl.park(index)?;
    rtnl.move_to(index, to, name)
}

fn check_version(version: u32) -> Result<()> {
    if version == PROTOCOL_VERSION {
        return Ok(());
    }
    Err(BoxError::Unavailable(format!(
        "the network helper speaks version {PROTOCOL_VERSION} and a3s-box version {version}: \
         install both from one build (the helper restarts once its boxes are gone)"
    )))
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
