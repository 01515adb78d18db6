use super::*;
use a3s_box_core::spec::EgressRule;

fn plan(rules: &[&str]) -> EgressPlan {
    let rules: Vec<EgressRule> = rules.iter().map(|r| r.parse().unwrap()).collect();
    EgressPlan {
        table: "a3s_0123456789ab".into(),
        attach: vec![Attach::Output],
        policy: EgressPolicy::new(&rules, &[]),
        resolvers: vec!["10.89.0.1".parse().unwrap()],
        host_gateway: None,
        exempt_mark: None,
        log_tag: "0123456789ab".into(),
    }
}

#[test]
fn the_ruleset_replaces_the_table_and_holds_the_rules_in_order() {
    let text = plan(&[
        "192.0.2.7:22",
        "198.51.100.0/24",
        "[2001:db8::1]:443",
        "169.254.169.254:80",
    ])
    .ruleset()
    .unwrap();
    assert!(text.starts_with(
        "table inet a3s_0123456789ab {}\ndelete table inet a3s_0123456789ab\ntable inet a3s_0123456789ab {\n"
    ));
    for want in [
        "set allow4 {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 198.51.100.0/24 }\n",
        "set allow4_ports {\n\t\ttype ipv4_addr . inet_service\n\t\tflags interval\n\t\telements = { 192.0.2.7/32 . 22 }\n",
        "set allow6_ports {\n\t\ttype ipv6_addr . inet_service\n\t\tflags interval\n\t\telements = { 2001:db8::1/128 . 443 }\n",
        "set named4_ports {\n\t\ttype ipv4_addr . inet_service\n\t\tflags interval\n\t\telements = { 169.254.169.254/32 . 80 }\n",
        "set resolvers4 {\n\t\ttype ipv4_addr\n\t\telements = { 10.89.0.1 }\n",
        "set dns4_ports {\n\t\ttype ipv4_addr . inet_service\n\t\tflags timeout\n\t}",
        "flags dynamic,timeout\n\t\ttimeout 3600s\n\t\tcounter\n",
        "counter denied {}",
        "chain output {\n\t\ttype filter hook output priority filter; policy accept;\n\t\tjump egress\n\t}",
        "limit rate 10/second burst 20 packets log prefix \"a3s-box egress denied 0123456789ab: \" level info",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let order = [
        "ct state established,related accept",
        "th dport 53 ip daddr @resolvers4 accept",
        "th dport { 53, 853 } jump deny",
        "ip daddr @named4 accept",
        "ip daddr 169.254.0.0/16 jump deny",
        "ip6 daddr fe80::/10 jump deny",
        "ip daddr @allow4 accept",
        "ip daddr . th dport @dns4_ports accept",
        "jump deny\n\t}",
        "update @denied4",
        "meta l4proto tcp reject with tcp reset",
        "reject with icmpx admin-prohibited",
    ];
    let mut at = 0;
    for want in order {
        let found = text[at..]
            .find(want)
            .unwrap_or_else(|| panic!("{want:?} out of order in\n{text}"));
        at += found + want.len();
    }
    assert!(!text.contains("forward"), "no forward hook asked for");
    assert!(!text.contains("meta mark"), "no exempt mark asked for");
}

#[test]
fn forward_hooks_match_interface_and_source_and_marks_pass() {
    let mut p = plan(&["192.0.2.7"]);
    p.attach = vec![
        Attach::Forward {
            iifname: Some("tap0".into()),
            saddr: None,
        },
        Attach::Forward {
            iifname: Some("br0".into()),
            saddr: Some("10.89.0.5".parse().unwrap()),
        },
    ];
    p.exempt_mark = Some(0xa3b0);
    let text = p.ruleset().unwrap();
    assert!(text.contains("chain forward {\n\t\ttype filter hook forward priority filter; policy accept;\n\t\tiifname \"tap0\" jump egress\n\t\tiifname \"br0\" ip saddr 10.89.0.5 jump egress\n\t}"), "{text}");
    assert!(text.contains("meta mark 0xa3b0 accept"), "{text}");
    assert!(!text.contains("chain output"), "{text}");
}

#[test]
fn bad_plans_are_refused() {
    assert!(
        plan(&[]).ruleset().is_ok(),
        "an empty list refuses everything"
    );
    let mut p = plan(&[]);
    p.table = "1abc".into();
    assert!(p.ruleset().is_err());
    p.table = "a;b".into();
    assert!(p.ruleset().is_err());
    let mut p = plan(&[]);
    p.attach.clear();
    assert!(p.ruleset().is_err());
    let mut p = plan(&[]);
    p.attach = vec![Attach::Forward {
        iifname: Some("x\" accept".into()),
        saddr: None,
    }];
    assert!(p.ruleset().is_err());
}

#[test]
fn resolved_elements_get_timeouts_at_least_the_ttl() {
    assert_eq!(
        resolved_timeout_secs(0),
        MIN_RESOLVED_SECS + RESOLVED_GRACE_SECS
    );
    assert_eq!(resolved_timeout_secs(300), 300 + RESOLVED_GRACE_SECS);
    assert_eq!(resolved_timeout_secs(u32::MAX), MAX_RESOLVED_SECS);
    let addrs = [
        ResolvedAddr {
            addr: "192.0.2.9".parse().unwrap(),
            ttl_secs: 300,
        },
        ResolvedAddr {
            addr: "2001:db8::9".parse().unwrap(),
            ttl_secs: 10,
        },
    ];
    let any = resolved_script("t", &addrs[..1], &Ports::any());
    assert_eq!(
        any,
        "add element inet t dns4 { 192.0.2.9 timeout 330s }\n\
         delete element inet t dns4 { 192.0.2.9 }\n\
         add element inet t dns4 { 192.0.2.9 timeout 330s }\n"
    );
    let mut ports = Ports::of(Some(443));
    ports.add(Some(80));
    let some = resolved_script("t", &addrs, &ports);
    assert!(some.contains("add element inet t dns4_ports { 192.0.2.9 . 80 timeout 330s }\n"));
    assert!(some.contains("add element inet t dns4_ports { 192.0.2.9 . 443 timeout 330s }\n"));
    assert!(some.contains("add element inet t dns6_ports { 2001:db8::9 . 443 timeout 90s }\n"));
    assert_eq!(some.lines().count(), 12);
}

#[test]
fn denied_sets_parse_from_nft_json() {
    let json: serde_json::Value = serde_json::from_str(
        r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "denied4", "table": "t",
        "type": ["ipv4_addr", "inet_proto", "inet_service"], "elem": [
          {"elem": {"val": {"concat": ["192.0.2.2", "tcp", 80]}, "expires": 3599, "counter": {"packets": 3, "bytes": 180}}},
          {"elem": {"val": {"concat": ["192.0.2.2", "udp", 5000]}, "expires": 3599, "counter": {"packets": 1, "bytes": 29}}},
          {"val": "garbage"}]}}]}"#,
    )
    .unwrap();
    assert_eq!(
        parse_denied(&json),
        vec![
            DeniedAttempt {
                addr: "192.0.2.2".parse().unwrap(),
                protocol: Protocol::Tcp,
                port: 80,
                packets: 3
            },
            DeniedAttempt {
                addr: "192.0.2.2".parse().unwrap(),
                protocol: Protocol::Udp,
                port: 5000,
                packets: 1
            },
        ]
    );
}

#[test]
fn a_link_local_host_gateway_is_not_refused_as_link_local() {
    let mut p = plan(&["api.example.com"]);
    p.host_gateway = Some("169.254.1.1".parse().unwrap());
    let text = p.ruleset().unwrap();
    assert!(
        text.contains("ip daddr != 169.254.1.1 ip daddr 169.254.0.0/16 jump deny"),
        "{text}"
    );
    assert!(text.contains("ip6 daddr fe80::/10 jump deny"), "{text}");
}
