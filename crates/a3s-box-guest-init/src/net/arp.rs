//! One ARP frame as soon as an interface has its address (finding 8 of
//! `docs/networking.md`): a request for the gateway, sent from the box's
//! own MAC and address. The bridge learns which port the box is on, the
//! gateway (the network's namespace) learns the box's MAC from the
//! request, and its reply fills the box's table: the first packet either
//! way (a published port's connection, the box's first DNS query) waits
//! for no resolution. Without a gateway the frame announces the address
//! (sender and target both the box's).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use a3s_box_core::guest::message::MacAddr;
use nix::errno::Errno;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
const ARP_REQUEST: u16 = 1;
const HW_ETHER: u16 = 1;

/// The ARP payload (Ethernet, IPv4) of a request from `mac`/`ip` for
/// `target`.
pub fn request(mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> [u8; 28] {
    let mut frame = [0u8; 28];
    frame[0..2].copy_from_slice(&HW_ETHER.to_be_bytes());
    frame[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    frame[4] = 6;
    frame[5] = 4;
    frame[6..8].copy_from_slice(&ARP_REQUEST.to_be_bytes());
    frame[8..14].copy_from_slice(&mac.0);
    frame[14..18].copy_from_slice(&ip.octets());
    // Target hardware address unknown: zero.
    frame[24..28].copy_from_slice(&target.octets());
    frame
}

/// Broadcast the request on interface `name`.
pub fn send(name: &str, mac: MacAddr, ip: Ipv4Addr, target: Ipv4Addr) -> Result<(), Errno> {
    let c_name = std::ffi::CString::new(name).map_err(|_| Errno::EINVAL)?;
    // SAFETY: a live NUL-terminated name for the call.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        return Err(Errno::last());
    }
    // SAFETY: plain integer arguments; the result is checked.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; all zeroes is a valid value.
    let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    to.sll_family = libc::AF_PACKET as u16;
    to.sll_protocol = ETH_P_ARP.to_be();
    to.sll_ifindex = index as i32;
    to.sll_halen = 6;
    to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let payload = request(mac, ip, target);
    // SAFETY: sendto reads the live payload and address for their lengths.
    let rc = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            payload.as_ptr().cast(),
            payload.len(),
            0,
            std::ptr::from_ref(&to).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    Errno::result(rc).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_our_addresses_and_the_target() {
        let mac = MacAddr([2, 0x42, 10, 88, 0, 2]);
        let f = request(
            mac,
            Ipv4Addr::new(10, 88, 0, 2),
            Ipv4Addr::new(10, 88, 0, 1),
        );
        assert_eq!(&f[0..8], &[0, 1, 8, 0, 6, 4, 0, 1]);
        assert_eq!(&f[8..14], &mac.0);
        assert_eq!(&f[14..18], &[10, 88, 0, 2]);
        assert_eq!(&f[18..24], &[0; 6]);
        assert_eq!(&f[24..28], &[10, 88, 0, 1]);
    }
}
