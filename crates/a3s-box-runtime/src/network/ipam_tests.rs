use super::*;
use a3s_box_core::spec::Cidr;
use a3s_box_core::ErrorKind;

use crate::network::store::NetworkCreate;

fn setup(subnet: &str) -> (tempfile::TempDir, NetworkStore, Ipam) {
    let dir = tempfile::tempdir().unwrap();
    let store = NetworkStore::at(dir.path()).with_host_routes(vec![]);
    let net = store
        .create(NetworkCreate {
            name: "net".into(),
            subnet: Some(subnet.parse::<Cidr>().unwrap()),
            ..NetworkCreate::default()
        })
        .unwrap();
    let ipam = Ipam::new(&store, &net).unwrap();
    (dir, store, ipam)
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().unwrap()
}

#[test]
fn addresses_follow_the_gateway_in_order_with_derived_macs() {
    let (_d, _s, ipam) = setup("10.90.0.0/24");
    let a = ipam.allocate("a", LeaseRequest::default()).unwrap();
    let b = ipam.allocate("b", LeaseRequest::default()).unwrap();
    assert_eq!(a.ipv4, ip("10.90.0.2"));
    assert_eq!(b.ipv4, ip("10.90.0.3"));
    assert_eq!(a.mac.to_string(), "02:42:0a:5a:00:02");
    assert_eq!(ipam.lease("a").unwrap(), Some(a.clone()));
    assert_eq!(ipam.leases().unwrap(), vec![a.clone(), b]);
    // Asking again gives the same lease.
    assert_eq!(ipam.allocate("a", LeaseRequest::default()).unwrap(), a);
}

#[test]
fn released_addresses_are_not_reused_at_once_and_the_search_wraps() {
    let (_d, _s, ipam) = setup("10.90.0.0/29"); // hosts .1-.6, gateway .1
    let ids = ["a", "b", "c", "d", "e"];
    for id in ids {
        ipam.allocate(id, LeaseRequest::default()).unwrap();
    }
    let full = ipam.allocate("f", LeaseRequest::default()).unwrap_err();
    assert_eq!(full.kind(), ErrorKind::Unavailable, "{full}");
    assert_eq!(ipam.release("b").unwrap().unwrap().ipv4, ip("10.90.0.3"));
    assert_eq!(ipam.release("b").unwrap(), None);
    assert_eq!(
        ipam.allocate("f", LeaseRequest::default()).unwrap().ipv4,
        ip("10.90.0.3"),
        "the only free one, found by wrapping around"
    );
    ipam.release("c").unwrap();
    ipam.release("a").unwrap();
    assert_eq!(
        ipam.allocate("g", LeaseRequest::default()).unwrap().ipv4,
        ip("10.90.0.4"),
        "after the last handed out (.3), not the lowest free (.2)"
    );
}

#[test]
fn requested_addresses_are_checked() {
    let (_d, _s, ipam) = setup("10.90.0.0/24");
    let req = |s: &str| LeaseRequest {
        ipv4: Some(ip(s)),
        mac: None,
    };
    assert_eq!(
        ipam.allocate("a", req("10.90.0.50")).unwrap().ipv4,
        ip("10.90.0.50")
    );
    let taken = ipam.allocate("b", req("10.90.0.50")).unwrap_err();
    assert_eq!(taken.kind(), ErrorKind::Conflict);
    assert!(taken.to_string().contains("in use by box a"), "{taken}");
    for (bad, says) in [
        ("10.90.1.5", "not a host address"),
        ("10.90.0.0", "not a host address"),
        ("10.90.0.255", "not a host address"),
        ("10.90.0.1", "gateway"),
    ] {
        let e = ipam.allocate("b", req(bad)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{bad}");
        assert!(e.to_string().contains(says), "{bad}: {e}");
    }
    // A box asking for another address moves there.
    assert_eq!(
        ipam.allocate("a", req("10.90.0.60")).unwrap().ipv4,
        ip("10.90.0.60")
    );
    assert_eq!(ipam.leases().unwrap().len(), 1);
    assert_eq!(
        ipam.allocate("b", req("10.90.0.50")).unwrap().ipv4,
        ip("10.90.0.50")
    );
}

#[test]
fn requested_macs_are_unique_and_derived_ones_step_aside() {
    let (_d, _s, ipam) = setup("10.90.0.0/24");
    let mac: MacAddr = "02:42:0a:5a:00:03".parse().unwrap(); // what .3 would derive
    let a = ipam
        .allocate(
            "a",
            LeaseRequest {
                ipv4: None,
                mac: Some(mac),
            },
        )
        .unwrap();
    assert_eq!((a.ipv4, a.mac), (ip("10.90.0.2"), mac));
    let b = ipam.allocate("b", LeaseRequest::default()).unwrap();
    assert_eq!(b.ipv4, ip("10.90.0.3"));
    assert_ne!(b.mac, mac);
    assert_eq!(b.mac.0[0] & 0x03, 0x02, "unicast, locally administered");
    let e = ipam
        .allocate(
            "c",
            LeaseRequest {
                ipv4: None,
                mac: Some(mac),
            },
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict);
}

#[test]
fn reconcile_drops_leases_of_boxes_that_are_gone() {
    let (_d, _s, ipam) = setup("10.90.0.0/24");
    for id in ["live", "dead1", "dead2"] {
        ipam.allocate(id, LeaseRequest::default()).unwrap();
    }
    let gone = ipam.reconcile(|id| id == "live").unwrap();
    let gone: Vec<&str> = gone.iter().map(|l| l.box_id.as_str()).collect();
    assert_eq!(gone, ["dead1", "dead2"]);
    assert_eq!(ipam.leases().unwrap().len(), 1);
}

#[test]
fn a_removed_network_gives_no_addresses() {
    let (_d, store, ipam) = setup("10.90.0.0/24");
    store.remove("net", |_| vec![]).unwrap();
    let e = ipam.allocate("a", LeaseRequest::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // Nor does one created again under the same name (another id).
    store
        .create(NetworkCreate {
            name: "net".into(),
            ..NetworkCreate::default()
        })
        .unwrap();
    let e = ipam.allocate("a", LeaseRequest::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn twenty_threads_get_twenty_distinct_addresses() {
    let (_d, store, ipam) = setup("10.90.0.0/24");
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let ipam = Ipam::new(&store, ipam.network()).unwrap();
            std::thread::spawn(move || {
                ipam.allocate(&format!("box{i}"), LeaseRequest::default())
                    .unwrap()
            })
        })
        .collect();
    let mut ips: Vec<Ipv4Addr> = handles
        .into_iter()
        .map(|h| h.join().unwrap().ipv4)
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20);
    assert_eq!(ipam.leases().unwrap().len(), 20);
}
