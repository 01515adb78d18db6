//! The egress firewall for real: a client namespace (where the table is
//! applied, on the output hook, as for a passt or proxy in the box's
//! namespace) and a server namespace with listeners, joined by a veth
//! pair. Allowed connects succeed; denied ones are reset at once; DNS
//! goes only to our resolver; the DNS server feeds the table.
//!
//! Needs root (network namespaces, nft); skips with a message otherwise.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

mod network_support;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_box_core::spec::{EgressRule, Protocol};
use a3s_box_runtime::network::dns::{ClientPolicy, Directory, DnsServer, DnsServerConfig};
use a3s_box_runtime::network::egress::{
    Attach, DeniedAttempt, EgressPlan, EgressPolicy, Firewall, FirewallFeed, Netns, Nft, Ports,
    ResolvedAddr,
};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use network_support::{addresses, ask, enter_netns, in_netns, Dnsmasq, TestNet, SERVER_LINK};

/// Addresses the server side answers on besides the link address.
const EXTRA: [&str; 4] = [
    "198.51.100.10",
    "198.51.100.11",
    "203.0.113.5",
    "169.254.169.254",
];
const PORTS: [u16; 6] = [22, 53, 80, 443, 853, 8080];

fn rules(texts: &[&str]) -> Vec<EgressRule> {
    texts.iter().map(|t| t.parse().unwrap()).collect()
}

fn plan(table: &str, rules: &[EgressRule]) -> EgressPlan {
    EgressPlan {
        table: table.into(),
        attach: vec![Attach::Output],
        policy: EgressPolicy::new(rules, &[]),
        resolvers: vec![SERVER_LINK.parse().unwrap()],
        host_gateway: None,
        exempt_mark: None,
        log_tag: table.into(),
    }
}

fn setup(texts: &[&str]) -> Option<(TestNet, Vec<std::net::TcpListener>, Firewall)> {
    setup_listening(texts, &PORTS)
}

fn setup_listening(
    texts: &[&str],
    ports: &[u16],
) -> Option<(TestNet, Vec<std::net::TcpListener>, Firewall)> {
    let net = TestNet::create(&EXTRA)?;
    let listeners = net.listen_tcp(ports);
    // Before the table, everything connects.
    net.assert_connects("198.51.100.11:80");
    let nft = Nft::new(Netns::Path(net.client_path()));
    let fw = Firewall::apply(nft, &plan("a3s_test", &rules(texts))).unwrap();
    Some((net, listeners, fw))
}

#[test]
fn static_rules_allow_their_addresses_and_ports_and_reset_the_rest() {
    let Some((net, _l, fw)) = setup(&["198.51.100.10:80", "203.0.113.0/24"]) else {
        return;
    };
    net.assert_connects("198.51.100.10:80");
    net.assert_connects("203.0.113.5:443");
    net.assert_connects("203.0.113.5:8080");
    net.assert_refused("198.51.100.10:443");
    net.assert_refused("198.51.100.11:80");
    net.assert_refused("192.0.2.2:80");
    // UDP to a refused destination fails at once too.
    let err = in_netns(&net.client_path(), || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        s.connect("198.51.100.11:5000").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        s.send(b"x").and_then(|_| s.recv(&mut [0u8; 8]))
    })
    .unwrap_err();
    assert_ne!(
        err.kind(),
        std::io::ErrorKind::WouldBlock,
        "UDP hung: {err}"
    );

    let denied = fw.denied().unwrap();
    let has = |addr: &str, protocol: Protocol, port: u16| {
        denied.iter().any(|d: &DeniedAttempt| {
            d.addr == addr.parse::<IpAddr>().unwrap()
                && d.protocol == protocol
                && d.port == port
                && d.packets >= 1
        })
    };
    assert!(has("198.51.100.10", Protocol::Tcp, 443), "{denied:?}");
    assert!(has("198.51.100.11", Protocol::Tcp, 80), "{denied:?}");
    assert!(has("198.51.100.11", Protocol::Udp, 5000), "{denied:?}");
    assert!(!has("198.51.100.10", Protocol::Tcp, 80), "{denied:?}");
    assert!(fw.denied_packets().unwrap() >= 4);

    // Applying again replaces the table; removing it opens everything.
    let nft = Nft::new(Netns::Path(net.client_path()));
    let fw = Firewall::apply(nft, &plan("a3s_test", &rules(&["198.51.100.11:80"]))).unwrap();
    net.assert_connects("198.51.100.11:80");
    net.assert_refused("198.51.100.10:80");
    assert!(fw.denied().unwrap().len() <= 1, "a fresh table");
    fw.remove().unwrap();
    net.assert_connects("198.51.100.10:443");
    fw.remove().unwrap();
}

