//! The network flag parsers of `a3s_box_core::spec`: `-p`, `--expose`,
//! `--add-host`, `--dns*`, `--network` (with `--network-alias`, `--ip`),
//! `--egress-allow`, `--mac-address`, and the network rules of `validate()`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use a3s_box_core::spec::{
    parse_add_host, parse_dns, parse_dns_option, parse_dns_search, parse_egress, parse_expose,
    parse_network, parse_networks, parse_publish, Cidr, EgressRule, EgressTarget, ExposedPort,
    ExtraHost, HostAddr, MacAddr, NetworkAttachment, NetworkMode, NetworkSpec, PortMapping,
    Protocol, SpecErrorKind,
};

fn map(
    host_ip: Option<IpAddr>,
    host_port: Option<u16>,
    container_port: u16,
    protocol: Protocol,
) -> PortMapping {
    PortMapping {
        host_ip,
        host_port,
        container_port,
        protocol,
    }
}

const LOCAL: Option<IpAddr> = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));

#[test]
fn publish_takes_every_docker_form() {
    use Protocol::{Tcp, Udp};
    for (spec, want) in [
        ("80", vec![map(None, None, 80, Tcp)]),
        ("8080:80", vec![map(None, Some(8080), 80, Tcp)]),
        (":80", vec![map(None, None, 80, Tcp)]),
        ("53:53/udp", vec![map(None, Some(53), 53, Udp)]),
        ("53/UDP", vec![map(None, None, 53, Udp)]),
        ("127.0.0.1:8080:80", vec![map(LOCAL, Some(8080), 80, Tcp)]),
        ("127.0.0.1::80", vec![map(LOCAL, None, 80, Tcp)]),
        (
            "[::1]:8080:80/tcp",
            vec![map(
                Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                Some(8080),
                80,
                Tcp,
            )],
        ),
        (
            "::1:8080:80",
            vec![map(
                Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
                Some(8080),
                80,
                Tcp,
            )],
        ),
        (
            "8000-8002:80-82",
            vec![
                map(None, Some(8000), 80, Tcp),
                map(None, Some(8001), 81, Tcp),
                map(None, Some(8002), 82, Tcp),
            ],
        ),
        (
            "80-81",
            vec![map(None, None, 80, Tcp), map(None, None, 81, Tcp)],
        ),
        ("65535:1", vec![map(None, Some(65535), 1, Tcp)]),
    ] {
        assert_eq!(parse_publish(spec).unwrap(), want, "{spec}");
        for m in &want {
            assert_eq!(
                parse_publish(&m.to_string()).unwrap(),
                vec![*m],
                "display of {spec}"
            );
        }
    }
}

#[test]
fn publish_refuses_with_a_reason() {
    for (bad, kind, fragment) in [
        (
            "99999",
            SpecErrorKind::OutOfRange,
            "port 99999 is out of range",
        ),
        ("0", SpecErrorKind::OutOfRange, "port 0 is out of range"),
        ("8080:0", SpecErrorKind::OutOfRange, "port 0"),
        (
            "http",
            SpecErrorKind::Invalid,
            "\"http\" is not a port number",
        ),
        ("80/sctp", SpecErrorKind::Unsupported, "SCTP"),
        ("80/icmp", SpecErrorKind::Invalid, "unknown protocol"),
        ("8080:", SpecErrorKind::Missing, "no container port"),
        ("", SpecErrorKind::Missing, "no container port"),
        (
            "8000-8001:80-82",
            SpecErrorKind::Invalid,
            "not ranges of the same length",
        ),
        (
            "8000-8010:80",
            SpecErrorKind::Invalid,
            "one host port per container port",
        ),
        ("82-80", SpecErrorKind::Invalid, "runs backwards"),
        ("1.2.3:80:80", SpecErrorKind::Invalid, "not an IP address"),
        (
            "localhost:80:80",
            SpecErrorKind::Invalid,
            "not an IP address",
        ),
        ("-1", SpecErrorKind::Invalid, "not a port number"),
        ("80-", SpecErrorKind::Invalid, "not a port number"),
    ] {
        let e = parse_publish(bad).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.kind),
            ("--publish", kind),
            "{bad}: {e}"
        );
        assert!(e.to_string().contains(fragment), "{bad}: {e}");
    }
    let e = parse_publish("99999").unwrap_err().to_string();
    assert_eq!(
        e,
        "invalid --publish \"99999\": port 99999 is out of range: use a port from 1 to 65535"
    );
}

