//! The embedded DNS server against a real upstream resolver (dnsmasq on
//! loopback, started here): forwarding over UDP and TCP, per-box
//! upstreams, and the egress allow-list's name filter and reports.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

mod network_support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use a3s_box_core::spec::EgressRule;
use a3s_box_runtime::network::dns::{
    AllowedAnswer, ClientPolicy, DeniedQuery, Directory, DnsObserver, DnsServer, DnsServerConfig,
    HostEntry,
};
use a3s_box_runtime::network::egress::NamePolicy;
use async_trait::async_trait;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use network_support::{addresses, ask, Dnsmasq};

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn upstream() -> Option<Dnsmasq> {
    Dnsmasq::start(
        None,
        LOOPBACK,
        &[
            "--host-record=api.example.test,192.0.2.11,2001:db8::11",
            "--address=/allowed.test/192.0.2.10",
            "--cname=alias.example.test,api.example.test",
            "--address=/nx.test/",
        ],
    )
}

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

async fn start(config: DnsServerConfig) -> DnsServer {
    DnsServer::start(config, Directory::new()).await.unwrap()
}

fn listen() -> Vec<SocketAddr> {
    vec![SocketAddr::new(LOOPBACK, 0)]
}

/// Ask from a blocking thread (the server runs on this test's runtime).
async fn query(
    server: SocketAddr,
    name: &str,
    qtype: RecordType,
    tcp: bool,
) -> hickory_proto::op::Message {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || ask(server, &name, qtype, tcp))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_names_are_forwarded_over_udp_and_tcp() {
    let Some(dnsmasq) = upstream() else { return };
    let s = start(DnsServerConfig::new(listen(), vec![dnsmasq.addr])).await;
    let addr = s.local_addrs()[0];
    for tcp in [false, true] {
        let r = query(addr, "api.example.test", RecordType::A, tcp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NoError, "tcp={tcp}");
        assert_eq!(
            addresses(&r),
            ["192.0.2.11".parse::<IpAddr>().unwrap()],
            "tcp={tcp}"
        );
        assert_eq!(r.answers[0].ttl, 120);
        let r = query(addr, "api.example.test", RecordType::AAAA, tcp).await;
        assert_eq!(addresses(&r), ["2001:db8::11".parse::<IpAddr>().unwrap()]);
        let r = query(addr, "x.nx.test", RecordType::A, tcp).await;
        assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    }
    // Box names still win over forwarding.
    s.directory().add_host(
        "",
        HostEntry {
            box_id: "b1".into(),
            name: "api.example.test".into(),
            aliases: vec![],
            ipv4: Ipv4Addr::new(10, 89, 0, 9),
        },
    );
    s.directory().set_client(
        LOOPBACK,
        ClientPolicy {
            networks: vec!["".into()],
            ..ClientPolicy::default()
        },
    );
    let r = query(addr, "api.example.test", RecordType::A, false).await;
    assert_eq!(addresses(&r), ["10.89.0.9".parse::<IpAddr>().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_box_with_its_own_dns_uses_it() {
    let Some(server_default) = upstream() else {
        return;
    };
    let Some(own) = Dnsmasq::start(None, LOOPBACK, &["--address=/api.example.test/192.0.2.99"])
    else {
        return;
    };
    let s = start(DnsServerConfig::new(listen(), vec![server_default.addr])).await;
    let addr = s.local_addrs()[0];
    let before = query(addr, "api.example.test", RecordType::A, false).await;
    assert_eq!(
        addresses(&before),
        ["192.0.2.11".parse::<IpAddr>().unwrap()]
    );
    s.directory().set_client(
        LOOPBACK,
        ClientPolicy {
            upstreams: Some(vec![own.addr]),
            ..ClientPolicy::default()
        },
    );
    let after = query(addr, "api.example.test", RecordType::A, false).await;
    assert_eq!(addresses(&after), ["192.0.2.99".parse::<IpAddr>().unwrap()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allow_list_filters_names_and_reports_answers() {
    let Some(dnsmasq) = upstream() else { return };
    let events = Arc::new(Events::default());
    let rules: Vec<EgressRule> = ["alias.example.test:443", "*.allowed.test"]
        .iter()
        .map(|r| r.parse().unwrap())
        .collect();
    let mut config = DnsServerConfig::new(listen(), vec![dnsmasq.addr]);
    config.default_client = ClientPolicy {
        box_id: Some("box1".into()),
        names: Some(Arc::new(NamePolicy::from_rules(&rules))),
        ..ClientPolicy::default()
    };
    config.observer = Some(events.clone());
    let s = start(config).await;
    let addr = s.local_addrs()[0];

    // Allowed through a CNAME: the answer's addresses are reported.
    let r = query(addr, "alias.example.test", RecordType::A, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&r), ["192.0.2.11".parse::<IpAddr>().unwrap()]);
    let r = query(addr, "deep.sub.allowed.test", RecordType::A, true).await;
    assert_eq!(addresses(&r), ["192.0.2.10".parse::<IpAddr>().unwrap()]);
    // Not allowed: the target itself, the bare domain, anything else.
    for name in ["api.example.test", "allowed.test", "x.nx.test"] {
        for tcp in [false, true] {
            let r = query(addr, name, RecordType::A, tcp).await;
            assert_eq!(r.metadata.response_code, ResponseCode::NXDomain, "{name}");
            assert!(r.answers.is_empty());
        }
    }
    let r = query(addr, "API.example.test", RecordType::TXT, false).await;
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);

    let allowed = events.allowed.lock().unwrap().clone();
    assert_eq!(allowed.len(), 2, "{allowed:?}");
    assert_eq!(allowed[0].name, "alias.example.test");
    assert_eq!(allowed[0].box_id.as_deref(), Some("box1"));
    assert!(allowed[0].ports.allows(443) && !allowed[0].ports.allows(80));
    assert_eq!(
        allowed[0].addrs[0].addr,
        "192.0.2.11".parse::<IpAddr>().unwrap()
    );
    assert_eq!(allowed[0].addrs[0].ttl_secs, 120);
    assert!(allowed[1].ports.is_any());
    let denied: Vec<(String, String)> = events
        .denied
        .lock()
        .unwrap()
        .iter()
        .map(|d| (d.name.clone(), d.query_type.clone()))
        .collect();
    assert_eq!(denied.len(), 7, "{denied:?}");
    assert_eq!(denied[0], ("api.example.test".into(), "A".into()));
    assert_eq!(denied[6], ("api.example.test".into(), "TXT".into()));
}
