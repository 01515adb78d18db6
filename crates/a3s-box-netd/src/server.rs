//! The helper at work: the DNS server on the gateway, the supervisors'
//! socket, the host-gateway relay ([`gateway`]) and the boxes on the
//! network ([`boxes`]). It ends when the
//! network has had no box for the grace period, when the network's
//! directory or record is gone (removed, or removed and made again), or
//! when the uplink dies (every box's supervisor then sees its connection
//! end and fails its box with the reason).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use a3s_box_runtime::network::dataplane::seqpacket::{SeqPacket, SeqPacketListener};
use a3s_box_runtime::network::dataplane::wire::{
    decode, encode, Reply, Request, WireError, NETD_SOCKET,
};
use a3s_box_runtime::network::dns::resolv::{host_nameservers, DNS_PORT};
use a3s_box_runtime::network::dns::{DnsServer, DnsServerConfig, HostEntry};
use a3s_box_runtime::network::egress::{Netns, Nft};
use a3s_box_runtime::network::store::{NetworkRecord, NETWORK_FILE};
use a3s_box_runtime::state::events::{EventLog, EVENTS_FILE};
use nix::fcntl::Flock;

use crate::agent::Agent;
use crate::boxes::Boxes;
use crate::{gateway, Options};

/// How often the helper looks at its network, its boxes' denied
/// connections and its uplink.
const WATCH: Duration = Duration::from_millis(250);
/// How often the egress tables' denied sets are read.
const DENIED_POLL: Duration = Duration::from_secs(2);

/// How often the other networks' subnets are read again.
const OTHERS_POLL: Duration = Duration::from_secs(1);

/// The subnets of every other network of the home, sorted.
fn other_subnets(options: &Options, own: &NetworkRecord) -> Vec<String> {
    let Some(all) = options.dir.parent() else {
        return Vec::new();
    };
    let mut subnets: Vec<String> = std::fs::read_dir(all)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join(NETWORK_FILE)).ok())
        .filter_map(|b| serde_json::from_slice::<NetworkRecord>(&b).ok())
        .filter(|n| n.id != own.id && n.subnet.addr.is_ipv4())
        .map(|n| n.subnet.to_string())
        .collect();
    subnets.sort();
    subnets
}

/// The file where a helper lists its network's boxes for the home's other
/// helpers (see [`share_names`]).
const HOSTS_FILE: &str = "hosts.json";