#[test]
fn expose_takes_ports_and_ranges() {
    assert_eq!(
        parse_expose("80").unwrap(),
        vec![ExposedPort {
            port: 80,
            protocol: Protocol::Tcp
        }]
    );
    let udp = parse_expose("8000-8002/udp").unwrap();
    assert_eq!(udp.len(), 3);
    assert!(udp.iter().all(|p| p.protocol == Protocol::Udp));
    assert_eq!(udp[2].to_string(), "8002/udp");
    for bad in ["", "0", "x", "80/sctp", "90-80", "65536"] {
        assert_eq!(parse_expose(bad).unwrap_err().field, "--expose", "{bad}");
    }
}

#[test]
fn add_host_takes_dockers_forms() {
    let host = |name: &str, addr: HostAddr| ExtraHost {
        name: name.into(),
        addr,
    };
    let v4 = HostAddr::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)));
    let v6 = HostAddr::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST));
    for (spec, want) in [
        ("db:10.0.0.2", host("db", v4)),
        ("db=10.0.0.2", host("db", v4)),
        ("db:[10.0.0.2]", host("db", v4)),
        ("db:::1", host("db", v6)),
        ("db:[::1]", host("db", v6)),
        ("db=::1", host("db", v6)),
        (
            "my_db.local:host-gateway",
            host("my_db.local", HostAddr::HostGateway),
        ),
    ] {
        assert_eq!(parse_add_host(spec).unwrap(), want, "{spec}");
        assert_eq!(want.to_string().parse::<ExtraHost>().unwrap(), want);
    }
    for (bad, fragment) in [
        ("db", "use NAME:IP"),
        (":10.0.0.1", "use NAME:IP"),
        ("db:", "not an IP address"),
        ("db:example.com", "not an IP address"),
        ("db:10.0.0.300", "not an IP address"),
        ("a b:10.0.0.1", "host name \"a b\""),
        ("-db:10.0.0.1", "host name"),
    ] {
        let e = parse_add_host(bad).unwrap_err();
        assert_eq!(e.field, "--add-host");
        assert!(e.to_string().contains(fragment), "{bad}: {e}");
    }
}

#[test]
fn dns_flags_parse() {
    assert_eq!(
        parse_dns("10.0.0.2").unwrap(),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))
    );
    assert_eq!(parse_dns("::1").unwrap(), IpAddr::V6(Ipv6Addr::LOCALHOST));
    assert!(parse_dns("dns.example")
        .unwrap_err()
        .message
        .contains("name server's address"));
    assert_eq!(parse_dns_search("corp.example.").unwrap(), "corp.example");
    assert!(parse_dns_search(".")
        .unwrap_err()
        .message
        .contains("leave --dns-search out"));
    assert!(parse_dns_search("a..b").is_err());
    assert_eq!(parse_dns_option("ndots:2").unwrap(), "ndots:2");
    assert!(parse_dns_option("two words").is_err());
    assert!(parse_dns_option("").is_err());
}

fn named(name: &str) -> NetworkAttachment {
    NetworkAttachment {
        name: name.into(),
        aliases: Vec::new(),
        ipv4: None,
    }
}

