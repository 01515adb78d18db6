//! Links and addresses by rtnetlink, in the helper's own namespace: the
//! bridge (`RTM_NEWLINK` of kind `bridge`), its address (`RTM_NEWADDR`),
//! a TAP's MTU, master and state (`RTM_NEWLINK` on an index), and a
//! spare TAP's parking and move to another namespace (`IFLA_NET_NS_FD`). Raw
//! messages on a `NETLINK_ROUTE` socket, each acknowledged: no `ip` is
//! forked, and errors come back as the kernel's errno.

use std::ffi::CString;
use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_NEWADDR: u16 = 20;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_INFO_KIND: u16 = 1;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const IFA_BROADCAST: u16 = 4;
const NLMSG_HDRLEN: usize = 16;

/// What to change on a link.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkChange {
    /// New MTU.
    pub mtu: Option<u32>,
    /// Enslave to this bridge (by index).
    pub master: Option<u32>,
    /// Bring it up.
    pub up: bool,
}

/// A `NETLINK_ROUTE` socket of the namespace it was opened in.
#[derive(Debug)]
pub struct Rtnl {
    fd: OwnedFd,
    seq: u32,
}

/// A message being built: header, fixed part, attributes.
struct Msg {
    buf: Vec<u8>,
}

impl Msg {
    fn new(kind: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut buf = vec![0u8; NLMSG_HDRLEN];
        buf[4..6].copy_from_slice(&kind.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        buf.extend_from_slice(fixed);
        Msg { buf }
    }

    fn align(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        self.align();
        let len = (4 + data.len()) as u16;
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    /// A nested attribute holding `inner`'s attributes.
    fn nested(&mut self, kind: u16, inner: impl FnOnce(&mut Msg)) -> &mut Self {
        self.align();
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&kind.to_ne_bytes());
        inner(self);
        self.align();
        let len = (self.buf.len() - start) as u16;
        self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
        self
    }

    fn finish(mut self, seq: u32) -> Vec<u8> {
        self.align();
        let len = self.buf.len() as u32;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.buf
    }
}

/// `struct ifinfomsg` for link `index` with `flags` changed by `change`.
fn ifinfomsg(index: u32, flags: u32, change: u32) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[0] = libc::AF_UNSPEC as u8;
    m[4..8].copy_from_slice(&(index as i32).to_ne_bytes());
    m[8..12].copy_from_slice(&flags.to_ne_bytes());
    m[12..16].copy_from_slice(&change.to_ne_bytes());
    m
}

fn c_name(name: &str) -> io::Result<Vec<u8>> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("interface name {name:?}: 1 to 15 bytes"),
        ));
    }
    Ok(CString::new(name)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?
        .into_bytes_with_nul())
}

/// The index of the link called `name`.
pub fn index(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a live NUL-terminated string for the call.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(index)
}

/// Whether `netns` is the caller's own network namespace (moving a link
/// there would be a no-op that ignores the new name).
pub fn is_own_netns(netns: BorrowedFd<'_>) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let own = std::fs::metadata("/proc/thread-self/ns/net")?;
    let given = std::fs::File::from(netns.try_clone_to_owned()?).metadata()?;
    Ok(own.ino() == given.ino() && own.dev() == given.dev())
}

/// A descriptor of the caller's network namespace.
pub fn own_netns() -> io::Result<OwnedFd> {
    Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
}

