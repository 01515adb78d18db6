//! Property tests of the spec parsers: on any input every parser returns
//! `Ok` or `Err` (never panics); what parses validates without panicking,
//! and the values that display in flag syntax parse back to themselves.

use a3s_box_core::spec::{
    parse_add_host, parse_dns, parse_dns_option, parse_dns_search, parse_egress, parse_env,
    parse_env_file, parse_expose, parse_label, parse_memory, parse_mount, parse_network,
    parse_networks, parse_publish, parse_size, parse_storage_opt, parse_tmpfs, parse_volume,
    AccelChoice, BoxSpec, Cidr, EgressRule, EnvVar, ExtraHost, MacAddr, NetworkSpec, RestartPolicy,
    Signal, StorageSpec, VolumesFrom,
};
use proptest::prelude::*;

/// Strings made of the characters the flag syntaxes care about, so the
/// parsers' branches are reached far more often than by random Unicode.
fn flagish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9:/.\\[\\]a-fA-F*=,_ -]{0,40}",
        "(type|src|source|dst|target|ro|readonly|volume-nocopy|tmpfs-size|tmpfs-mode|bind-propagation|size|mode|name|alias|ip)(=[a-z0-9/.:]{0,8})?(,(type|src|dst|ro|tmpfs-size|tmpfs-mode|name|alias|ip)(=[a-z0-9/.:]{0,8})?){0,4}",
        "(\\[[0-9a-f:]{0,12}\\]:)?[0-9]{0,6}(-[0-9]{0,6})?(:[0-9]{0,6}(-[0-9]{0,6})?)?(/(tcp|udp|sctp|x))?",
        "(\\*\\.)?[a-z0-9-]{0,10}(\\.[a-z0-9-]{0,10}){0,3}(:[0-9]{0,6})?",
        "(/[a-z.]{0,6}){0,4}(:(/[a-z.]{0,6}){0,3})?(:(ro|rw|nocopy|z|Z|rshared|rprivate)(,(ro|rw|nocopy))?)?",
    ]
}

/// Run every parser on `s`; check the round trips of what parses.
fn exercise(s: &str) {
    if let Ok(m) = parse_volume(s) {
        let _ = m.validate();
    }
    if let Ok(m) = parse_mount(s) {
        let _ = m.validate();
    }
    if let Ok(m) = parse_tmpfs(s) {
        let _ = m.validate();
    }
    let _ = parse_storage_opt(s);
    let _ = parse_memory(s);
    let _ = parse_size("--size", s);
    let _ = s.parse::<VolumesFrom>();
    let _ = s.parse::<AccelChoice>();
    if let Ok(ports) = parse_publish(s) {
        for p in &ports {
            assert_eq!(parse_publish(&p.to_string()).ok(), Some(vec![*p]), "{s:?}");
        }
        let spec = NetworkSpec {
            ports,
            ..NetworkSpec::default()
        };
        let _ = spec.validate();
    }
    let _ = parse_expose(s);
    if let Ok(h) = parse_add_host(s) {
        assert_eq!(h.to_string().parse::<ExtraHost>().ok(), Some(h), "{s:?}");
    }
    let _ = parse_dns(s);
    let _ = parse_dns_search(s);
    let _ = parse_dns_option(s);
    if let Ok(mode) = parse_network(s) {
        let spec = NetworkSpec {
            mode,
            ..NetworkSpec::default()
        };
        let _ = spec.validate();
    }
    let _ = parse_networks(&[s, s], &[s], Some(s));
    if let Ok(rule) = parse_egress(s) {
        assert_eq!(
            rule.to_string().parse::<EgressRule>().ok(),
            Some(rule.clone()),
            "{s:?}"
        );
        let spec = NetworkSpec {
            egress: vec![rule],
            ..NetworkSpec::default()
        };
        let _ = spec.validate();
    }
    if let Ok(c) = s.parse::<Cidr>() {
        assert_eq!(c.to_string().parse::<Cidr>().ok(), Some(c), "{s:?}");
        let _ = c.contains(c.addr);
    }
    if let Ok(m) = s.parse::<MacAddr>() {
        assert_eq!(m.to_string().parse::<MacAddr>().ok(), Some(m), "{s:?}");
    }
    if let Ok(sig) = s.parse::<Signal>() {
        assert_eq!(sig.to_string().parse::<Signal>().ok(), Some(sig), "{s:?}");
    }
    if let Ok(p) = s.parse::<RestartPolicy>() {
        assert_eq!(
            p.to_string().parse::<RestartPolicy>().ok(),
            Some(p),
            "{s:?}"
        );
    }
    if let Ok(v) = s.parse::<EnvVar>() {
        assert_eq!(v.to_string().parse::<EnvVar>().ok(), Some(v), "{s:?}");
    }
    let _ = parse_label(s);
    let _ = parse_env(&[s], |name| Some(name.to_string()));
    let _ = parse_env_file(s, |_| None);
    let _ = BoxSpec::from_json(s);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic(s in flagish()) {
        exercise(&s);
    }

    #[test]
    fn parsed_mounts_validate_in_a_storage_spec(specs in prop::collection::vec(flagish(), 0..6)) {
        let mounts: Vec<_> = specs
            .iter()
            .filter_map(|s| parse_volume(s).or_else(|_| parse_mount(s)).or_else(|_| parse_tmpfs(s)).ok())
            .collect();
        let spec = StorageSpec { mounts, ..StorageSpec::default() };
        // Every parsed mount is valid on its own; together they may only
        // clash on a target.
        if let Err(e) = spec.validate() {
            prop_assert!(e.message.contains("both on"), "{}", e);
        }
    }

    #[test]
    fn json_of_any_shape_never_panics(doc in "\\{(\"(schema_version|sandbox|containers|root|dir|path|process|args)\":(1|2|0|\"x\"|\\[\\]|\\{\\}|null),?){0,5}\\}") {
        if let Ok(spec) = BoxSpec::from_json(&doc) {
            let _ = spec.validate();
        }
    }
}