#[test]
fn network_modes_parse_and_host_is_refused_with_the_reason() {
    assert_eq!(parse_network("none").unwrap(), NetworkMode::None);
    assert_eq!(parse_network("default").unwrap(), NetworkMode::Default);
    assert_eq!(parse_network("bridge").unwrap(), NetworkMode::Default);
    assert_eq!(
        parse_network("backend").unwrap(),
        NetworkMode::Networks(vec![named("backend")])
    );
    assert_eq!(
        parse_network("name=backend,alias=db,alias=pg,ip=10.1.0.5").unwrap(),
        NetworkMode::Networks(vec![NetworkAttachment {
            name: "backend".into(),
            aliases: vec!["db".into(), "pg".into()],
            ipv4: Some(Ipv4Addr::new(10, 1, 0, 5)),
        }])
    );
    let e = parse_network("host").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Unsupported);
    assert!(e.to_string().contains("own kernel"), "{e}");
    let e = parse_network("container:web").unwrap_err();
    assert_eq!(e.kind, SpecErrorKind::Unsupported);
    assert!(e.message.contains("pod"), "{e}");
    for (bad, kind) in [
        ("", SpecErrorKind::Invalid),
        ("bad name", SpecErrorKind::Invalid),
        ("name=a,ip6=::1", SpecErrorKind::Unsupported),
        ("name=a,colour=red", SpecErrorKind::Invalid),
        ("alias=x", SpecErrorKind::Missing),
        ("name=a,ip=::1", SpecErrorKind::Invalid),
        ("name=a,alias", SpecErrorKind::Invalid),
    ] {
        assert_eq!(parse_network(bad).unwrap_err().kind, kind, "{bad:?}");
    }
}

#[test]
fn several_networks_aliases_and_ip_combine_as_docker_does() {
    let none: [&str; 0] = [];
    assert_eq!(
        parse_networks(&none, &none, None).unwrap(),
        NetworkMode::Default
    );
    assert_eq!(
        parse_networks(&["none"], &none, None).unwrap(),
        NetworkMode::None
    );
    assert_eq!(
        parse_networks(&["a", "b"], &none, None).unwrap(),
        NetworkMode::Networks(vec![named("a"), named("b")])
    );
    assert_eq!(
        parse_networks(&["a"], &["web"], Some("10.0.0.5")).unwrap(),
        NetworkMode::Networks(vec![NetworkAttachment {
            name: "a".into(),
            aliases: vec!["web".into()],
            ipv4: Some(Ipv4Addr::new(10, 0, 0, 5)),
        }])
    );
    for (networks, aliases, ip, field, fragment) in [
        (vec!["none", "a"], vec![], None, "--network", "stand alone"),
        (
            vec!["a", "default"],
            vec![],
            None,
            "--network",
            "stand alone",
        ),
        (vec!["a", "a"], vec![], None, "--network", "named twice"),
        (
            vec![],
            vec!["web"],
            None,
            "--network-alias",
            "user-defined networks only",
        ),
        (
            vec!["none"],
            vec![],
            Some("10.0.0.5"),
            "--ip",
            "user-defined networks only",
        ),
        (
            vec!["a", "b"],
            vec![],
            Some("10.0.0.5"),
            "--ip",
            "several networks",
        ),
    ] {
        let e = parse_networks(&networks, &aliases, ip).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.kind),
            (field, SpecErrorKind::Conflict),
            "{e}"
        );
        assert!(e.message.contains(fragment), "{e}");
    }
    assert!(parse_networks(&["a"], &["bad alias"], None).is_err());
    assert!(parse_networks(&["a"], &[], Some("10.0.0")).is_err());
}

