//! IPv4 address blocks ([`Ipv4Block`]) for networks and their leases, and
//! the blocks the host already routes (`/proc/net/route`), which a network
//! whose subnet is picked automatically must avoid: an address a box's
//! subnet covers is on its own link, so the box could not reach that
//! address on the host's side.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use a3s_box_core::spec::Cidr;
use a3s_box_core::{BoxError, Result};

/// An IPv4 block: a network address and a prefix length, no host bits set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Block {
    base: u32,
    prefix_len: u8,
}

fn mask(prefix_len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0)
}

impl Ipv4Block {
    /// The block `octets/prefix_len`; `None` if `prefix_len` is over 32
    /// or host bits are set.
    pub const fn from_octets(octets: [u8; 4], prefix_len: u8) -> Option<Self> {
        if prefix_len > 32 {
            return None;
        }
        let base = u32::from_be_bytes(octets);
        let mask = if prefix_len == 0 {
            0
        } else {
            u32::MAX << (32 - prefix_len as u32)
        };
        if base & !mask != 0 {
            return None;
        }
        Some(Ipv4Block { base, prefix_len })
    }

    /// The block of `prefix_len` bits holding `addr` (host bits cleared);
    /// `None` if `prefix_len` is over 32.
    pub fn containing(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        (prefix_len <= 32).then(|| Ipv4Block {
            base: u32::from(addr) & mask(prefix_len),
            prefix_len,
        })
    }

    /// The block `cidr` names; `None` for IPv6.
    pub fn from_cidr(cidr: &Cidr) -> Option<Self> {
        match cidr.addr {
            IpAddr::V4(a) => Self::containing(a, cidr.prefix_len),
            IpAddr::V6(_) => None,
        }
    }

    /// The same block as a spec [`Cidr`].
    pub fn to_cidr(self) -> Cidr {
        Cidr {
            addr: IpAddr::V4(self.network()),
            prefix_len: self.prefix_len,
        }
    }

