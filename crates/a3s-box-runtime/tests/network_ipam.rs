//! Address leases under concurrent starts in separate processes: twenty
//! copies of this test binary allocate on one network at once.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use a3s_box_runtime::network::ipam::{Ipam, LeaseRequest};
use a3s_box_runtime::network::store::{NetworkCreate, NetworkStore};

const CHILD_ENV: &str = "A3S_TEST_IPAM_CHILD";

fn store(dir: &Path) -> NetworkStore {
    NetworkStore::at(dir).with_host_routes(vec![])
}

/// Run as a child: allocate for the box the environment names and print
/// the address.
#[test]
fn child_allocates() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, box_id) = spec.split_once(',').unwrap();
    let store = store(Path::new(dir));
    let net = store.get("net").unwrap();
    let lease = Ipam::new(&store, &net)
        .unwrap()
        .allocate(box_id, LeaseRequest::default())
        .unwrap();
    println!("LEASE {}", lease.ipv4);
}

#[test]
fn twenty_processes_get_twenty_distinct_addresses() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = store(dir.path());
    let net = store
        .create(NetworkCreate {
            name: "net".into(),
            ..NetworkCreate::default()
        })
        .unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "child_allocates",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, format!("{},box{i}", dir.path().display()))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips = HashSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let ip: Ipv4Addr = text
            .split("LEASE ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no lease in {text}"))
            .parse()
            .unwrap();
        assert!(ips.insert(ip), "{ip} given twice");
    }
    assert_eq!(ips.len(), 20);
    let leases = Ipam::new(&store, &net).unwrap().leases().unwrap();
    assert_eq!(leases.len(), 20);
    assert!(leases.iter().all(|l| ips.contains(&l.ipv4)));
    assert!(!ips.contains(&net.gateway));
}