#[test]
fn egress_rules_take_names_addresses_blocks_and_ports() {
    let rule = |target: EgressTarget, port: Option<u16>| EgressRule { target, port };
    let name = |n: &str| EgressTarget::Name(n.into());
    let cidr = |t: &str| EgressTarget::Cidr(t.parse::<Cidr>().unwrap());
    let ip = |t: &str| EgressTarget::Ip(t.parse().unwrap());
    for (spec, want) in [
        ("api.example.com", rule(name("api.example.com"), None)),
        ("API.Example.com.", rule(name("api.example.com"), None)),
        ("*.example.com", rule(name("*.example.com"), None)),
        (
            "api.example.com:443",
            rule(name("api.example.com"), Some(443)),
        ),
        ("localhost:8080", rule(name("localhost"), Some(8080))),
        ("10.0.0.0/8", rule(cidr("10.0.0.0/8"), None)),
        ("10.0.0.0/8:443", rule(cidr("10.0.0.0/8"), Some(443))),
        ("1.2.3.4:443", rule(ip("1.2.3.4"), Some(443))),
        ("1.2.3.4", rule(ip("1.2.3.4"), None)),
        ("::1", rule(ip("::1"), None)),
        ("[::1]:53", rule(ip("::1"), Some(53))),
        ("[::1]", rule(ip("::1"), None)),
        ("fd00::/8", rule(cidr("fd00::/8"), None)),
        ("[fd00::/8]:53", rule(cidr("fd00::/8"), Some(53))),
    ] {
        assert_eq!(parse_egress(spec).unwrap(), want, "{spec}");
        assert_eq!(
            want.to_string().parse::<EgressRule>().unwrap(),
            want,
            "display of {spec}"
        );
    }
    for (bad, fragment) in [
        ("*", "may connect anywhere"),
        ("", "may connect anywhere"),
        ("*.*.example.com", "host name"),
        ("api.example.com:0", "out of range"),
        ("api.example.com:http", "not a port number"),
        ("api.example.com:80-81", "one port per rule"),
        ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
        ("10.0.0.0/33", "prefix length is 0 to 32"),
        ("[::1", "no closing bracket"),
        ("[::1]53", "use a host name"),
        ("1.2.3", "neither an IP address nor a host name"),
        ("exa mple.com", "host name"),
    ] {
        let e = parse_egress(bad).unwrap_err();
        assert_eq!(e.field, "--egress-allow");
        assert!(e.to_string().contains(fragment), "{bad}: {e}");
    }
}

