//! The sandbox's network, which every container shares (no container gets a
//! network namespace of its own, so a pod's containers reach each other on
//! 127.0.0.1): loopback up at boot, the interfaces `Boot.network` asks for
//! ([`link`]), and the contents of each container's network files in /etc
//! ([`files`]).

pub mod arp;
pub mod files;
pub mod link;

use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{InterfaceConfig, MacAddr, NetworkConfig};
use nix::errno::Errno;

use self::link::Link;
use crate::error::{Context, InitError};

const SYS_CLASS_NET: &str = "/sys/class/net";
/// How long to wait for an interface to appear.
const LINK_WAIT: Duration = Duration::from_secs(2);
const LINK_POLL: Duration = Duration::from_millis(10);

/// Bring `lo` up: the kernel gives it 127.0.0.1/8 and ::1.
pub fn loopback_up() -> Result<(), InitError> {
    Link::new("lo")
        .and_then(|lo| lo.up())
        .context(|| "bring up lo".into())
}

/// Configure every interface of `config`.
pub fn configure(config: &NetworkConfig) -> Result<(), InitError> {
    for iface in &config.interfaces {
        configure_one(iface)?;
    }
    Ok(())
}

/// Configure one interface (at boot, or `network connect` of a running
/// box), found by its MAC.
pub fn configure_one(iface: &InterfaceConfig) -> Result<(), InitError> {
    let name = wait_for_link(iface.mac)?;
    configure_link(&name, iface)?;
    if let Some(cidr) = iface.ipv4 {
        let target = iface
            .gateway
            .filter(|gw| cidr.contains(*gw))
            .unwrap_or(cidr.address);
        // Only a warm-up: a box whose frame is lost still resolves later.
        if let Err(e) = arp::send(&name, iface.mac, cidr.address, target) {
            crate::pid1::log::debug!("ARP on {name}: {e}");
        }
    }
    Ok(())
}

/// Take the interface with `mac` down and drop its address (`network
/// disconnect`): its routes go with it.
pub fn deconfigure(mac: MacAddr) -> Result<(), InitError> {
    let name = link_by_mac(Path::new(SYS_CLASS_NET), mac).ok_or(InitError::Sys {
        what: format!("no network interface with MAC address {mac}"),
        errno: Errno::ENODEV,
    })?;
    let link = Link::new(&name).context(|| format!("open interface {name}"))?;
    link.down().context(|| format!("take down {name}"))?;
    link.clear_ipv4()
        .context(|| format!("drop the address of {name}"))
}

/// Give interface `name` the MTU, address and routes of `iface`.
fn configure_link(name: &str, iface: &InterfaceConfig) -> Result<(), InitError> {
    let link = Link::new(name).context(|| format!("open interface {name}"))?;
    if let Some(mtu) = iface.mtu {
        link.set_mtu(mtu)
            .context(|| format!("set the MTU of {name} to {mtu}"))?;
    }
    if let Some(cidr) = iface.ipv4 {
        let netmask = cidr
            .netmask()
            .ok_or(Errno::EINVAL)
            .context(|| format!("prefix /{} of {name}'s address", cidr.prefix_len))?;
        link.set_ipv4(cidr.address, netmask)
            .context(|| format!("set {}/{} on {name}", cidr.address, cidr.prefix_len))?;
    }
    link.up().context(|| format!("bring up {name}"))?;
    if let Some(gateway) = iface.gateway {
        // A gateway off the interface's network needs a route to it first.
        if !iface.ipv4.is_some_and(|c| c.contains(gateway)) {
            link.add_route(gateway, std::net::Ipv4Addr::BROADCAST, None)
                .context(|| format!("route to the gateway {gateway} on {name}"))?;
        }
        let any = std::net::Ipv4Addr::UNSPECIFIED;
        link.add_route(any, any, Some(gateway))
            .context(|| format!("default route via {gateway} on {name}"))?;
    }
    Ok(())
}

/// The name of the interface whose MAC address is `mac`, waiting up to
/// [`LINK_WAIT`] for it.
fn wait_for_link(mac: MacAddr) -> Result<String, InitError> {
    let deadline = Instant::now() + LINK_WAIT;
    loop {
        if let Some(name) = link_by_mac(Path::new(SYS_CLASS_NET), mac) {
            return Ok(name);
        }
        if Instant::now() >= deadline {
            return Err(InitError::Sys {
                what: format!("no network interface with MAC address {mac}"),
                errno: Errno::ENODEV,
            });
        }
        thread::sleep(LINK_POLL);
    }
}

