//! The host's name servers, from `resolv.conf`: where the DNS server
//! forwards names of boxes without `--dns`. A loopback name server (a
//! local stub such as systemd-resolved's 127.0.0.53) is only reachable
//! when the DNS server runs in the host's network namespace; the data
//! plane must make it reachable otherwise.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use a3s_box_core::{BoxError, Result};

/// The standard DNS port.
pub const DNS_PORT: u16 = 53;

/// The `nameserver` addresses of a `resolv.conf` text, in order (IPv6
/// zone suffixes are dropped).
pub fn parse_nameservers(text: &str) -> Vec<IpAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let addr = words.next()?;
            addr.split('%').next()?.parse().ok()
        })
        .collect()
}

/// The name servers of the `resolv.conf` at `path`, on port 53.
pub fn nameservers(path: &Path) -> Result<Vec<SocketAddr>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BoxError::io(format!("read {}", path.display()), e))?;
    Ok(parse_nameservers(&text)
        .into_iter()
        .map(|ip| SocketAddr::new(ip, DNS_PORT))
        .collect())
}

/// The host's name servers (`/etc/resolv.conf`).
pub fn host_nameservers() -> Result<Vec<SocketAddr>> {
    nameservers(Path::new("/etc/resolv.conf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nameservers_are_read_in_order() {
        let text = "# comment\nsearch example.com\nnameserver 192.0.2.53\n  nameserver\tfe80::1%eth0\nnameserver bogus\noptions ndots:2\nnameserver 2001:db8::53\n";
        let got: Vec<String> = parse_nameservers(text)
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(got, ["192.0.2.53", "fe80::1", "2001:db8::53"]);
    }
}
