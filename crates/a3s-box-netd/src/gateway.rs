//! The host-gateway relay: boxes' TCP connections to `host-gateway`
//! (169.254.1.1, the host's loopback) moved by the helper with splice(2)
//! instead of pasta's L2-to-socket translation, which is slow towards the
//! box (`docs/networking.md`, "host-gateway relay").
//!
//! It owns the table `ip a3s_gw`: a nat prerouting rule redirects new TCP
//! connections from the bridge to the host gateway, any port, to a
//! listener of the helper on the bridge's address; the helper reads the
//! original destination (`SO_ORIGINAL_DST`), has its host agent make a
//! socket of the host's network namespace, connects it to
//! `127.0.0.1:PORT` and relays both ways (`dataplane::proxy::relay_tcp`).
//! If the host port does not answer, the box's connection is reset at
//! once (the box sees "connection reset" where pasta gave "refused": its
//! handshake is already done when the helper learns the port is closed).
//!
//! Boxes with an egress allow-list stay on pasta's path, through their
//! egress tables (they hook `forward`, which a redirect to a local
//! listener would bypass): their addresses are in the table's `guarded4`
//! set, filled by [`crate::boxes`]. A network with an allow-list of its
//! own, `--no-map-gw` or `--internal` gets no relay. UDP stays on pasta.
//! The relay's tasks run in the helper's runtime and end with it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use a3s_box_runtime::network::dataplane::proxy::relay_tcp;
use a3s_box_runtime::network::dataplane::wire::HOST_GATEWAY;
use a3s_box_runtime::network::dns::UpstreamSockets;
use a3s_box_runtime::network::egress::Nft;
use a3s_box_runtime::network::store::NetworkRecord;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::agent::Agent;
use crate::rules::BRIDGE;

/// The relay's nftables table (family `ip`).
const TABLE: &str = "a3s_gw";
/// How long a connection to the host's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `record`'s helper relays host-gateway connections: the network
/// has an uplink that maps the host gateway and no allow-list of its own.
pub fn wanted(record: &NetworkRecord, map_host_gateway: bool) -> bool {
    !record.internal && map_host_gateway && record.egress.is_empty()
}

/// The relay's table: connections from the bridge to the host gateway go
/// to `port` on the bridge's address, but not those of `guarded4`.
fn rules(port: u16) -> String {
    format!(
        "table ip {TABLE} {{}}\ndelete table ip {TABLE}\n\
         table ip {TABLE} {{\n\
         \tset guarded4 {{ type ipv4_addr; }}\n\
         \tchain pre {{\n\
         \t\ttype nat hook prerouting priority dstnat; policy accept;\n\
         \t\tiifname \"{BRIDGE}\" ip daddr {HOST_GATEWAY} ip saddr != @guarded4 \
         meta l4proto tcp redirect to :{port}\n\
         \t}}\n\
         }}\n"
    )
}

/// Keep `ip` (a box with an egress table) off the relay.
pub fn guard_add(ip: Ipv4Addr) -> String {
    format!("add element ip {TABLE} guarded4 {{ {ip} }}\n")
}

/// Let `ip` use the relay again (a missing element is fine).
pub fn guard_remove(ip: Ipv4Addr) -> String {
    format!(
        "{}delete element ip {TABLE} guarded4 {{ {ip} }}\n",
        guard_add(ip)
    )
}