/// The entry of `sys_class_net` whose `address` is `mac`.
fn link_by_mac(sys_class_net: &Path, mac: MacAddr) -> Option<String> {
    fs::read_dir(sys_class_net)
        .ok()?
        .flatten()
        .find_map(|entry| {
            let found = fs::read_to_string(entry.path().join("address")).ok()?;
            (found.trim().parse::<MacAddr>().ok()? == mac)
                .then(|| entry.file_name().to_string_lossy().into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_found_by_mac_in_any_case() {
        let dir = tempfile::tempdir().unwrap();
        for (name, address) in [
            ("lo", "00:00:00:00:00:00\n"),
            ("eth0", "52:54:00:AB:CD:01\n"),
            ("eth1", "52:54:00:ab:cd:02\n"),
        ] {
            fs::create_dir(dir.path().join(name)).unwrap();
            fs::write(dir.path().join(name).join("address"), address).unwrap();
        }
        fs::create_dir(dir.path().join("bonding_masters")).unwrap();
        let mac = |s: &str| s.parse::<MacAddr>().unwrap();
        assert_eq!(
            link_by_mac(dir.path(), mac("52:54:00:ab:cd:01")).as_deref(),
            Some("eth0")
        );
        assert_eq!(
            link_by_mac(dir.path(), mac("52:54:00:ab:cd:02")).as_deref(),
            Some("eth1")
        );
        assert_eq!(link_by_mac(dir.path(), mac("52:54:00:ab:cd:03")), None);
    }

    /// Run `f` on a thread of its own in a new network namespace (which
    /// holds only a down `lo`); `None` where namespaces cannot be made.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        std::thread::spawn(move || {
            // SAFETY: unshare only changes this thread's network namespace;
            // the thread ends with the test.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                eprintln!("skipped: unshare(CLONE_NEWNET): {}", Errno::last());
                return None;
            }
            Some(f())
        })
        .join()
        .unwrap()
    }

    /// Whether a TCP connection over 127.0.0.1 works.
    fn loopback_connects() -> bool {
        let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
            return false;
        };
        let at = listener.local_addr().unwrap();
        std::net::TcpStream::connect(at).is_ok()
    }

    #[test]
    fn loopback_comes_up_and_takes_127_0_0_1() {
        let works = in_new_netns(|| {
            let before = loopback_connects();
            loopback_up().unwrap();
            (before, loopback_connects())
        });
        if let Some((before, after)) = works {
            assert!(!before, "a new namespace starts with lo down");
            assert!(after, "lo is up with 127.0.0.1");
        }
    }

    #[test]
    fn an_interface_gets_its_mtu_address_and_default_route() {
        // Inside the namespace `lo` stands in for a NIC.
        let routes = in_new_netns(|| {
            let iface = InterfaceConfig {
                mac: MacAddr([0; 6]),
                ipv4: Some(a3s_box_core::guest::message::Ipv4Cidr {
                    address: "10.1.2.3".parse().unwrap(),
                    prefix_len: 24,
                }),
                gateway: Some("10.1.9.1".parse().unwrap()),
                mtu: Some(1400),
            };
            configure_link("lo", &iface).unwrap();
            let mtu = Link::new("lo").unwrap().mtu().unwrap();
            let addr_ok = std::net::UdpSocket::bind("10.1.2.3:0").is_ok();
            let routes = fs::read_to_string("/proc/thread-self/net/route").unwrap();
            (mtu, addr_ok, routes)
        });
        let Some((mtu, addr_ok, routes)) = routes else {
            return;
        };
        assert_eq!(mtu, 1400);
        assert!(addr_ok, "10.1.2.3 is an address of the namespace");
        // Little-endian hex: 0.0.0.0 via 10.1.9.1 (0109010A), and the host
        // route to that off-network gateway. (The /24 of the address goes to
        // the local table on a loopback device, not this one.)
        let lines: Vec<Vec<&str>> = routes
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        let has = |dst: &str, gw: &str, mask: &str| {
            lines
                .iter()
                .any(|l| l[1] == dst && l[2] == gw && l[7] == mask)
        };
        assert!(has("00000000", "0109010A", "00000000"), "{routes}");
        assert!(has("0109010A", "00000000", "FFFFFFFF"), "{routes}");
    }
}
