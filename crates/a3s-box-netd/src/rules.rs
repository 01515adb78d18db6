//! The helper's own nftables rules (pure text for `nft -f`), beside the
//! per-box egress tables of `network::egress`:
//!
//! - `bridge a3s_guard`: anti-spoofing. A frame from a box's TAP must carry
//!   the box's MAC and, for IPv4 and ARP, its address (sets keyed on the
//!   TAP's name); IPv6 from a TAP is dropped (no IPv6 yet). The egress
//!   tables then match a box by its source address, which it cannot forge.
//! - `ip a3s_nat`: masquerade out of the uplink (`up0`).
//! - `inet a3s_base`: boxes reach only DNS, ICMP echo and the
//!   host-gateway relay's redirected connections (`crate::gateway`) on
//!   the namespace itself (recipe 6 of `docs/networking.md`); box-to-box
//!   traffic on the bridge is never routed (and so never meets an egress
//!   table); an `--internal` network routes nothing off the bridge.

use std::fmt::Write;
use std::net::Ipv4Addr;

use a3s_box_core::spec::MacAddr;

/// The bridge in every network's namespace.
pub const BRIDGE: &str = "br0";
/// The uplink pasta makes.
pub const UPLINK: &str = "up0";
pub use a3s_box_runtime::network::dataplane::wire::{tap_name, TAP_PREFIX};

/// The rules made when the namespace is: `internal` networks get no NAT
/// and route nothing.
pub fn base(internal: bool) -> String {
    let mut out = format!(
        "table bridge a3s_guard {{}}\ndelete table bridge a3s_guard\n\
         table bridge a3s_guard {{\n\
         \tset boxes4 {{ type ifname . ether_addr . ipv4_addr; }}\n\
         \tset macs {{ type ifname . ether_addr; }}\n\
         \tchain pre {{\n\
         \t\ttype filter hook prerouting priority -200; policy accept;\n\
         \t\tiifname != \"{TAP_PREFIX}*\" accept\n\
         \t\tiifname . ether saddr != @macs counter drop\n\
         \t\tether type ip iifname . ether saddr . ip saddr != @boxes4 counter drop\n\
         \t\tether type arp iifname . ether saddr . arp saddr ip != @boxes4 counter drop\n\
         \t\tether type ip6 drop\n\
         \t}}\n\
         }}\n\
         table inet a3s_base {{}}\ndelete table inet a3s_base\n\
         table inet a3s_base {{\n\
         \tset others4 {{ type ipv4_addr; flags interval; }}\n\
         \tchain input {{\n\
         \t\ttype filter hook input priority filter; policy accept;\n\
         \t\tiifname != \"{BRIDGE}\" accept\n\
         \t\tct state established,related accept\n\
         \t\tct status dnat meta l4proto tcp accept\n\
         \t\tmeta l4proto {{ udp, tcp }} th dport 53 accept\n\
         \t\ticmp type echo-request accept\n\
         \t\tmeta l4proto tcp reject with tcp reset\n\
         \t\treject\n\
         \t}}\n\
         \tchain forward {{\n\
         \t\ttype filter hook forward priority filter - 10; policy accept;\n\
         \t\tiifname \"{BRIDGE}\" oifname \"{BRIDGE}\" accept\n\
         \t\tiifname \"{BRIDGE}\" ip daddr @others4 reject with icmpx type admin-prohibited\n"
    );
    if internal {
        let _ = writeln!(out, "\t\tiifname \"{BRIDGE}\" drop");
    }
    out.push_str("\t}\n}\n");
    if !internal {
        let _ = write!(
            out,
            "table ip a3s_nat {{}}\ndelete table ip a3s_nat\n\
             table ip a3s_nat {{\n\
             \tchain post {{\n\
             \t\ttype nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"{UPLINK}\" masquerade\n\
             \t}}\n\
             }}\n"
        );
    }
    out
}

/// The other networks' subnets are out of reach (as Docker isolates its
/// networks): the script that sets them.
pub fn others(subnets: &[String]) -> String {
    let mut out = String::from("flush set inet a3s_base others4\n");
    if !subnets.is_empty() {
        let _ = writeln!(
            out,
            "add element inet a3s_base others4 {{ {} }}",
            subnets.join(", ")
        );
    }
    out
}

fn guard_elements(tap: &str, mac: MacAddr, ip: Ipv4Addr) -> (String, String) {
    (
        format!("{{ \"{tap}\" . {mac} . {ip} }}"),
        format!("{{ \"{tap}\" . {mac} }}"),
    )
}

/// Let `tap` carry only `mac` and `ip`.
pub fn guard_add(tap: &str, mac: MacAddr, ip: Ipv4Addr) -> String {
    let (four, macs) = guard_elements(tap, mac, ip);
    format!(
        "add element bridge a3s_guard boxes4 {four}\nadd element bridge a3s_guard macs {macs}\n"
    )
}

/// Forget `tap` (missing elements are fine: they are added first).
pub fn guard_remove(tap: &str, mac: MacAddr, ip: Ipv4Addr) -> String {
    let (four, macs) = guard_elements(tap, mac, ip);
    format!(
        "add element bridge a3s_guard boxes4 {four}\nadd element bridge a3s_guard macs {macs}\n\
         delete element bridge a3s_guard boxes4 {four}\ndelete element bridge a3s_guard macs {macs}\n"
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn tap_names_fit_ifnamsiz() {
        let name = tap_name(&"0123456789abcdef".repeat(4));
        assert_eq!(name, "a3s0123456789ab");
        assert!(name.len() < 16);
    }

    #[test]
    fn internal_networks_route_nothing_and_have_no_nat() {
        let open = base(false);
        let closed = base(true);
        assert!(open.contains("masquerade"));
        assert!(!closed.contains("masquerade"));
        assert!(closed.contains("iifname \"br0\" drop"));
        assert!(!open.contains("iifname \"br0\" drop"));
        assert!(open.contains("ct status dnat meta l4proto tcp accept"));
        let mac: MacAddr = "02:42:0a:58:00:02".parse().unwrap();
        let add = guard_add("a3s0123", mac, Ipv4Addr::new(10, 88, 0, 2));
        assert!(add.contains("\"a3s0123\" . 02:42:0a:58:00:02 . 10.88.0.2"));
    }

    /// The scripts load in a fresh namespace (`nft` present, namespaces
    /// allowed), repeated loads included.
    #[test]
    fn the_rules_load() {
        if !std::path::Path::new("/usr/sbin/nft").exists() {
            eprintln!("skipped: no nft");
            return;
        }
        let mac: MacAddr = "02:42:0a:58:00:02".parse().unwrap();
        let script = format!(
            "{}{}{}{}{}",
            base(false),
            base(true),
            others(&["10.89.1.0/24".into(), "10.88.0.0/16".into()]),
            guard_add("a3s0123", mac, Ipv4Addr::new(10, 88, 0, 2)),
            guard_remove("a3s0123", mac, Ipv4Addr::new(10, 88, 0, 2)),
        );
        assert_loads(&script);
    }

    /// `script` loads with `nft -f` in a fresh network namespace (skipped
    /// where namespaces are not allowed).
    pub(crate) fn assert_loads(script: &str) {
        let out = std::process::Command::new("unshare")
            .args(["--net", "nft", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write;
                child.stdin.take().unwrap().write_all(script.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("Operation not permitted") {
            eprintln!("skipped: {err}");
            return;
        }
        assert!(out.status.success(), "{err}\n{script}");
    }
}
