//! Configuring network interfaces with the classic socket ioctls: flags
//! (`SIOCSIFFLAGS`), MTU, IPv4 address and netmask, and routes
//! (`SIOCADDRT`). Enough for a VM's few interfaces, with no netlink library
//! in a static PID 1.

use std::ffi::CString;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// `struct rtentry` of `<linux/route.h>`.
#[repr(C)]
struct RtEntry {
    rt_pad1: libc::c_ulong,
    rt_dst: libc::sockaddr,
    rt_gateway: libc::sockaddr,
    rt_genmask: libc::sockaddr,
    rt_flags: libc::c_ushort,
    rt_pad2: libc::c_short,
    rt_pad3: libc::c_ulong,
    rt_pad4: *mut libc::c_void,
    rt_metric: libc::c_short,
    rt_dev: *mut libc::c_char,
    rt_mtu: libc::c_ulong,
    rt_window: libc::c_ulong,
    rt_irtt: libc::c_ushort,
}

/// `RTF_HOST`: a route to one host.
const RTF_HOST: libc::c_ushort = 0x0004;

/// A socket to issue interface ioctls on, and the interface they are for.
pub struct Link {
    socket: OwnedFd,
    name: CString,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Link({:?})", self.name)
    }
}

fn sockaddr_in(address: Ipv4Addr) -> libc::sockaddr {
    let sin = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size (16 bytes) and the
    // kernel reads the family to know which one it is.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sin) }
}

impl Link {
    /// The interface named `name`.
    pub fn new(name: &str) -> Result<Self, Errno> {
        if name.len() >= libc::IFNAMSIZ {
            return Err(Errno::ENAMETOOLONG);
        }
        let name = CString::new(name).map_err(|_| Errno::EINVAL)?;
        // SAFETY: plain integer arguments; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(Errno::last());
        }
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        let socket = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Link { socket, name })
    }

    fn request(&self) -> libc::ifreq {
        // SAFETY: ifreq is plain data; all zeroes is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(self.name.as_bytes()) {
            *dst = *src as libc::c_char;
        }
        req
    }

    fn ioctl(&self, request: libc::c_ulong, req: &mut libc::ifreq) -> Result<(), Errno> {
        // SAFETY: `req` is a valid ifreq naming this interface, of the type
        // each of the SIOC*IF* requests used here reads or fills in.
        let rc = unsafe { libc::ioctl(self.socket.as_raw_fd(), request as _, req as *mut _) };
        Errno::result(rc).map(drop)
    }

    /// Bring the interface up.
    pub fn up(&self) -> Result<(), Errno> {
        let mut req = self.request();
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    /// Take the interface down (its routes go).
    pub fn down(&self) -> Result<(), Errno> {
        let mut req = self.request();
        self.ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled in the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        req.ifr_ifru.ifru_flags = flags & !(libc::IFF_UP as libc::c_short);
        self.ioctl(libc::SIOCSIFFLAGS, &mut req)
    }

    /// Drop the IPv4 address (setting 0.0.0.0 deletes it); none is fine.
    pub fn clear_ipv4(&self) -> Result<(), Errno> {
        let mut req = self.request();
        req.ifr_ifru.ifru_addr = sockaddr_in(Ipv4Addr::UNSPECIFIED);
        match self.ioctl(libc::SIOCSIFADDR, &mut req) {
            Ok(()) | Err(Errno::EADDRNOTAVAIL) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Set the MTU.
    pub fn set_mtu(&self, mtu: u32) -> Result<(), Errno> {
        let mut req = self.request();
        req.ifr_ifru.ifru_mtu = libc::c_int::try_from(mtu).map_err(|_| Errno::EINVAL)?;
        self.ioctl(libc::SIOCSIFMTU, &mut req)
    }

    /// The MTU (read back by the tests).
    #[cfg(test)]
    pub fn mtu(&self) -> Result<u32, Errno> {
        let mut req = self.request();
        self.ioctl(libc::SIOCGIFMTU, &mut req)?;
        // SAFETY: SIOCGIFMTU filled in the MTU member of the union.
        let mtu = unsafe { req.ifr_ifru.ifru_mtu };
        u32::try_from(mtu).map_err(|_| Errno::EINVAL)
    }

    /// Set the IPv4 address and netmask.
    pub fn set_ipv4(&self, address: Ipv4Addr, netmask: Ipv4Addr) -> Result<(), Errno> {
        let mut req = self.request();
        req.ifr_ifru.ifru_addr = sockaddr_in(address);
        self.ioctl(libc::SIOCSIFADDR, &mut req)?;
        let mut req = self.request();
        req.ifr_ifru.ifru_netmask = sockaddr_in(netmask);
        self.ioctl(libc::SIOCSIFNETMASK, &mut req)
    }

    /// Route `destination`/`netmask` through this interface, via `gateway`
    /// when given (else on-link). An existing identical route is fine.
    pub fn add_route(
        &self,
        destination: Ipv4Addr,
        netmask: Ipv4Addr,
        gateway: Option<Ipv4Addr>,
    ) -> Result<(), Errno> {
        let mut flags = libc::RTF_UP;
        if gateway.is_some() {
            flags |= libc::RTF_GATEWAY;
        }
        if netmask == Ipv4Addr::BROADCAST {
            flags |= RTF_HOST;
        }
        let mut route = RtEntry {
            rt_pad1: 0,
            rt_dst: sockaddr_in(destination),
            rt_gateway: sockaddr_in(gateway.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            rt_genmask: sockaddr_in(netmask),
            rt_flags: flags,
            rt_pad2: 0,
            rt_pad3: 0,
            rt_pad4: std::ptr::null_mut(),
            rt_metric: 0,
            rt_dev: self.name.as_ptr().cast_mut(),
            rt_mtu: 0,
            rt_window: 0,
            rt_irtt: 0,
        };
        // SAFETY: `route` is a valid rtentry whose device name points to
        // this link's NUL-terminated name, alive for the call.
        let rc = unsafe {
            libc::ioctl(
                self.socket.as_raw_fd(),
                libc::SIOCADDRT as _,
                &mut route as *mut RtEntry,
            )
        };
        match Errno::result(rc) {
            Ok(_) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_in_network_order() {
        let sa = sockaddr_in(Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(sa.sa_family, libc::AF_INET as libc::sa_family_t);
        // sa_data: 2 bytes of port, then the address bytes as written.
        assert_eq!(&sa.sa_data[2..6], &[10, 0, 2, 15]);
    }

    #[test]
    fn names_must_fit_ifnamsiz() {
        assert_eq!(Link::new(&"x".repeat(16)).unwrap_err(), Errno::ENAMETOOLONG);
        assert!(Link::new("lo").is_ok());
    }

    #[test]
    fn an_unknown_interface_is_an_error() {
        let link = Link::new("a3s-nope0").unwrap();
        assert_eq!(link.up(), Err(Errno::ENODEV));
    }
}