/// The running relay; it stops when dropped.
#[derive(Debug)]
pub struct Relay {
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Relay {
    /// Listen on `bridge_ip` (the network's gateway) and load the
    /// redirect. Must be called within the helper's runtime, in the
    /// network's namespace, before any box is attached.
    pub async fn start(bridge_ip: Ipv4Addr, agent: Arc<Agent>, nft: &Nft) -> Result<Self, String> {
        let listener = TcpListener::bind((bridge_ip, 0))
            .await
            .map_err(|e| format!("listen on {bridge_ip}: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("listener address: {e}"))?
            .port();
        nft.apply(&rules(port))
            .map_err(|e| format!("load the redirect: {e}"))?;
        tracing::info!(port, "host-gateway relay listening");
        Ok(Relay {
            task: tokio::spawn(accept(listener, agent)),
        })
    }
}

async fn accept(listener: TcpListener, agent: Arc<Agent>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, agent.clone()));
            }
            Err(e) => {
                tracing::debug!("host-gateway relay: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One box connection: to the host's loopback port it was meant for, or
/// reset.
async fn serve(inside: TcpStream, agent: Arc<Agent>) {
    let port = match original_destination(&inside) {
        Ok(to) if *to.ip() == HOST_GATEWAY => to.port(),
        Ok(to) => {
            tracing::debug!(%to, "host-gateway relay: not the host gateway");
            return reset(inside);
        }
        Err(e) => {
            tracing::debug!("host-gateway relay: original destination: {e}");
            return reset(inside);
        }
    };
    match connect_host(agent, port).await {
        Ok(host) => relay_tcp(inside, host).await,
        Err(e) => {
            tracing::debug!(port, "host-gateway relay: 127.0.0.1:{port}: {e}");
            reset(inside);
        }
    }
}

/// A connection from the host's network namespace to `127.0.0.1:port`.
async fn connect_host(agent: Arc<Agent>, port: u16) -> std::io::Result<TcpStream> {
    // The agent answers over a blocking socket: keep the runtime (the DNS
    // server) free meanwhile.
    let fd: OwnedFd = tokio::task::spawn_blocking(move || agent.socket(false, true))
        .await
        .map_err(std::io::Error::other)??;
    let socket = std::net::TcpStream::from(fd);
    socket.set_nonblocking(true)?;
    let socket = TcpSocket::from_std_stream(socket);
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

/// Where the box meant its connection to go, before the redirect.
fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into a live
    // sockaddr_in on our stack; the descriptor is the stream's.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_IP,
            libc::SO_ORIGINAL_DST,
            std::ptr::from_mut(&mut addr).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

/// Close `stream` with a reset, so the box's client fails at once.
fn reset(stream: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads a live linger from our stack; the
    // descriptor is the stream's, closed right after.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(stream);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_redirect_skips_guarded_boxes_and_other_destinations() {
        let r = rules(40123);
        assert!(r.contains(
            "iifname \"br0\" ip daddr 169.254.1.1 ip saddr != @guarded4 meta l4proto tcp redirect to :40123"
        ), "{r}");
        let ip = Ipv4Addr::new(10, 88, 0, 5);
        assert_eq!(
            guard_add(ip),
            "add element ip a3s_gw guarded4 { 10.88.0.5 }\n"
        );
        assert!(guard_remove(ip).ends_with("delete element ip a3s_gw guarded4 { 10.88.0.5 }\n"));
    }

    /// The table loads in a fresh namespace, with the base rules, and
    /// guard elements come and go (repeated loads included).
    #[test]
    fn the_rules_load() {
        if !std::path::Path::new("/usr/sbin/nft").exists() {
            eprintln!("skipped: no nft");
            return;
        }
        let ip = Ipv4Addr::new(10, 88, 0, 5);
        let script = format!(
            "{}{}{}{}{}{}",
            crate::rules::base(false),
            rules(40123),
            rules(40124),
            guard_add(ip),
            guard_remove(ip),
            guard_remove(ip),
        );
        crate::rules::tests::assert_loads(&script);
    }

    #[test]
    fn only_open_networks_that_map_the_gateway_relay() {
        let open: NetworkRecord = serde_json::from_value(serde_json::json!({
            "id": "ab".repeat(32),
            "name": "n",
            "driver": "bridge",
            "subnet": "10.89.1.0/24",
            "gateway": "10.89.1.1",
            "created": "2024-01-01T00:00:00Z",
        }))
        .unwrap();
        assert!(wanted(&open, true));
        assert!(!wanted(&open, false), "--no-map-gw");
        let internal = NetworkRecord {
            internal: true,
            ..open.clone()
        };
        assert!(!wanted(&internal, true));
        let guarded = NetworkRecord {
            egress: vec!["api.test:80".parse().unwrap()],
            ..open
        };
        assert!(!wanted(&guarded, true), "a network allow-list");
    }
}
