//! The contents of the network files each container gets in its /etc, as
//! Docker writes them: `hostname`, `hosts` (the localhost lines, the
//! `--add-host` entries, then the container's own name and address) and
//! `resolv.conf`. Pure functions; values that would break a line are refused.

use std::fmt::Write;

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
/// container's own line: its hostname at the sandbox's address, or at
/// 127.0.0.1 when the sandbox has none (`--network none`).
pub fn hosts_file(hostname: &str, network: Option<&NetworkConfig>) -> Result<String, String> {
    let mut out = String::from(LOCALHOST_LINES);
    let extra: &[HostEntry] = network.map_or(&[], |n| &n.extra_hosts);
    for entry in extra {
        check_word("host name", &entry.name)?;
        let _ = writeln!(out, "{}\t{}", entry.address, entry.name);
    }
    match network.and_then(NetworkConfig::own_address) {
        Some(address) => {
            let _ = writeln!(out, "{address}\t{hostname}");
        }
        None => {
            let _ = writeln!(out, "127.0.0.1\t{hostname}");
        }
    }
    Ok(out)
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
