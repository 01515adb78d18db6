//! [`DnsServer`]: the UDP and TCP listeners and the answer to one query.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::{BoxError, Result};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::forward::{forward, Transport, UpstreamSockets, MAX_MESSAGE};
use super::names::{ClientPolicy, Directory};
use super::{AllowedAnswer, DeniedQuery, DnsObserver, LOCAL_TTL_SECS};
use crate::network::egress::policy::normalize_name;
use crate::network::egress::{Ports, ResolvedAddr};

/// How long one upstream gets to answer by default.
pub const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// Queries answered at once (UDP and TCP together); more wait.
const MAX_IN_FLIGHT: usize = 512;
/// TCP connections at once; more are closed.
const MAX_TCP_CONNECTIONS: usize = 128;
/// A TCP connection idle this long is closed.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// EDNS payload size we announce (the usual safe size).
const EDNS_PAYLOAD: u16 = 1232;
/// Tries at binding TCP to the port the kernel gave UDP.
const BIND_TRIES: usize = 16;

/// How a [`DnsServer`] runs.
#[derive(Debug, Clone)]
pub struct DnsServerConfig {
    /// Addresses to serve on, UDP and TCP (port 0: one the kernel picks,
    /// the same for both).
    pub listen: Vec<SocketAddr>,
    /// Where names are forwarded for clients without their own.
    pub upstreams: Vec<SocketAddr>,
    /// The policy of clients the directory does not know.
    pub default_client: ClientPolicy,
    /// How long each upstream gets.
    pub upstream_timeout: Duration,
    /// `SO_MARK` on upstream sockets (see the egress plan's exempt mark).
    pub upstream_mark: Option<u32>,
    /// Told about allowed answers and denied names.
    pub observer: Option<Arc<dyn DnsObserver>>,
    /// Makes the upstream sockets (`None`: in the server's own namespace).
    pub sockets: Option<Arc<dyn UpstreamSockets>>,
}

impl DnsServerConfig {
    /// Serve on `listen`, forwarding to `upstreams`, everything else by
    /// default.
    pub fn new(listen: Vec<SocketAddr>, upstreams: Vec<SocketAddr>) -> Self {
        DnsServerConfig {
            listen,
            upstreams,
            default_client: ClientPolicy::default(),
            upstream_timeout: DEFAULT_UPSTREAM_TIMEOUT,
            upstream_mark: None,
            observer: None,
            sockets: None,
        }
    }
}

/// A running DNS server; it stops when dropped.
#[derive(Debug)]
pub struct DnsServer {
    addrs: Vec<SocketAddr>,
    directory: Directory,
    tasks: Vec<JoinHandle<()>>,
}

impl DnsServer {
    /// Bind every listen address (UDP and TCP) and start serving from
    /// `directory`. Must be called within a tokio runtime.
    pub async fn start(config: DnsServerConfig, directory: Directory) -> Result<DnsServer> {
        if config.listen.is_empty() {
            return Err(BoxError::Invalid(
                "the DNS server needs an address to listen on".into(),
            ));
        }
        let mut sockets = Vec::new();
        for addr in &config.listen {
            sockets.push(bind_pair(*addr).await?);
        }
        let handler = Arc::new(Handler {
            directory: directory.clone(),
            default_client: Arc::new(config.default_client.clone()),
            config,
        });
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let connections = Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for (udp, tcp, addr) in sockets {
            addrs.push(addr);
            tasks.push(tokio::spawn(serve_udp(
                Arc::new(udp),
                handler.clone(),
                in_flight.clone(),
            )));
            tasks.push(tokio::spawn(serve_tcp(
                tcp,
                handler.clone(),
                connections.clone(),
            )));
        }
        Ok(DnsServer {
            addrs,
            directory,
            tasks,
        })
    }

    /// The addresses it serves on (ports resolved).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The tables it answers from.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Stop serving.
    pub fn shutdown(self) {}
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// UDP and TCP on the same address and port.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener, SocketAddr)> {
    let err = |e| BoxError::io(format!("DNS server: bind {addr}"), e);
    for _ in 0..BIND_TRIES {
        let udp = UdpSocket::bind(addr).await.map_err(err)?;
        let bound = udp.local_addr().map_err(err)?;
        match TcpListener::bind(bound).await {
            Ok(tcp) => return Ok((udp, tcp, bound)),
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(err(e)),
        }
    }
    Err(BoxError::Unavailable(format!(
        "DNS server: no port free for both UDP and TCP on {}",
        addr.ip()
    )))
}