#[test]
fn dns_goes_to_our_resolver_only() {
    let Some((net, _l, _fw)) = setup(&["203.0.113.0/24", "198.51.100.10"]) else {
        return;
    };
    net.assert_connects(&format!("{SERVER_LINK}:53"));
    net.assert_refused(&format!("{SERVER_LINK}:853"));
    // Other servers, even at addresses a rule allows: no DNS, no DoT.
    net.assert_refused("203.0.113.5:53");
    net.assert_refused("198.51.100.10:853");
    net.assert_connects("198.51.100.10:443");
}

#[test]
fn an_empty_list_refuses_everything_but_our_dns() {
    let Some((net, _l, _fw)) = setup(&[]) else {
        return;
    };
    net.assert_connects(&format!("{SERVER_LINK}:53"));
    for addr in ["198.51.100.10:80", "203.0.113.5:443", "192.0.2.2:22"] {
        net.assert_refused(addr);
    }
}

#[test]
fn link_local_is_refused_unless_named() {
    let Some((net, _l, fw)) = setup(&["0.0.0.0/0"]) else {
        return;
    };
    net.assert_connects("198.51.100.11:8080");
    net.assert_refused("169.254.169.254:80");
    let named = plan("a3s_test", &rules(&["0.0.0.0/0", "169.254.169.254:80"]));
    Firewall::apply(Nft::new(Netns::Path(net.client_path())), &named).unwrap();
    net.assert_connects("169.254.169.254:80");
    net.assert_refused("169.254.169.254:443");
    fw.remove().unwrap();
}