#[test]
fn cidr_blocks_and_mac_addresses() {
    let c: Cidr = "192.168.0.0/16".parse().unwrap();
    assert!(c.contains("192.168.4.5".parse().unwrap()));
    assert!(!c.contains("192.169.0.1".parse().unwrap()));
    assert!(!c.contains("::1".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    let mac: MacAddr = "02:42:AC:11:00:02".parse().unwrap();
    assert_eq!(mac.to_string(), "02:42:ac:11:00:02");
    assert_eq!("02-42-ac-11-00-02".parse::<MacAddr>().unwrap(), mac);
    for bad in [
        "02:42:ac:11:00",
        "02:42:ac:11:00:02:03",
        "2:42:ac:11:00:02",
        "zz:42:ac:11:00:02",
        "",
    ] {
        assert_eq!(
            bad.parse::<MacAddr>().unwrap_err().field,
            "--mac-address",
            "{bad}"
        );
    }
}

fn spec_with(f: impl FnOnce(&mut NetworkSpec)) -> NetworkSpec {
    let mut spec = NetworkSpec::default();
    f(&mut spec);
    spec
}

#[test]
fn network_rules_refuse_what_cannot_work() {
    let p = |s: &str| parse_publish(s).unwrap();
    let cases: Vec<(NetworkSpec, &str, SpecErrorKind, &str)> = vec![
        (
            spec_with(|s| {
                s.mode = NetworkMode::None;
                s.ports = p("80");
            }),
            "ports",
            SpecErrorKind::Conflict,
            "port publishing and --network none",
        ),
        (
            spec_with(|s| {
                s.mode = NetworkMode::None;
                s.publish_all = true;
            }),
            "ports",
            SpecErrorKind::Conflict,
            "port publishing",
        ),
        (
            spec_with(|s| {
                s.mode = NetworkMode::None;
                s.egress = vec![parse_egress("example.com").unwrap()];
            }),
            "egress",
            SpecErrorKind::Conflict,
            "--egress-allow and --network none",
        ),
        (
            spec_with(|s| s.ports = [p("8080:80"), p("127.0.0.1:8080:81")].concat()),
            "ports[1]",
            SpecErrorKind::Conflict,
            "same host port",
        ),
        (
            spec_with(|s| s.ports = vec![map(None, None, 0, Protocol::Tcp)]),
            "ports[0].container_port",
            SpecErrorKind::OutOfRange,
            "1 to 65535",
        ),
        (
            spec_with(|s| s.ports = vec![map(None, Some(0), 80, Protocol::Tcp)]),
            "ports[0].host_port",
            SpecErrorKind::OutOfRange,
            "leave it out",
        ),
        (
            spec_with(|s| {
                s.expose = vec![ExposedPort {
                    port: 0,
                    protocol: Protocol::Udp,
                }]
            }),
            "expose[0].port",
            SpecErrorKind::OutOfRange,
            "1 to 65535",
        ),
        (
            spec_with(|s| s.mode = NetworkMode::Networks(vec![])),
            "mode.networks",
            SpecErrorKind::Missing,
            "at least one network",
        ),
        (
            spec_with(|s| s.mode = NetworkMode::Networks(vec![named("host")])),
            "mode.networks[0].name",
            SpecErrorKind::Invalid,
            "network mode, not a network name",
        ),
        (
            spec_with(|s| s.mode = NetworkMode::Networks(vec![named("a"), named("a")])),
            "mode.networks[1].name",
            SpecErrorKind::Conflict,
            "twice",
        ),
        (
            spec_with(|s| {
                let mut a = named("a");
                a.ipv4 = Some(Ipv4Addr::LOCALHOST);
                s.mode = NetworkMode::Networks(vec![a]);
            }),
            "mode.networks[0].ipv4",
            SpecErrorKind::Invalid,
            "unicast",
        ),
        (
            spec_with(|s| s.dns.servers = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]),
            "dns.servers[0]",
            SpecErrorKind::Invalid,
            "unicast",
        ),
        (
            spec_with(|s| s.dns.options = vec!["a b".into()]),
            "dns.options[0]",
            SpecErrorKind::Invalid,
            "one word",
        ),
        (
            spec_with(|s| {
                s.extra_hosts = vec![ExtraHost {
                    name: "a b".into(),
                    addr: HostAddr::HostGateway,
                }]
            }),
            "extra_hosts[0].name",
            SpecErrorKind::Invalid,
            "host name",
        ),
        (
            spec_with(|s| {
                s.egress = vec![EgressRule {
                    target: EgressTarget::Name("Example.com".into()),
                    port: None,
                }]
            }),
            "egress[0].target",
            SpecErrorKind::Invalid,
            "lower case",
        ),
        (
            spec_with(|s| s.mac_address = Some("01:00:5e:00:00:01".parse().unwrap())),
            "mac_address",
            SpecErrorKind::Invalid,
            "unicast",
        ),
    ];
    for (spec, field, kind, fragment) in cases {
        let e = spec.validate().unwrap_err();
        assert_eq!((e.field.as_str(), e.kind), (field, kind), "{e}");
        assert!(e.to_string().contains(fragment), "{e}");
    }
}

#[test]
fn docker_allows_these_with_network_none_and_so_do_we() {
    let spec = spec_with(|s| {
        s.mode = NetworkMode::None;
        s.dns.servers = vec![parse_dns("10.0.0.2").unwrap()];
        s.extra_hosts = vec![parse_add_host("db:10.0.0.3").unwrap()];
        s.expose = parse_expose("80").unwrap();
        s.mac_address = Some("02:00:00:00:00:01".parse().unwrap());
    });
    spec.validate().unwrap();
    let ok = spec_with(|s| {
        s.ports = [
            parse_publish("127.0.0.1:8080:80").unwrap(),
            parse_publish("127.0.0.2:8080:80").unwrap(),
        ]
        .concat();
        s.ports.extend(parse_publish("8080:80/udp").unwrap());
    });
    ok.validate().unwrap();
}