/// Publish this network's boxes (`hosts.json` in its directory, when they
/// changed since `last`) and mirror the other networks' into the
/// directory: a box on several networks asks only its first network's
/// server, which so answers for all of them (Docker's embedded DNS does).
fn share_names(
    options: &Options,
    record: &NetworkRecord,
    boxes: &Boxes,
    last: &mut Option<Vec<HostEntry>>,
) {
    let directory = boxes.directory();
    let own = directory.hosts(&record.name);
    if last.as_ref() != Some(&own) {
        let path = options.dir.join(HOSTS_FILE);
        match serde_json::to_vec(&own) {
            Ok(bytes) => match a3s_box_runtime::state::write_atomic(&path, &bytes) {
                Ok(()) => *last = Some(own),
                Err(e) => tracing::warn!("write {}: {e}", path.display()),
            },
            Err(e) => tracing::warn!("encode {}: {e}", path.display()),
        }
    }
    let Some(all) = options.dir.parent() else {
        return;
    };
    let mut foreign = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(all).into_iter().flatten().flatten() {
        let dir = entry.path();
        let Some(net) = std::fs::read(dir.join(NETWORK_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<NetworkRecord>(&b).ok())
            .filter(|n| n.id != record.id && !n.is_default())
        else {
            continue;
        };
        let hosts = std::fs::read(dir.join(HOSTS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<HostEntry>>(&b).ok())
            .unwrap_or_default();
        if !hosts.is_empty() {
            foreign.insert(net.name, hosts);
        }
    }
    directory.mirror(&record.name, foreign);
}

/// Refuse routing from the bridge to `subnets`.
fn isolate(subnets: &[String]) -> a3s_box_core::Result<()> {
    a3s_box_runtime::network::egress::Nft::new(a3s_box_runtime::network::egress::Netns::Current)
        .apply(&crate::rules::others(subnets))
}

/// Where the helper says it is ready.
pub trait ReadySink {
    /// Say `line` (once).
    fn ready(&mut self, line: &str);
}

/// What `main` built before any thread.
#[derive(Debug)]
pub struct Setup {
    /// The command line.
    pub options: Options,
    /// The network.
    pub record: NetworkRecord,
    /// The host-side half.
    pub agent: Agent,
    /// pasta's pid (none on `--internal` networks).
    pub pasta: Option<u32>,
    /// The network's `netd.lock`, held until the helper exits.
    pub lock: Flock<std::fs::File>,
}

/// Connections being served (a box attached holds one for its life).
#[derive(Debug, Default)]
struct Activity {
    open: AtomicUsize,
    idle_since: Mutex<Option<Instant>>,
}

/// One connection counted while it lives.
struct Hold(Arc<Activity>);

impl Activity {
    fn hold(self: &Arc<Self>) -> Hold {
        self.open.fetch_add(1, Ordering::SeqCst);
        Hold(self.clone())
    }

    /// How long the helper has had nothing to do.
    fn idle_for(&self) -> Option<Duration> {
        if self.open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let mut since = self.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        Some(since.get_or_insert_with(Instant::now).elapsed())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serve until the helper is no longer needed.
pub async fn serve(setup: Setup, ready: &mut dyn ReadySink) -> Result<(), String> {
    let Setup {
        options,
        record,
        agent,
        pasta,
        lock: _lock,
    } = setup;
    let agent = Arc::new(agent);
    let home = options
        .dir
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let events = EventLog::at(home.join(EVENTS_FILE));
    // Before any box: a box with an egress table must find the relay's
    // set to be kept off it. Without the relay (its redirect refused, say
    // rootless on a kernel that will not load it), pasta carries it all.
    let relay = if pasta.is_some() && gateway::wanted(&record, options.map_host_gateway) {
        let nft = Nft::new(Netns::Current);
        match gateway::Relay::start(record.gateway, agent.clone(), &nft).await {
            Ok(relay) => Some(relay),
            Err(e) => {
                tracing::warn!("no host-gateway relay, pasta carries it: {e}");
                None
            }
        }
    } else {
        None
    };
    let boxes = Arc::new(Boxes::new(
        &options,
        &record,
        pasta.is_some(),
        relay.is_some(),
        events,
    )?);

    let upstreams = if record.internal {
        Vec::new()
    } else {
        host_nameservers().unwrap_or_else(|e| {
            tracing::warn!("no upstream name servers: {e}");
            Vec::new()
        })
    };
    let mut dns = DnsServerConfig::new(
        vec![SocketAddr::new(IpAddr::V4(record.gateway), DNS_PORT)],
        upstreams,
    );
    dns.sockets = Some(agent.clone());
    dns.observer = Some(boxes.feed());
    let _dns = DnsServer::start(dns, boxes.directory().clone())
        .await
        .map_err(|e| format!("DNS server: {e}"))?;

    let socket = options.dir.join(NETD_SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener = SeqPacketListener::bind(&socket)
        .map_err(|e| format!("listen on {}: {e}", socket.display()))?;
    let mut others = other_subnets(&options, &record);
    isolate(&others).map_err(|e| format!("isolate from the other networks: {e}"))?;
    let activity = Arc::new(Activity::default());
    ready.ready("ok");
    tracing::info!(network = %record.name, socket = %socket.display(), "serving");

    let accept = {
        let (boxes, activity) = (boxes.clone(), activity.clone());
        async move {
            loop {
                match listener.accept().await {
                    Ok(conn) => {
                        let hold = activity.hold();
                        tokio::spawn(connection(boxes.clone(), conn, hold));
                    }
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
    };
    let reason = tokio::select! {
        () = accept => "the listener ended".to_string(),
        reason = watch(&options, &record, &boxes, &activity, pasta, &mut others) => reason,
    };
    // New supervisors must start a new helper from here on; its boxes are
    // no longer the other networks' to resolve.
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(options.dir.join(HOSTS_FILE));
    tracing::info!(network = %record.name, "exiting: {reason}");
    Ok(())
}

/// Wait for a reason to exit.
async fn watch(
    options: &Options,
    record: &NetworkRecord,
    boxes: &Arc<Boxes>,
    activity: &Activity,
    pasta: Option<u32>,
    others: &mut Vec<String>,
) -> String {
    let pasta = pasta.and_then(|pid| Pidfd::open(pid).ok());
    let mut denied_at = Instant::now();
    let mut others_at = Instant::now();
    let mut shared = None;
    loop {
        tokio::time::sleep(WATCH).await;
        match std::fs::read(options.dir.join(NETWORK_FILE)) {
            Ok(bytes) => {
                let same = serde_json::from_slice::<NetworkRecord>(&bytes)
                    .is_ok_and(|now| now.id == record.id);
                if !same {
                    return "the network was removed and made again".into();
                }
            }
            Err(_) => return "the network was removed".into(),
        }
        if pasta.as_ref().is_some_and(Pidfd::exited) {
            return "the uplink (pasta) exited".into();
        }
        if activity
            .idle_for()
            .is_some_and(|idle| idle >= options.grace)
        {
            return format!("no box for {:?}", options.grace);
        }
        if others_at.elapsed() >= OTHERS_POLL {
            others_at = Instant::now();
            share_names(options, record, boxes, &mut shared);
            let now = other_subnets(options, record);
            if now != *others {
                match tokio::task::spawn_blocking({
                    let now = now.clone();
                    move || isolate(&now)
                })
                .await
                {
                    Ok(Ok(())) => *others = now,
                    Ok(Err(e)) => tracing::warn!("isolate from the other networks: {e}"),
                    Err(e) => tracing::warn!("isolate from the other networks: {e}"),
                }
            }
        }
        if denied_at.elapsed() >= DENIED_POLL {
            denied_at = Instant::now();
            let boxes = boxes.clone();
            let _ = tokio::task::spawn_blocking(move || boxes.report_denied()).await;
        }
    }
}

/// One supervisor's connection: one request, and for an attach the
/// box's life (during which a release may come).
async fn connection(boxes: Arc<Boxes>, conn: SeqPacket, _hold: Hold) {
    let (request, mut fds) = match conn.recv().await {
        Ok(Some((bytes, fds))) => (decode::<Request>(&bytes), fds),
        _ => return,
    };
    let fd = fds.pop();
    match request {
        Err(e) => {
            let _ = send(&conn, &Reply::Error(bad_request(e)), None).await;
        }
        Ok(Request::Attach(req)) => {
            let box_id = req.box_id.clone();
            let b = boxes.clone();
            let attached =
                tokio::task::spawn_blocking(move || b.attach(req, fd.as_ref().map(|f| f.as_fd())))
                    .await
                    .map_err(|e| a3s_box_core::BoxError::io("attach", std::io::Error::other(e)))
                    .and_then(|r| r);
            match attached {
                Ok((attachment, taps)) => {
                    let borrowed: Vec<BorrowedFd<'_>> = taps.iter().map(|t| t.as_fd()).collect();
                    let sent = conn
                        .send(&encode(&Reply::Attached(attachment)), &borrowed)
                        .await;
                    drop(borrowed);
                    drop(taps);
                    if sent.is_ok() {
                        // The box stays until its supervisor lets go (or
                        // asks for its TAP to be parked).
                        held(&boxes, &box_id, &conn).await;
                    }
                    let b = boxes.clone();
                    let _ = tokio::task::spawn_blocking(move || b.detach(&box_id)).await;
                }
                Err(e) => {
                    let _ = send(&conn, &Reply::Error(WireError::from(&e)), None).await;
                }
            }
        }
        Ok(Request::Rename(req)) => {
            let reply = match boxes.rename(&req) {
                Ok(()) => Reply::Renamed,
                Err(e) => Reply::Error(WireError::from(&e)),
            };
            let _ = send(&conn, &reply, None).await;
        }
        Ok(Request::Namespace(req)) => {
            let own = check(req.version).and_then(|()| {
                crate::rtnl::own_netns()
                    .map_err(|e| a3s_box_core::BoxError::io("open the network namespace", e))
            });
            match own {
                Ok(ns) => {
                    let _ = send(&conn, &Reply::Namespace, Some(ns.as_fd())).await;
                }
                Err(e) => {
                    let _ = send(&conn, &Reply::Error(WireError::from(&e)), None).await;
                }
            }
        }
        Ok(Request::Lend(req)) => {
            let b = boxes.clone();
            let lent = tokio::task::spawn_blocking(move || match fd {
                Some(ns) => b.lend(&req, ns.as_fd()),
                None => Err(no_namespace()),
            })
            .await
            .map_err(|e| a3s_box_core::BoxError::io("lend", std::io::Error::other(e)))
            .and_then(|r| r);
            let reply = match lent {
                Ok(()) => Reply::Lent,
                Err(e) => Reply::Error(WireError::from(&e)),
            };
            let _ = send(&conn, &reply, None).await;
        }
        Ok(Request::Release(_)) => {
            let e = a3s_box_core::BoxError::Invalid(
                "release is asked on the box's attach connection".into(),
            );
            let _ = send(&conn, &Reply::Error(WireError::from(&e)), None).await;
        }
        Ok(Request::Connect(req)) => match boxes.connect(&req).await {
            Ok(fd) => {
                let _ = send(&conn, &Reply::Connected, Some(fd.as_fd())).await;
            }
            Err(e) => {
                let _ = send(&conn, &Reply::Error(WireError::from(&e)), None).await;
            }
        },
    }
}

/// An attach connection while the box is on the network: a release parks
/// its TAP (the connection may stay open, as a hold on this helper, whose
/// namespace may park the box's spares); the end of the connection
/// detaches the box.
async fn held(boxes: &Arc<Boxes>, box_id: &str, conn: &SeqPacket) {
    while let Ok(Some((bytes, mut fds))) = conn.recv().await {
        let reply = match decode::<Request>(&bytes) {
            Ok(Request::Release(req)) => {
                let (b, id, fd) = (boxes.clone(), box_id.to_string(), fds.pop());
                tokio::task::spawn_blocking(move || match fd {
                    Some(ns) => b.release(&id, &req, ns.as_fd()),
                    None => Err(no_namespace()),
                })
                .await
                .map_err(|e| a3s_box_core::BoxError::io("release", std::io::Error::other(e)))
                .and_then(|r| r)
                .map_or_else(|e| Reply::Error(WireError::from(&e)), |()| Reply::Released)
            }
            Ok(_) => Reply::Error(WireError::from(&a3s_box_core::BoxError::Invalid(
                "only a release may follow an attach".into(),
            ))),
            Err(e) => Reply::Error(bad_request(e)),
        };
        let _ = send(conn, &reply, None).await;
    }
}

fn no_namespace() -> a3s_box_core::BoxError {
    a3s_box_core::BoxError::Invalid("the request carries no namespace descriptor".into())
}

fn check(version: u32) -> a3s_box_core::Result<()> {
    if version == a3s_box_runtime::network::dataplane::wire::PROTOCOL_VERSION {
        return Ok(());
    }
    Err(a3s_box_core::BoxError::Unavailable(format!(
        "the network helper speaks version {} and a3s-box version {version}: install both from one build",
        a3s_box_runtime::network::dataplane::wire::PROTOCOL_VERSION
    )))
}

fn bad_request(e: std::io::Error) -> WireError {
    WireError::from(&a3s_box_core::BoxError::Invalid(format!(
        "bad request to the network helper: {e} (is a3s-box the same version as a3s-box-netd?)"
    )))
}

async fn send(conn: &SeqPacket, reply: &Reply, fd: Option<BorrowedFd<'_>>) -> std::io::Result<()> {
    let fds: Vec<BorrowedFd<'_>> = fd.into_iter().collect();
    conn.send(&encode(reply), &fds).await
}

/// A process descriptor: whether a process (not our child) has exited,
/// without pid reuse races.
struct Pidfd(std::os::fd::OwnedFd);

impl Pidfd {
    fn open(pid: u32) -> std::io::Result<Self> {
        // SAFETY: pidfd_open takes a pid and flags; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        use std::os::fd::FromRawFd;
        // SAFETY: a new descriptor nothing else owns.
        Ok(Pidfd(unsafe {
            std::os::fd::OwnedFd::from_raw_fd(fd as i32)
        }))
    }

    fn exited(&self) -> bool {
        use std::os::fd::AsRawFd;
        let mut poll = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd, no wait.
        let rc = unsafe { libc::poll(&mut poll, 1, 0) };
        rc > 0 && poll.revents & libc::POLLIN != 0
    }
}