impl Rtnl {
    /// A socket in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain integer arguments; the result is checked.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Rtnl { fd, seq: 0 })
    }

    /// Send `msg` and wait for the kernel's acknowledgement.
    fn call(&mut self, msg: Msg) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let seq = self.seq;
        let bytes = msg.finish(seq);
        // SAFETY: `bytes` is live for the call; the kernel only reads it.
        let sent =
            unsafe { libc::send(self.fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), 0) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; 8192];
        loop {
            // SAFETY: `buf` is live and writable for its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let mut at = 0usize;
            let n = n as usize;
            while at + NLMSG_HDRLEN <= n {
                let word =
                    |i: usize| u32::from_ne_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
                let len = word(at) as usize;
                let kind = u16::from_ne_bytes([buf[at + 4], buf[at + 5]]);
                let got_seq = word(at + 8);
                if len < NLMSG_HDRLEN || at + len > n {
                    break;
                }
                if kind == NLMSG_ERROR && got_seq == seq && len >= NLMSG_HDRLEN + 4 {
                    let errno = word(at + NLMSG_HDRLEN) as i32;
                    return match errno {
                        0 => Ok(()),
                        e => Err(io::Error::from_raw_os_error(-e)),
                    };
                }
                at += (len + 3) & !3;
            }
        }
    }

    /// Create a bridge `name` with `mtu` and MAC `mac` (down).
    pub fn add_bridge(&mut self, name: &str, mtu: u32, mac: [u8; 6]) -> io::Result<()> {
        let name = c_name(name)?;
        let mut msg = Msg::new(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, &ifinfomsg(0, 0, 0));
        msg.attr(IFLA_IFNAME, &name)
            .attr(IFLA_MTU, &mtu.to_ne_bytes())
            .attr(IFLA_ADDRESS, &mac)
            .nested(IFLA_LINKINFO, |m| {
                m.attr(IFLA_INFO_KIND, b"bridge");
            });
        self.call(msg)
    }

    /// Give link `index` the address `addr/prefix_len` (with its broadcast).
    pub fn add_ipv4(&mut self, index: u32, addr: Ipv4Addr, prefix_len: u8) -> io::Result<()> {
        let mut fixed = [0u8; 8];
        fixed[0] = libc::AF_INET as u8;
        fixed[1] = prefix_len;
        fixed[4..8].copy_from_slice(&index.to_ne_bytes());
        let host_bits = 32u32.saturating_sub(u32::from(prefix_len));
        let mask = u32::MAX.checked_shl(host_bits).unwrap_or(0);
        let broadcast = Ipv4Addr::from(u32::from(addr) | !mask);
        let mut msg = Msg::new(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, &fixed);
        msg.attr(IFA_LOCAL, &addr.octets())
            .attr(IFA_ADDRESS, &addr.octets())
            .attr(IFA_BROADCAST, &broadcast.octets());
        self.call(msg)
    }

    /// Change link `index`: its MTU first, then its master, then up (in
    /// one message: the kernel applies the MTU before the master, as
    /// finding 3 of `docs/networking.md` needs).
    pub fn set_link(&mut self, index: u32, change: LinkChange) -> io::Result<()> {
        let (flags, mask) = if change.up {
            (libc::IFF_UP as u32, libc::IFF_UP as u32)
        } else {
            (0, 0)
        };
        let mut msg = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, flags, mask));
        if let Some(mtu) = change.mtu {
            msg.attr(IFLA_MTU, &mtu.to_ne_bytes());
        }
        if let Some(master) = change.master {
            msg.attr(IFLA_MASTER, &master.to_ne_bytes());
        }
        self.call(msg)
    }

    /// Take link `index` down and off its bridge (a TAP being parked).
    pub fn park(&mut self, index: u32) -> io::Result<()> {
        let mut msg = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, 0, libc::IFF_UP as u32));
        msg.attr(IFLA_MASTER, &0u32.to_ne_bytes());
        self.call(msg)
    }

    /// Move link `index` (down) into the namespace `netns` under `name`;
    /// in this namespace already, only rename it.
    pub fn move_to(&mut self, index: u32, netns: BorrowedFd<'_>, name: &str) -> io::Result<()> {
        let name = c_name(name)?;
        let mut msg = Msg::new(RTM_NEWLINK, 0, &ifinfomsg(index, 0, 0));
        if !is_own_netns(netns)? {
            msg.attr(IFLA_NET_NS_FD, &(netns.as_raw_fd() as u32).to_ne_bytes());
        }
        msg.attr(IFLA_IFNAME, &name);
        self.call(msg)
    }

    /// Delete link `index`.
    pub fn del_link(&mut self, index: u32) -> io::Result<()> {
        self.call(Msg::new(RTM_DELLINK, 0, &ifinfomsg(index, 0, 0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nested_lengths_cover_their_content() {
        let mut msg = Msg::new(RTM_NEWLINK, NLM_F_CREATE, &ifinfomsg(0, 0, 0));
        msg.attr(IFLA_IFNAME, b"br0\0").nested(IFLA_LINKINFO, |m| {
            m.attr(IFLA_INFO_KIND, b"bridge");
        });
        let bytes = msg.finish(7);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(
            u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize,
            bytes.len()
        );
        assert_eq!(u32::from_ne_bytes(bytes[8..12].try_into().unwrap()), 7);
        // header 16 + ifinfomsg 16, then IFLA_IFNAME (4 + 4 bytes).
        assert_eq!(&bytes[32..34], &8u16.to_ne_bytes());
        // The nested LINKINFO: 4 + INFO_KIND (4 + 6, padded to 12) = 16.
        assert_eq!(&bytes[40..42], &16u16.to_ne_bytes());
        assert!(c_name(&"x".repeat(16)).is_err());
    }

    /// In a new network namespace on a thread of its own (`None` where
    /// namespaces cannot be made): a bridge with its MTU, address and
    /// state, made and changed by netlink.
    #[test]
    fn a_bridge_is_made_addressed_and_brought_up() {
        let outcome = std::thread::spawn(|| {
            // SAFETY: only this thread's network namespace changes; the
            // thread ends with the test.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            let mut rtnl = Rtnl::open().unwrap();
            rtnl.add_bridge("br0", 65520, [2, 0xa3, 0, 0, 0, 1])
                .unwrap();
            let br = index("br0").unwrap();
            rtnl.add_ipv4(br, Ipv4Addr::new(10, 9, 0, 1), 24).unwrap();
            rtnl.set_link(
                br,
                LinkChange {
                    up: true,
                    ..Default::default()
                },
            )
            .unwrap();
            let again = rtnl.add_bridge("br0", 1500, [2, 0, 0, 0, 0, 2]);
            let mtu = std::fs::read_to_string("/sys/class/net/br0/mtu");
            let listening = std::net::UdpSocket::bind("10.9.0.1:0").is_ok();
            Some((again.map_err(|e| e.raw_os_error()), mtu.ok(), listening))
        })
        .join()
        .unwrap();
        let Some((again, _mtu, listening)) = outcome else {
            eprintln!("skipped: no network namespaces");
            return;
        };
        assert_eq!(again, Err(Some(libc::EEXIST)), "a second br0 is refused");
        assert!(listening, "the address is the namespace's");
    }

    /// A TAP (held open, as QEMU holds a box's) made in one new namespace
    /// moves into another under a new name, and is renamed in place when
    /// the "other" namespace is its own.
    #[test]
    fn a_tap_moves_between_namespaces_and_is_renamed() {
        use std::os::fd::AsFd;
        use std::sync::mpsc;
        // The target namespace: a thread that waits until told to look.
        let (ns_tx, ns_rx) = mpsc::channel();
        let (look_tx, look_rx) = mpsc::channel::<()>();
        let target = std::thread::spawn(move || {
            // SAFETY: only this thread's network namespace changes.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                let _ = ns_tx.send(None);
                return None;
            }
            let _ = ns_tx.send(Some(own_netns().unwrap()));
            look_rx.recv().ok()?;
            Some(index("a3smoved").is_ok())
        });
        let Some(target_ns) = ns_rx.recv().unwrap() else {
            eprintln!("skipped: no network namespaces");
            return;
        };
        let source = std::thread::spawn(move || {
            // SAFETY: only this thread's network namespace changes.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                return None;
            }
            let Ok(tap) = crate::tap::create("a3pspare0") else {
                return None;
            };
            let mut rtnl = Rtnl::open().unwrap();
            let own = own_netns().unwrap();
            assert!(is_own_netns(own.as_fd()).unwrap());
            assert!(!is_own_netns(target_ns.as_fd()).unwrap());
            // In place first: only the name changes.
            let i = index("a3pspare0").unwrap();
            rtnl.move_to(i, own.as_fd(), "a3pspare1").unwrap();
            assert!(index("a3pspare1").is_ok() && index("a3pspare0").is_err());
            rtnl.park(i).unwrap();
            rtnl.move_to(i, target_ns.as_fd(), "a3smoved").unwrap();
            let gone_here = index("a3pspare1").is_err();
            Some((tap, gone_here))
        })
        .join()
        .unwrap();
        let Some((_tap, gone_here)) = source else {
            eprintln!("skipped: no TAP devices");
            drop(look_tx);
            let _ = target.join();
            return;
        };
        look_tx.send(()).unwrap();
        assert!(gone_here, "the TAP left its namespace");
        assert_eq!(target.join().unwrap(), Some(true), "it arrived, renamed");
    }
}
