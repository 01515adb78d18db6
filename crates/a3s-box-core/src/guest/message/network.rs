//! The sandbox's network as the host configured it: the interfaces guest-init
//! sets up (found by MAC address), and what goes into each container's
//! `/etc/resolv.conf` and `/etc/hosts`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The network of the sandbox (every container shares it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Interfaces to configure, each found by its MAC address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<InterfaceConfig>,
    /// What `/etc/resolv.conf` says (`None`: the image's file is left as it is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsConfig>,
    /// Extra `/etc/hosts` entries (`--add-host`), in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostEntry>,
}

impl NetworkConfig {
    /// The sandbox's own address: the first interface's IPv4 address.
    pub fn own_address(&self) -> Option<Ipv4Addr> {
        self.interfaces
            .iter()
            .find_map(|i| i.ipv4.map(|a| a.address))
    }
}

/// One network interface of the VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceConfig {
    /// Its MAC address, as the host gave it to the NIC.
    pub mac: MacAddr,
    /// Its IPv4 address (`None`: the interface is only brought up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4: Option<Ipv4Cidr>,
    /// The default route goes through this gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Ipv4Addr>,
    /// Its MTU in bytes (`None`: the driver's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// An IPv4 address with its prefix length (`10.0.2.15/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// Bits of the network part, 0 to 32.
    pub prefix_len: u8,
}

impl Ipv4Cidr {
    /// The netmask of the prefix (`None` when the prefix is over 32).
    pub fn netmask(&self) -> Option<Ipv4Addr> {
        match self.prefix_len {
            0 => Some(Ipv4Addr::UNSPECIFIED),
            n @ 1..=32 => Some(Ipv4Addr::from(u32::MAX << (32 - u32::from(n)))),
            _ => None,
        }
    }

    /// Whether `other` is on this network.
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        self.netmask().is_some_and(|mask| {
            let mask = u32::from(mask);
            u32::from(self.address) & mask == u32::from(other) & mask
        })
    }
}

/// `/etc/resolv.conf`'s content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DnsConfig {
    /// `nameserver` lines, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<IpAddr>,
    /// The `search` domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// The `options` (`ndots:2`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// One `/etc/hosts` line (`--add-host NAME:ADDRESS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostEntry {
    /// The host name.
    pub name: String,
    /// Its address.
    pub address: IpAddr,
}

/// A MAC address; on the wire `"52:54:00:12:34:56"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("invalid MAC address {s:?}: expected six hex pairs like 52:54:00:12:34:56");
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            None => Ok(MacAddr(out)),
            Some(_) => Err(bad()),
        }
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl TryFrom<String> for MacAddr {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(mac: MacAddr) -> String {
        mac.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_print_in_lower_case() {
        let mac: MacAddr = "52:54:00:AB:cd:0f".parse().unwrap();
        assert_eq!(mac.0, [0x52, 0x54, 0, 0xab, 0xcd, 0x0f]);
        assert_eq!(mac.to_string(), "52:54:00:ab:cd:0f");
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54:00:ab:cd:0f:00",
            "5:54:00:ab:cd:0f",
            "zz:54:00:ab:cd:0f",
            "52-54-00-ab-cd-0f",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&mac).unwrap();
        assert_eq!(json, r#""52:54:00:ab:cd:0f""#);
        assert_eq!(serde_json::from_str::<MacAddr>(&json).unwrap(), mac);
        assert!(serde_json::from_str::<MacAddr>(r#""nope""#).is_err());
    }

    #[test]
    fn prefixes_give_netmasks_and_membership() {
        let net = |a: &str, p| Ipv4Cidr {
            address: a.parse().unwrap(),
            prefix_len: p,
        };
        assert_eq!(
            net("10.0.2.15", 24).netmask(),
            Some("255.255.255.0".parse().unwrap())
        );
        assert_eq!(net("10.0.2.15", 32).netmask(), Some(Ipv4Addr::BROADCAST));
        assert_eq!(net("10.0.2.15", 0).netmask(), Some(Ipv4Addr::UNSPECIFIED));
        assert_eq!(net("10.0.2.15", 33).netmask(), None);
        assert!(net("10.0.2.15", 24).contains("10.0.2.2".parse().unwrap()));
        assert!(!net("10.0.2.15", 24).contains("10.0.3.2".parse().unwrap()));
        assert!(!net("10.0.2.15", 40).contains("10.0.2.15".parse().unwrap()));
    }

    #[test]
    fn the_own_address_is_the_first_interfaces() {
        let iface = |ipv4: Option<&str>| InterfaceConfig {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            ipv4: ipv4.map(|a| Ipv4Cidr {
                address: a.parse().unwrap(),
                prefix_len: 24,
            }),
            gateway: None,
            mtu: None,
        };
        let config = NetworkConfig {
            interfaces: vec![
                iface(None),
                iface(Some("10.0.2.15")),
                iface(Some("10.1.0.2")),
            ],
            ..NetworkConfig::default()
        };
        assert_eq!(config.own_address(), Some("10.0.2.15".parse().unwrap()));
        assert_eq!(NetworkConfig::default().own_address(), None);
    }
}
