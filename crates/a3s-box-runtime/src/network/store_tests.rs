use super::*;
use a3s_box_core::ErrorKind;

fn store() -> (tempfile::TempDir, NetworkStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = NetworkStore::at(dir.path().join("networks")).with_host_routes(vec![]);
    (dir, store)
}

fn named(name: &str) -> NetworkCreate {
    NetworkCreate {
        name: name.into(),
        ..NetworkCreate::default()
    }
}

fn cidr(text: &str) -> Cidr {
    text.parse().unwrap()
}

#[test]
fn create_picks_free_pool_subnets_and_the_first_host_as_gateway() {
    let (_d, store) = store();
    let a = store.create(named("a")).unwrap();
    let b = store.create(named("b")).unwrap();
    assert_eq!(a.subnet.to_string(), "10.89.0.0/24");
    assert_eq!(a.gateway, Ipv4Addr::new(10, 89, 0, 1));
    assert_eq!(b.subnet.to_string(), "10.89.1.0/24");
    assert_eq!(a.driver, "bridge");
    assert_eq!(a.id.len(), 64);
    assert_ne!(a.id, b.id);
    let on_disk: NetworkRecord =
        serde_json::from_slice(&std::fs::read(store.network_dir("a").join(NETWORK_FILE)).unwrap())
            .unwrap();
    assert_eq!(on_disk, a);
}

#[test]
fn automatic_subnets_skip_what_the_host_routes() {
    let dir = tempfile::tempdir().unwrap();
    let routes = vec![
        "10.89.0.0/23".parse().unwrap(),
        "10.89.2.128/25".parse().unwrap(),
    ];
    let store = NetworkStore::at(dir.path()).with_host_routes(routes);
    assert_eq!(
        store.create(named("a")).unwrap().subnet.to_string(),
        "10.89.3.0/24"
    );
}

#[test]
fn an_exhausted_pool_is_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let store = NetworkStore::at(dir.path())
        .with_host_routes(vec![])
        .with_pool("10.89.0.0/23".parse().unwrap());
    store.create(named("a")).unwrap();
    store.create(named("b")).unwrap();
    let err = store.create(named("c")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("network prune"), "{err}");
}

#[test]
fn explicit_subnets_and_gateways_are_checked() {
    let (_d, store) = store();
    let net = store
        .create(NetworkCreate {
            subnet: Some(cidr("172.30.0.0/16")),
            gateway: Some(Ipv4Addr::new(172, 30, 0, 254)),
            internal: true,
            labels: [("team".to_string(), "web".to_string())].into(),
            egress: vec!["api.example.com:443".parse().unwrap()],
            ..named("web")
        })
        .unwrap();
    assert_eq!(net.gateway, Ipv4Addr::new(172, 30, 0, 254));
    assert!(net.internal);
    assert_eq!(net.labels["team"], "web");
    assert_eq!(net.egress[0].to_string(), "api.example.com:443");

    let err = |req: NetworkCreate| store.create(req).unwrap_err();
    let overlap = err(NetworkCreate {
        subnet: Some(cidr("172.30.5.0/24")),
        ..named("other")
    });
    assert_eq!(overlap.kind(), ErrorKind::Conflict);
    assert!(
        overlap.to_string().contains("overlaps network web"),
        "{overlap}"
    );
    for (subnet, gateway, says) in [
        ("172.31.0.0/24", Some("172.31.1.1"), "not a host address"),
        ("172.31.0.0/24", Some("172.31.0.0"), "not a host address"),
        ("172.31.0.0/24", Some("172.31.0.255"), "not a host address"),
        ("172.31.0.0/31", None, "prefix length is 8 to 30"),
        ("10.0.0.0/7", None, "prefix length is 8 to 30"),
        ("127.0.0.0/24", None, "loopback"),
        ("169.254.0.0/24", None, "link-local"),
        ("239.0.0.0/24", None, "multicast"),
        ("fd00::/64", None, "IPv6"),
    ] {
        let e = err(NetworkCreate {
            subnet: Some(cidr(subnet)),
            gateway: gateway.map(|g| g.parse().unwrap()),
            ..named("other")
        });
        assert_eq!(e.kind(), ErrorKind::Invalid, "{subnet}: {e}");
        assert!(e.to_string().contains(says), "{subnet}: {e}");
    }
    let e = err(NetworkCreate {
        gateway: Some(Ipv4Addr::new(10, 0, 0, 1)),
        ..named("other")
    });
    assert!(e.to_string().contains("--gateway needs --subnet"), "{e}");
    assert!(store.get("other").is_err(), "nothing left behind");
}