async fn serve_udp(socket: Arc<UdpSocket>, handler: Arc<Handler>, in_flight: Arc<Semaphore>) {
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("DNS server: receive: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let query = buf[..n].to_vec();
        let (socket, handler) = (socket.clone(), handler.clone());
        tokio::spawn(async move {
            let client = peer.ip().to_canonical();
            if let Some(reply) = handler.answer(&query, client, Transport::Udp).await {
                if let Err(e) = socket.send_to(&reply, peer).await {
                    tracing::debug!("DNS server: reply to {peer}: {e}");
                }
            }
            drop(permit);
        });
    }
}

async fn serve_tcp(listener: TcpListener, handler: Arc<Handler>, connections: Arc<Semaphore>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(got) => got,
            Err(e) => {
                tracing::debug!("DNS server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = serve_connection(stream, peer.ip().to_canonical(), &handler).await;
            drop(permit);
        });
    }
}

/// Length-prefixed queries on one connection, answered in turn.
async fn serve_connection(
    mut stream: TcpStream,
    client: IpAddr,
    handler: &Handler,
) -> std::io::Result<()> {
    loop {
        let Ok(len) = tokio::time::timeout(TCP_IDLE, stream.read_u16()).await else {
            return Ok(());
        };
        let mut query = vec![0u8; usize::from(len?)];
        tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut query))
            .await
            .map_err(|_| std::io::ErrorKind::TimedOut)??;
        let Some(reply) = handler.answer(&query, client, Transport::Tcp).await else {
            return Ok(());
        };
        let len = u16::try_from(reply.len()).map_err(|_| std::io::ErrorKind::InvalidData)?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

#[derive(Debug)]
struct Handler {
    directory: Directory,
    default_client: Arc<ClientPolicy>,
    config: DnsServerConfig,
}

