//! The server answering real queries on loopback, without upstreams (see
//! `tests/network_dns.rs` for forwarding to a real resolver).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use a3s_box_core::spec::EgressRule;
use async_trait::async_trait;
use hickory_proto::op::{Message, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::network::egress::NamePolicy;

const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

#[derive(Debug, Default)]
struct Events {
    allowed: Mutex<Vec<AllowedAnswer>>,
    denied: Mutex<Vec<DeniedQuery>>,
}

#[async_trait]
impl DnsObserver for Events {
    async fn allowed(&self, answer: &AllowedAnswer) {
        self.allowed.lock().unwrap().push(answer.clone());
    }
    fn denied(&self, query: &DeniedQuery) {
        self.denied.lock().unwrap().push(query.clone());
    }
}

fn message(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.metadata.recursion_desired = true;
    msg
}

async fn exchange(server: SocketAddr, msg: &Message, tcp: bool) -> Message {
    let bytes = msg.to_vec().unwrap();
    let reply = if tcp {
        let mut s = tokio::net::TcpStream::connect(server).await.unwrap();
        s.write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .unwrap();
        s.write_all(&bytes).await.unwrap();
        let len = s.read_u16().await.unwrap();
        let mut buf = vec![0; usize::from(len)];
        s.read_exact(&mut buf).await.unwrap();
        buf
    } else {
        let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        s.send_to(&bytes, server).await.unwrap();
        let mut buf = vec![0; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.recv(&mut buf))
            .await
            .expect("an answer within 5 s")
            .unwrap();
        buf.truncate(n);
        buf
    };
    let reply = Message::from_vec(&reply).unwrap();
    assert_eq!(reply.metadata.id, msg.metadata.id);
    reply
}

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    exchange(server, &message(name, qtype), false).await
}

fn a_records(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

async fn server(config: DnsServerConfig) -> DnsServer {
    let directory = Directory::new();
    directory.add_host(
        "net",
        HostEntry {
            box_id: ID.into(),
            name: "web".into(),
            aliases: vec!["www".into()],
            ipv4: Ipv4Addr::new(10, 89, 0, 2),
        },
    );
    DnsServer::start(config, directory).await.unwrap()
}

fn config() -> DnsServerConfig {
    let mut c = DnsServerConfig::new(vec!["127.0.0.1:0".parse().unwrap()], vec![]);
    c.default_client.networks = vec!["net".into()];
    c
}

#[tokio::test]
async fn boxes_resolve_by_name_alias_and_id_over_udp_and_tcp() {
    let s = server(config()).await;
    let addr = s.local_addrs()[0];
    assert_ne!(addr.port(), 0);
    let want = [Ipv4Addr::new(10, 89, 0, 2)];
    for name in ["web", "WWW", "web.net.", &ID[..12]] {
        let r = ask(addr, name, RecordType::A).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "{name}");
        assert!(r.metadata.authoritative);
        assert_eq!(a_records(&r), want, "{name}");
        assert_eq!(r.answers[0].ttl, LOCAL_TTL_SECS);
    }
    let r = exchange(addr, &message("web", RecordType::A), true).await;
    assert_eq!(a_records(&r), want, "over TCP");
    let r = ask(addr, "web", RecordType::AAAA).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(
        r.answers.is_empty(),
        "no IPv6: an empty answer, not NXDOMAIN"
    );
    let r = ask(addr, "2.0.89.10.in-addr.arpa", RecordType::PTR).await;
    match &r.answers[0].data {
        RData::PTR(p) => assert_eq!(p.0.to_ascii(), "web."),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn live_changes_are_answered_at_once() {
    let s = server(config()).await;
    let addr = s.local_addrs()[0];
    s.directory().rename(ID, "site");
    assert_eq!(a_records(&ask(addr, "site", RecordType::A).await).len(), 1);
    // No upstream: a name nobody has is NXDOMAIN.
    let r = ask(addr, "web", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    s.directory().remove_host("net", ID);
    let r = ask(addr, "site", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn clients_see_only_their_networks() {
    let s = server(config()).await;
    let addr = s.local_addrs()[0];
    s.directory().set_client(
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        ClientPolicy {
            networks: vec!["other".into()],
            ..ClientPolicy::default()
        },
    );
    let r = ask(addr, "web", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn names_the_allow_list_lacks_are_nxdomain_and_reported() {
    let events = Arc::new(Events::default());
    let mut c = config();
    let rules: Vec<EgressRule> = vec!["web:8080".parse().unwrap()];
    c.default_client.box_id = Some("box1".into());
    c.default_client.names = Some(Arc::new(NamePolicy::from_rules(&rules)));
    c.observer = Some(events.clone());
    let s = server(c).await;
    let addr = s.local_addrs()[0];
    let r = ask(addr, "www", RecordType::A).await;
    assert_eq!(
        r.metadata.response_code,
        ResponseCode::NXDomain,
        "alias not allowed"
    );
    let r = ask(addr, "web", RecordType::A).await;
    assert_eq!(a_records(&r), [Ipv4Addr::new(10, 89, 0, 2)]);
    let denied = events.denied.lock().unwrap().clone();
    assert_eq!(denied.len(), 1);
    assert_eq!(
        (denied[0].name.as_str(), denied[0].query_type.as_str()),
        ("www", "A")
    );
    assert_eq!(denied[0].box_id.as_deref(), Some("box1"));
    let allowed = events.allowed.lock().unwrap().clone();
    assert_eq!(allowed.len(), 1);
    assert_eq!(allowed[0].name, "web");
    assert!(allowed[0].ports.allows(8080) && !allowed[0].ports.allows(80));
    assert_eq!(
        allowed[0].addrs[0].addr,
        IpAddr::V4(Ipv4Addr::new(10, 89, 0, 2))
    );
}

#[tokio::test]
async fn malformed_and_unsupported_queries_get_errors() {
    let s = server(config()).await;
    let addr = s.local_addrs()[0];
    let mut two = message("web", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("www").unwrap(),
        RecordType::A,
    ));
    let r = exchange(addr, &two, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    let mut notify = message("web", RecordType::A);
    notify.metadata.op_code = OpCode::Notify;
    let r = exchange(addr, &notify, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    // Garbage gets no answer, and the server keeps serving.
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(b"\x01\x02garbage", addr).await.unwrap();
    assert_eq!(a_records(&ask(addr, "web", RecordType::A).await).len(), 1);
}

#[tokio::test]
async fn a_dead_upstream_is_servfail_not_a_hang() {
    // A loopback port nobody serves: the upstream refuses at once.
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let mut c = config();
    c.upstreams = vec![dead_addr];
    c.upstream_timeout = Duration::from_millis(500);
    let s = server(c).await;
    let started = Instant::now();
    let r = ask(s.local_addrs()[0], "elsewhere.test", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn an_internal_client_gets_no_forwarding() {
    let mut c = config();
    c.upstreams = vec!["127.0.0.1:9".parse().unwrap()];
    c.default_client.upstreams = Some(vec![]);
    let s = server(c).await;
    let r = ask(s.local_addrs()[0], "elsewhere.test", RecordType::A).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}