    /// The first address (the network address).
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base)
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        self.prefix_len
    }

    /// The last address (the broadcast address of a subnet).
    pub fn broadcast(self) -> Ipv4Addr {
        Ipv4Addr::from(self.base | !mask(self.prefix_len))
    }

    /// How many addresses the block has.
    pub fn size(self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    /// Whether `addr` is in the block.
    pub fn contains(self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & mask(self.prefix_len) == self.base
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(self, other: Ipv4Block) -> bool {
        let shorter = self.prefix_len.min(other.prefix_len);
        self.base & mask(shorter) == other.base & mask(shorter)
    }

    /// Whether `addr` can be given to a host: in the block and, for
    /// subnets of /30 and larger, neither the network nor the broadcast
    /// address.
    pub fn is_host(self, addr: Ipv4Addr) -> bool {
        self.contains(addr)
            && (self.prefix_len >= 31 || (addr != self.network() && addr != self.broadcast()))
    }

    /// The first address a host can have (`.1` of a /24).
    pub fn first_host(self) -> Ipv4Addr {
        if self.prefix_len >= 31 {
            self.network()
        } else {
            Ipv4Addr::from(self.base + 1)
        }
    }

    /// The blocks of length `prefix_len` this block divides into, in order
    /// (none if `prefix_len` is shorter than the block's).
    pub fn subnets(self, prefix_len: u8) -> impl Iterator<Item = Ipv4Block> {
        let valid = prefix_len >= self.prefix_len && prefix_len <= 32;
        let count = if valid {
            1u64 << (prefix_len - self.prefix_len)
        } else {
            0
        };
        let step = if valid {
            1u64 << (32 - u32::from(prefix_len))
        } else {
            0
        };
        let base = u64::from(self.base);
        (0..count).filter_map(move |i| {
            let addr = u32::try_from(base + i * step).ok()?;
            Some(Ipv4Block {
                base: addr,
                prefix_len,
            })
        })
    }
}

impl fmt::Display for Ipv4Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

impl FromStr for Ipv4Block {
    type Err = BoxError;

    /// `A.B.C.D/N` with no host bits set.
    fn from_str(text: &str) -> Result<Self> {
        let cidr: Cidr = text.parse()?;
        Self::from_cidr(&cidr)
            .ok_or_else(|| BoxError::Invalid(format!("{text} is not an IPv4 block")))
    }
}

/// The IPv4 blocks the host routes to (every route of `/proc/net/route`
/// but default routes), in the calling thread's network namespace.
pub fn host_routes() -> Result<Vec<Ipv4Block>> {
    let path = "/proc/net/route";
    let text =
        std::fs::read_to_string(path).map_err(|e| BoxError::io(format!("read {path}"), e))?;
    Ok(parse_proc_net_route(&text))
}

/// The routes of a `/proc/net/route` text, default routes left out. The
/// kernel prints each address as the hexadecimal of its bytes read in the
/// host's byte order.
pub fn parse_proc_net_route(text: &str) -> Vec<Ipv4Block> {
    let addr = |hex: &str| {
        u32::from_str_radix(hex, 16)
            .ok()
            .map(|v| Ipv4Addr::from(v.to_ne_bytes()))
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let dest = addr(fields.get(1)?)?;
            let mask = addr(fields.get(7)?)?;
            let prefix_len = u8::try_from(u32::from(mask).count_ones()).ok()?;
            (prefix_len > 0).then(|| Ipv4Block::containing(dest, prefix_len))?
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(text: &str) -> Ipv4Block {
        text.parse().unwrap()
    }

    #[test]
    fn blocks_know_their_bounds() {
        let b = block("10.89.3.0/24");
        assert_eq!(b.network(), Ipv4Addr::new(10, 89, 3, 0));
        assert_eq!(b.broadcast(), Ipv4Addr::new(10, 89, 3, 255));
        assert_eq!(b.first_host(), Ipv4Addr::new(10, 89, 3, 1));
        assert_eq!(b.size(), 256);
        assert!(b.contains(Ipv4Addr::new(10, 89, 3, 77)));
        assert!(!b.contains(Ipv4Addr::new(10, 89, 4, 0)));
        assert!(!b.is_host(b.network()) && !b.is_host(b.broadcast()));
        assert!(b.is_host(Ipv4Addr::new(10, 89, 3, 254)));
        assert_eq!(b.to_string(), "10.89.3.0/24");
        assert_eq!(b.to_cidr().to_string(), "10.89.3.0/24");
        assert!(Ipv4Block::from_str("10.89.3.1/24").is_err());
        assert!(Ipv4Block::from_str("fd00::/64").is_err());
    }

    #[test]
    fn overlap_is_symmetric_and_exact() {
        let wide = block("10.0.0.0/8");
        let inner = block("10.89.0.0/24");
        let other = block("192.168.0.0/16");
        assert!(wide.overlaps(inner) && inner.overlaps(wide));
        assert!(!wide.overlaps(other) && !other.overlaps(wide));
        assert!(!block("10.89.0.0/24").overlaps(block("10.89.1.0/24")));
        assert!(block("0.0.0.0/0").overlaps(other));
    }

    #[test]
    fn subnets_walk_the_block_in_order() {
        let all: Vec<String> = block("10.89.0.0/22")
            .subnets(24)
            .map(|b| b.to_string())
            .collect();
        assert_eq!(
            all,
            [
                "10.89.0.0/24",
                "10.89.1.0/24",
                "10.89.2.0/24",
                "10.89.3.0/24"
            ]
        );
        assert_eq!(block("10.89.0.0/16").subnets(24).count(), 256);
        assert_eq!(block("10.89.0.0/24").subnets(16).count(), 0);
        assert_eq!(block("255.255.255.0/24").subnets(25).count(), 2);
    }

    #[test]
    fn proc_net_route_is_read_in_host_byte_order() {
        // Two routes from a little-endian host: default via 192.0.2.1 and
        // 192.0.2.0/24 on eth0, plus 10.89.0.0/16 on a bridge.
        let text =
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
            eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
            br0\t0000590A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        if cfg!(target_endian = "little") {
            assert_eq!(
                parse_proc_net_route(text),
                vec![block("192.0.2.0/24"), block("10.89.0.0/16")]
            );
        }
        assert!(host_routes().is_ok());
    }
}