#[test]
fn names_are_checked_and_unique() {
    let (_d, store) = store();
    store.create(named("web")).unwrap();
    let dup = store.create(named("web")).unwrap_err();
    assert_eq!(dup.kind(), ErrorKind::Conflict);
    assert_eq!(dup.to_string(), "network with name web already exists");
    for reserved in RESERVED_NETWORK_NAMES {
        let e = store.create(named(reserved)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{reserved}");
        assert!(e.to_string().contains("pre-defined"), "{e}");
    }
    for bad in ["", "-x", "a/b", "a b", ".hidden"] {
        assert_eq!(
            store.create(named(bad)).unwrap_err().kind(),
            ErrorKind::Invalid,
            "{bad:?}"
        );
    }
}

#[test]
fn bad_egress_rules_and_labels_are_refused() {
    let (_d, store) = store();
    let mut rule: EgressRule = "api.example.com".parse().unwrap();
    rule.port = Some(0);
    let e = store
        .create(NetworkCreate {
            egress: vec![rule],
            ..named("x")
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let e = store
        .create(NetworkCreate {
            labels: [(String::new(), "v".to_string())].into(),
            ..named("x")
        })
        .unwrap_err();
    assert!(e.to_string().contains("-l KEY=VALUE"), "{e}");
}

#[test]
fn the_default_network_is_built_in() {
    let (_d, store) = store();
    let default = store.get("default").unwrap();
    assert!(default.is_default());
    assert_eq!(default.subnet.to_string(), "10.88.0.0/16");
    assert_eq!(default.host_gateway(), Some(Ipv4Addr::new(169, 254, 1, 1)));
    assert_eq!(store.get("bridge").unwrap(), default, "stable once written");
    assert_eq!(store.get(&default.id[..10]).unwrap(), default);
    let e = store.remove("default", |_| vec![]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Invalid);
    let e = store
        .create(NetworkCreate {
            subnet: Some(cidr("10.88.7.0/24")),
            ..named("x")
        })
        .unwrap_err();
    assert!(e.to_string().contains("overlaps network default"), "{e}");
}

#[test]
fn the_default_network_moves_off_a_routed_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        NetworkStore::at(dir.path()).with_host_routes(vec!["10.88.0.0/16".parse().unwrap()]);
    assert_eq!(
        store.default_network().unwrap().subnet.to_string(),
        "10.89.0.0/24"
    );
}

#[test]
fn get_finds_names_ids_and_unique_prefixes() {
    let (_d, store) = store();
    let a = store.create(named("alpha")).unwrap();
    assert_eq!(store.get("alpha").unwrap(), a);
    assert_eq!(store.get(&a.id).unwrap(), a);
    assert_eq!(store.get(a.short_id()).unwrap(), a);
    let missing = store.get("nope").unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    assert_eq!(missing.to_string(), "no such network: nope");
    assert_eq!(store.get("").unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(store.get("../x").unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn list_puts_the_default_first_then_names_in_order() {
    let (_d, store) = store();
    for name in ["zeta", "alpha", "mid"] {
        store.create(named(name)).unwrap();
    }
    let names: Vec<String> = store.list().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(names, ["default", "alpha", "mid", "zeta"]);
}

#[test]
fn remove_is_refused_while_boxes_use_the_network() {
    let (_d, store) = store();
    let net = store.create(named("web")).unwrap();
    let e = store
        .remove("web", |n| {
            assert_eq!(n.id, net.id);
            vec!["db".into(), "api".into()]
        })
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        "network web is in use by db, api: disconnect or remove them first"
    );
    assert!(store.get("web").is_ok());
    assert_eq!(store.remove(&net.id[..8], |_| vec![]).unwrap().id, net.id);
    assert_eq!(store.get("web").unwrap_err().kind(), ErrorKind::NotFound);
    assert!(!store.network_dir("web").exists());
    // The subnet is free again.
    assert_eq!(store.create(named("again")).unwrap().subnet, net.subnet);
}

#[test]
fn prune_removes_unused_selected_networks_only() {
    let (_d, store) = store();
    for name in ["used", "idle", "kept"] {
        store.create(named(name)).unwrap();
    }
    let removed = store
        .prune(
            |n| n.name != "kept",
            |n| {
                if n.name == "used" {
                    vec!["box1".into()]
                } else {
                    vec![]
                }
            },
        )
        .unwrap();
    let removed: Vec<String> = removed.into_iter().map(|n| n.name).collect();
    assert_eq!(removed, ["idle"]);
    let left: Vec<String> = store.list().unwrap().into_iter().map(|n| n.name).collect();
    assert_eq!(left, ["default", "kept", "used"]);
}

#[test]
fn concurrent_creates_get_distinct_subnets() {
    let (_d, store) = store();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || store.create(named(&format!("n{i}"))).unwrap())
        })
        .collect();
    let mut subnets: Vec<String> = handles
        .into_iter()
        .map(|h| h.join().unwrap().subnet.to_string())
        .collect();
    subnets.sort();
    subnets.dedup();
    assert_eq!(subnets.len(), 8);
}