impl Handler {
    /// The reply to `query` from `client`; `None` to stay silent (not a
    /// query, or not a DNS message at all).
    async fn answer(&self, query: &[u8], client: IpAddr, transport: Transport) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        if request.metadata.op_code != OpCode::Query {
            return reply(&request, ResponseCode::NotImp, false, Vec::new());
        }
        let [question] = request.queries.as_slice() else {
            return reply(&request, ResponseCode::FormErr, false, Vec::new());
        };
        let name = normalize_name(&question.name().to_ascii());
        let policy = self
            .directory
            .client(client)
            .unwrap_or_else(|| self.default_client.clone());
        let ports = match &policy.names {
            None => None,
            Some(names) => match names.allows(&name) {
                Some(ports) => Some(ports),
                None => {
                    if let Some(observer) = &self.config.observer {
                        observer.denied(&DeniedQuery {
                            client,
                            box_id: policy.box_id.clone(),
                            name,
                            query_type: question.query_type().to_string(),
                        });
                    }
                    return reply(&request, ResponseCode::NXDomain, false, Vec::new());
                }
            },
        };
        let report = ports.map(|ports| Report {
            client,
            policy: &policy,
            name: &name,
            ports,
        });
        if question.query_class() == DNSClass::IN {
            if let Some(local) = self
                .local(&request, question, &name, &policy, &report)
                .await
            {
                return Some(local);
            }
        }
        let upstreams = policy.upstreams.as_ref().unwrap_or(&self.config.upstreams);
        if upstreams.is_empty() {
            return reply(&request, ResponseCode::NXDomain, false, Vec::new());
        }
        let Some(raw) = forward(
            query,
            upstreams,
            transport,
            self.config.upstream_timeout,
            self.config.upstream_mark,
            self.config.sockets.as_deref(),
        )
        .await
        else {
            return reply(&request, ResponseCode::ServFail, false, Vec::new());
        };
        if let Some(report) = &report {
            let Ok(answer) = Message::from_vec(&raw) else {
                return reply(&request, ResponseCode::ServFail, false, Vec::new());
            };
            let addrs = answer
                .answers
                .iter()
                .filter_map(|r| {
                    let addr = match &r.data {
                        RData::A(a) => IpAddr::V4(a.0),
                        RData::AAAA(a) => IpAddr::V6(a.0),
                        _ => return None,
                    };
                    Some(ResolvedAddr {
                        addr,
                        ttl_secs: r.ttl,
                    })
                })
                .collect();
            self.report(report, addrs).await;
        }
        Some(raw)
    }

    /// The answer for a box's name (or address), if `name` is one.
    async fn local(
        &self,
        request: &Message,
        question: &Query,
        name: &str,
        policy: &ClientPolicy,
        report: &Option<Report<'_>>,
    ) -> Option<Vec<u8>> {
        if question.query_type() == RecordType::PTR {
            let ip = reverse_v4(name)?;
            let host = self.directory.reverse(&policy.networks, ip)?;
            let target = Name::from_ascii(format!("{host}.")).ok()?;
            let record = Record::from_rdata(
                question.name().clone(),
                LOCAL_TTL_SECS,
                RData::PTR(PTR(target)),
            );
            return reply(request, ResponseCode::NoError, true, vec![record]);
        }
        let found = self.directory.lookup(&policy.networks, name);
        if found.is_empty() {
            return None;
        }
        let mut answers = Vec::new();
        if matches!(question.query_type(), RecordType::A | RecordType::ANY) {
            for ip in &found {
                answers.push(Record::from_rdata(
                    question.name().clone(),
                    LOCAL_TTL_SECS,
                    RData::A(A(*ip)),
                ));
            }
            if let Some(report) = report {
                let addrs = found
                    .iter()
                    .map(|ip| ResolvedAddr {
                        addr: IpAddr::V4(*ip),
                        ttl_secs: LOCAL_TTL_SECS,
                    })
                    .collect();
                self.report(report, addrs).await;
            }
        }
        reply(request, ResponseCode::NoError, true, answers)
    }

    async fn report(&self, report: &Report<'_>, addrs: Vec<ResolvedAddr>) {
        let Some(observer) = &self.config.observer else {
            return;
        };
        if addrs.is_empty() {
            return;
        }
        observer
            .allowed(&AllowedAnswer {
                client: report.client,
                box_id: report.policy.box_id.clone(),
                name: report.name.to_string(),
                ports: report.ports.clone(),
                addrs,
            })
            .await;
    }
}

/// What to report about an allowed answer.
struct Report<'a> {
    client: IpAddr,
    policy: &'a ClientPolicy,
    name: &'a str,
    ports: Ports,
}

/// The IPv4 address of a `d.c.b.a.in-addr.arpa` name.
fn reverse_v4(name: &str) -> Option<Ipv4Addr> {
    let rest = name.strip_suffix(".in-addr.arpa")?;
    let mut octets = [0u8; 4];
    let mut parts = rest.split('.');
    for octet in octets.iter_mut().rev() {
        *octet = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then(|| Ipv4Addr::from(octets))
}

/// A reply to `request` with `code` and `answers`.
fn reply(
    request: &Message,
    code: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
) -> Option<Vec<u8>> {
    let mut msg = Message::response(request.metadata.id, request.metadata.op_code);
    msg.metadata.response_code = code;
    msg.metadata.authoritative = authoritative;
    msg.metadata.recursion_desired = request.metadata.recursion_desired;
    msg.metadata.recursion_available = true;
    msg.queries = request.queries.clone();
    msg.answers = answers;
    if request.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        msg.edns = Some(edns);
    }
    msg.to_vec()
        .inspect_err(|e| tracing::debug!("DNS server: encode reply: {e}"))
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_names_parse_to_addresses() {
        assert_eq!(
            reverse_v4("3.0.89.10.in-addr.arpa"),
            Some(Ipv4Addr::new(10, 89, 0, 3))
        );
        assert_eq!(reverse_v4("0.89.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("1.3.0.89.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("x.0.89.10.in-addr.arpa"), None);
        assert_eq!(reverse_v4("example.com"), None);
    }
}
