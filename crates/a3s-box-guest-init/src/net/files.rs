//! The contents of the network files each container gets in its /etc, as
//! Docker writes them: `hostname`, `hosts` (the localhost lines, the
//! `--add-host` entries, then the container's own name at each of its
//! addresses) and `resolv.conf`; and the edits `network connect` and
//! `disconnect` of a running sandbox make to `hosts`. Pure functions;
//! values that would break a line are refused.

use std::fmt::Write;
use std::net::{IpAddr, Ipv4Addr};

use a3s_box_core::guest::message::{DnsConfig, HostEntry, NetworkConfig};

/// Longest hostname Linux accepts (`HOST_NAME_MAX`).
pub const MAX_HOSTNAME_BYTES: usize = 64;

/// The localhost lines every `/etc/hosts` starts with (Docker's).
const LOCALHOST_LINES: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff02::1\tip6-allnodes\n\
ff02::2\tip6-allrouters\n";

/// Whether `word` can stand in a hosts or resolv.conf line as one word.
fn is_word(word: &str) -> bool {
    !word.is_empty() && !word.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#')
}

fn check_word(what: &str, word: &str) -> Result<(), String> {
    if is_word(word) {
        Ok(())
    } else {
        Err(format!(
            "invalid {what} {word:?}: one word without spaces or '#'"
        ))
    }
}

/// Whether `name` can be a container's hostname.
pub fn check_hostname(name: &str) -> Result<(), String> {
    check_word("hostname", name)?;
    if name.len() > MAX_HOSTNAME_BYTES {
        return Err(format!(
            "hostname {name:?} is longer than {MAX_HOSTNAME_BYTES} bytes"
        ));
    }
    Ok(())
}

/// `/etc/hostname`.
pub fn hostname_file(hostname: &str) -> String {
    format!("{hostname}\n")
}

/// `/etc/hosts`: the localhost lines, the extra hosts in order, then the
/// container's own lines: its hostname at each address of the sandbox's
/// interfaces, in their order (one per network, as Docker's), or at
/// 127.0.0.1 when the sandbox has none (`--network none`).
pub fn hosts_file(hostname: &str, network: Option<&NetworkConfig>) -> Result<String, String> {
    let mut out = String::from(LOCALHOST_LINES);
    let extra: &[HostEntry] = network.map_or(&[], |n| &n.extra_hosts);
    for entry in extra {
        check_word("host name", &entry.name)?;
        let _ = writeln!(out, "{}\t{}", entry.address, entry.name);
    }
    let mut own = network
        .into_iter()
        .flat_map(|n| &n.interfaces)
        .filter_map(|i| i.ipv4.map(|a| a.address))
        .peekable();
    if own.peek().is_none() {
        let _ = writeln!(out, "127.0.0.1\t{hostname}");
    }
    for address in own {
        let _ = writeln!(out, "{address}\t{hostname}");
    }
    Ok(out)
}

/// The address and names of a hosts line (`None`: a blank or comment line,
/// or one that does not start with an address).
fn hosts_line(line: &str) -> Option<(IpAddr, Vec<&str>)> {
    let line = line.split('#').next().unwrap_or_default();
    let mut words = line.split_whitespace();
    let address = words.next()?.parse().ok()?;
    Some((address, words.collect()))
}