#[test]
fn resolved_addresses_open_for_their_ports_with_a_timeout() {
    let Some((net, _l, fw)) = setup(&["api.example.test:443"]) else {
        return;
    };
    net.assert_refused("198.51.100.10:443");
    let addr = ResolvedAddr {
        addr: "198.51.100.10".parse().unwrap(),
        ttl_secs: 300,
    };
    fw.allow_resolved(&[addr], &Ports::of(Some(443))).unwrap();
    fw.allow_resolved(&[addr], &Ports::of(Some(443))).unwrap();
    net.assert_connects("198.51.100.10:443");
    net.assert_refused("198.51.100.10:80");
    net.assert_refused("198.51.100.11:443");
    // The element lives at least as long as the TTL.
    let json = Nft::new(Netns::Path(net.client_path()))
        .json(&["list", "set", "inet", "a3s_test", "dns4_ports"])
        .unwrap();
    let text = json.to_string();
    let timeout: u64 = text
        .split("\"timeout\":")
        .nth(1)
        .and_then(|t| t.split([',', '}']).next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no element timeout in {text}"));
    assert!(timeout >= 300, "{text}");
}

/// The whole path: the box (client namespace) asks our DNS server (server
/// namespace, forwarding to dnsmasq there); allowed answers reach the
/// firewall before the box, denied names get NXDOMAIN and are recorded.
#[test]
fn the_dns_server_feeds_the_firewall_before_answering() {
    // Port 53 is left to the DNS server.
    let Some((net, _l, fw)) =
        setup_listening(&["api.example.test:443", "*.cdn.test"], &[80, 443, 8080])
    else {
        return;
    };
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let Some(dnsmasq) = Dnsmasq::start(
        Some(&net.server),
        loopback,
        &[
            "--host-record=api.example.test,198.51.100.10",
            "--host-record=evil.test,198.51.100.11",
            "--address=/cdn.test/203.0.113.5",
        ],
    ) else {
        return;
    };
    let denied_names = Arc::new(Mutex::new(Vec::new()));
    let sink = denied_names.clone();
    let feed = Arc::new(
        FirewallFeed::new(Some(Arc::new(fw.clone())))
            .on_denied(move |q| sink.lock().unwrap().push(q.name.clone())),
    );
    let rules = rules(&["api.example.test:443", "*.cdn.test"]);
    let mut config = DnsServerConfig::new(
        vec![SocketAddr::new(SERVER_LINK.parse().unwrap(), 53)],
        vec![dnsmasq.addr],
    );
    config.default_client = ClientPolicy {
        box_id: Some("box1".into()),
        names: Some(Arc::new(EgressPolicy::new(&rules, &[]).names)),
        ..ClientPolicy::default()
    };
    config.observer = Some(feed);
    // The server runs in the server namespace, on its own runtime.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server_ns = net.server_path();
    let server = std::thread::spawn(move || {
        enter_netns(&server_ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let s = DnsServer::start(config, Directory::new()).await.unwrap();
            ready_tx.send(()).unwrap();
            let _ = stop_rx.await;
            drop(s);
        });
    });
    ready_rx.recv().unwrap();
    let resolver = SocketAddr::new(SERVER_LINK.parse().unwrap(), 53);

    net.assert_refused("198.51.100.10:443");
    let r = in_netns(&net.client_path(), move || {
        ask(resolver, "api.example.test", RecordType::A, false)
    });
    assert_eq!(addresses(&r), ["198.51.100.10".parse::<IpAddr>().unwrap()]);
    // No wait: the firewall knew before the answer came.
    net.assert_connects("198.51.100.10:443");
    net.assert_refused("198.51.100.10:80");

    let r = in_netns(&net.client_path(), move || {
        ask(resolver, "img.cdn.test", RecordType::A, true)
    });
    assert_eq!(addresses(&r), ["203.0.113.5".parse::<IpAddr>().unwrap()]);
    net.assert_connects("203.0.113.5:8080");

    let r = in_netns(&net.client_path(), move || {
        ask(resolver, "evil.test", RecordType::A, false)
    });
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    net.assert_refused("198.51.100.11:443");
    assert_eq!(*denied_names.lock().unwrap(), ["evil.test"]);

    let _ = stop_tx.send(());
    server.join().unwrap();
}

/// A bridge-and-TAP data plane: the box's packets are routed through the
/// namespace holding the table, which sees them on its forward hook.
#[test]
fn the_forward_hook_polices_routed_packets_from_the_box_interface() {
    let Some(net) = TestNet::create_routed(&EXTRA) else {
        return;
    };
    let _listeners = net.listen_tcp(&PORTS);
    net.assert_connects("198.51.100.11:80");
    let mut plan = plan("a3s_fwd", &rules(&["198.51.100.10:80"]));
    plan.attach = vec![Attach::Forward {
        iifname: Some("vb".into()),
        saddr: Some("10.77.0.2".parse().unwrap()),
    }];
    let fw = Firewall::apply(Nft::new(Netns::Path(net.firewall_path())), &plan).unwrap();
    net.assert_connects("198.51.100.10:80");
    net.assert_refused("198.51.100.10:443");
    net.assert_refused("198.51.100.11:80");
    net.assert_refused("169.254.169.254:80");
    let denied = fw.denied().unwrap();
    assert_eq!(denied.len(), 3, "{denied:?}");
    // The router's own traffic is not the box's.
    in_netns(&net.firewall_path(), || {
        std::net::TcpStream::connect_timeout(
            &"198.51.100.11:80".parse().unwrap(),
            Duration::from_secs(3),
        )
        .expect("the router itself is not policed");
    });
}