/// `hosts` with the container's own line for `address` added at the end
/// (`network connect`: Docker's `IP<TAB>hostname`); unchanged when that
/// line is there already.
pub fn hosts_with_address(hosts: &str, address: Ipv4Addr, hostname: &str) -> String {
    let address = IpAddr::V4(address);
    let present = hosts
        .lines()
        .filter_map(hosts_line)
        .any(|(a, names)| a == address && names == [hostname]);
    let mut out = hosts.to_string();
    if present {
        return out;
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(out, "{address}\t{hostname}");
    out
}

/// `hosts` without the lines of `address` (`network disconnect`, as
/// Docker's). Every other line stays as it is, and so do the lines of
/// `keep` (the `--add-host` entries), even at that address.
pub fn hosts_without_address(hosts: &str, address: Ipv4Addr, keep: &[HostEntry]) -> String {
    let address = IpAddr::V4(address);
    let goes = |line: &str| {
        hosts_line(line).is_some_and(|(a, names)| {
            a == address
                && !keep
                    .iter()
                    .any(|e| e.address == address && names == [e.name.as_str()])
        })
    };
    hosts.split_inclusive('\n').filter(|l| !goes(l)).collect()
}

/// `/etc/resolv.conf`.
pub fn resolv_conf(dns: &DnsConfig) -> Result<String, String> {
    let mut out = String::new();
    for server in &dns.nameservers {
        let _ = writeln!(out, "nameserver {server}");
    }
    if !dns.search.is_empty() {
        for domain in &dns.search {
            check_word("search domain", domain)?;
        }
        let _ = writeln!(out, "search {}", dns.search.join(" "));
    }
    if !dns.options.is_empty() {
        for option in &dns.options {
            check_word("resolver option", option)?;
        }
        let _ = writeln!(out, "options {}", dns.options.join(" "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use a3s_box_core::guest::message::{InterfaceConfig, Ipv4Cidr, MacAddr};

    use super::*;

    fn network(own: Option<&str>, extra: &[(&str, &str)]) -> NetworkConfig {
        NetworkConfig {
            interfaces: own
                .map(|a| InterfaceConfig {
                    mac: MacAddr([0x52, 0x54, 0, 0, 0, 1]),
                    ipv4: Some(Ipv4Cidr {
                        address: a.parse().unwrap(),
                        prefix_len: 24,
                    }),
                    gateway: None,
                    mtu: None,
                })
                .into_iter()
                .collect(),
            dns: None,
            extra_hosts: extra
                .iter()
                .map(|(name, address)| HostEntry {
                    name: name.to_string(),
                    address: address.parse().unwrap(),
                })
                .collect(),
        }
    }

    #[test]
    fn hosts_has_localhost_extra_hosts_then_the_container() {
        let net = network(Some("10.0.2.15"), &[("db", "10.0.2.20"), ("v6", "fd00::1")]);
        let hosts = hosts_file("web", Some(&net)).unwrap();
        assert_eq!(
            hosts,
            "127.0.0.1\tlocalhost\n\
             ::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\n\
             ff00::0\tip6-mcastprefix\n\
             ff02::1\tip6-allnodes\n\
             ff02::2\tip6-allrouters\n\
             10.0.2.20\tdb\n\
             fd00::1\tv6\n\
             10.0.2.15\tweb\n"
        );
    }

    #[test]
    fn without_a_network_the_hostname_is_on_loopback() {
        let hosts = hosts_file("box1", None).unwrap();
        assert!(hosts.starts_with(LOCALHOST_LINES));
        assert!(
            hosts.ends_with("ff02::2\tip6-allrouters\n127.0.0.1\tbox1\n"),
            "{hosts}"
        );
        let no_address = network(None, &[("db", "10.0.0.9")]);
        let hosts = hosts_file("box1", Some(&no_address)).unwrap();
        assert!(
            hosts.ends_with("10.0.0.9\tdb\n127.0.0.1\tbox1\n"),
            "{hosts}"
        );
    }

    #[test]
    fn names_that_break_a_line_are_refused() {
        for bad in ["", "a b", "a\nb", "a#b"] {
            let net = network(None, &[(bad, "10.0.0.1")]);
            assert!(hosts_file("h", Some(&net)).is_err(), "{bad:?}");
            assert!(check_hostname(bad).is_err(), "{bad:?}");
        }
        assert!(check_hostname(&"h".repeat(64)).is_ok());
        assert!(check_hostname(&"h".repeat(65)).is_err());
        assert_eq!(hostname_file("web"), "web\n");
    }

    #[test]
    fn every_interface_address_has_a_line() {
        let mut net = network(Some("10.0.2.15"), &[]);
        let mut second = net.interfaces[0].clone();
        second.ipv4 = Some(Ipv4Cidr {
            address: "10.0.3.7".parse().unwrap(),
            prefix_len: 24,
        });
        let mut spare = second.clone();
        spare.ipv4 = None;
        net.interfaces.extend([spare, second]);
        let hosts = hosts_file("web", Some(&net)).unwrap();
        assert!(
            hosts.ends_with("ff02::2\tip6-allrouters\n10.0.2.15\tweb\n10.0.3.7\tweb\n"),
            "{hosts}"
        );
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn connect_adds_the_own_line_once() {
        let before = "127.0.0.1\tlocalhost\n10.0.2.15\tweb\n";
        let after = hosts_with_address(before, ip("10.0.3.7"), "web");
        assert_eq!(after, format!("{before}10.0.3.7\tweb\n"));
        assert_eq!(hosts_with_address(&after, ip("10.0.3.7"), "web"), after);
        // A file the workload left without a final newline, or emptied.
        assert_eq!(
            hosts_with_address("1.2.3.4 x", ip("10.0.3.7"), "web"),
            "1.2.3.4 x\n10.0.3.7\tweb\n"
        );
        assert_eq!(
            hosts_with_address("", ip("10.0.3.7"), "web"),
            "10.0.3.7\tweb\n"
        );
        // The same address under another name is not the own line.
        assert_eq!(
            hosts_with_address("10.0.3.7 other\n", ip("10.0.3.7"), "web"),
            "10.0.3.7 other\n10.0.3.7\tweb\n"
        );
    }

    #[test]
    fn disconnect_removes_only_the_lines_of_the_address() {
        let net = network(
            Some("10.0.2.15"),
            &[("db", "10.0.2.20"), ("pinned", "10.0.3.7")],
        );
        let base = hosts_file("web", Some(&net)).unwrap();
        let workload = "# mine\n10.0.3.70\tnear\n10.0.3.7   alias web\n\n::1 me # 10.0.3.7\n";
        let connected = hosts_with_address(&format!("{base}{workload}"), ip("10.0.3.7"), "web");
        let left = hosts_without_address(&connected, ip("10.0.3.7"), &net.extra_hosts);
        assert_eq!(
            left,
            format!("{base}# mine\n10.0.3.70\tnear\n\n::1 me # 10.0.3.7\n"),
            "the own line and the workload's line at the address go; the --add-host one stays"
        );
        assert!(left.contains("10.0.3.7\tpinned\n"), "{left}");
        assert!(left.contains("10.0.2.15\tweb\n"), "{left}");
        // Nothing at the address: nothing changes, a last line without a
        // newline included.
        assert_eq!(
            hosts_without_address("a\n1.2.3.4 x", ip("10.9.9.9"), &[]),
            "a\n1.2.3.4 x"
        );
    }

    #[test]
    fn resolv_conf_lists_servers_search_and_options() {
        let dns = DnsConfig {
            nameservers: vec!["10.0.2.3".parse().unwrap(), "fd00::3".parse().unwrap()],
            search: vec!["corp.example".into(), "example".into()],
            options: vec!["ndots:2".into(), "edns0".into()],
        };
        assert_eq!(
            resolv_conf(&dns).unwrap(),
            "nameserver 10.0.2.3\nnameserver fd00::3\nsearch corp.example example\noptions ndots:2 edns0\n"
        );
        assert_eq!(resolv_conf(&DnsConfig::default()).unwrap(), "");
        let bad = DnsConfig {
            search: vec!["a b".into()],
            ..DnsConfig::default()
        };
        assert!(resolv_conf(&bad).is_err());
    }
}
