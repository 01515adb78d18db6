//! Published ports (`-p`, `-P`) resolved into host ports before the VM
//! boots: a port already in use fails the start with Docker's message, and
//! `-p BOXPORT` gets a free port.
//!
//! [`bind_ports`] binds every mapping (TCP or UDP as it says, on its host
//! address, 0.0.0.0 by default): requested ports first, then port 0 for
//! the others (the kernel picks, so picked ports never take requested
//! ones). It returns the sockets, still bound: the caller either hands
//! them to the data plane (fd passing: nothing can take the port between
//! the check and the use) or drops them ([`BoundPort::release`]) and lets
//! the data plane bind the same ports (a short window for a race).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use a3s_box_core::spec::{ExposedPort, NetworkSpec, PortMapping, Protocol};
use a3s_box_core::{BoxError, Result};

/// The host address of a mapping that names none (Docker's default).
pub const DEFAULT_HOST_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// A bound host socket of a published port.
#[derive(Debug)]
pub enum HostSocket {
    /// A listening TCP socket.
    Tcp(TcpListener),
    /// A bound UDP socket.
    Udp(UdpSocket),
}

impl HostSocket {
    /// The socket's descriptor, to pass on.
    pub fn into_fd(self) -> OwnedFd {
        match self {
            HostSocket::Tcp(s) => s.into(),
            HostSocket::Udp(s) => s.into(),
        }
    }
}

impl AsFd for HostSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            HostSocket::Tcp(s) => s.as_fd(),
            HostSocket::Udp(s) => s.as_fd(),
        }
    }
}

/// One published port with its host side settled.
#[derive(Debug)]
pub struct BoundPort {
    /// The host address.
    pub host_ip: IpAddr,
    /// The host port (picked, when the mapping left it out).
    pub host_port: u16,
    /// The port in the box.
    pub container_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// The bound socket, until taken or released.
    pub socket: Option<HostSocket>,
}

impl BoundPort {
    /// The mapping with every part filled in (for the box's state and
    /// `docker port`-style views).
    pub fn mapping(&self) -> PortMapping {
        PortMapping {
            host_ip: Some(self.host_ip),
            host_port: Some(self.host_port),
            container_port: self.container_port,
            protocol: self.protocol,
        }
    }

    /// Close the socket, leaving the port to be bound again by the data
    /// plane.
    pub fn release(&mut self) {
        self.socket = None;
    }
}

/// The mappings a box publishes: its `-p` ones, then, with `-P`, every
/// exposed port no `-p` mapping publishes, on a port the engine picks.
/// `spec.expose` must already hold the image's `EXPOSE`d ports.
pub fn published(spec: &NetworkSpec) -> Vec<PortMapping> {
    let mut all = spec.ports.clone();
    if spec.publish_all {
        all.extend(publish_all(&spec.expose, &spec.ports));
    }
    all
}

/// `-P`: a mapping to a picked host port for every port of `exposed` that
/// `explicit` does not publish already (repeats dropped, in order).
pub fn publish_all(exposed: &[ExposedPort], explicit: &[PortMapping]) -> Vec<PortMapping> {
    let mut out: Vec<PortMapping> = Vec::new();
    for e in exposed {
        let taken = explicit
            .iter()
            .chain(&out)
            .any(|m| m.container_port == e.port && m.protocol == e.protocol);
        if !taken {
            out.push(PortMapping {
                host_ip: None,
                host_port: None,
                container_port: e.port,
                protocol: e.protocol,
            });
        }
    }
    out
}

/// Bind every mapping's host port (see the module doc); on the first
/// failure everything bound so far is closed and the error says which
/// port (Conflict for a port in use, Invalid for an address the host does
/// not have, Unavailable for a port the user may not bind).
pub fn bind_ports(mappings: &[PortMapping]) -> Result<Vec<BoundPort>> {
    let mut bound: Vec<Option<BoundPort>> = mappings.iter().map(|_| None).collect();
    // Requested ports first, so a picked port cannot take one of them.
    let order = (0..mappings.len())
        .filter(|i| mappings[*i].host_port.is_some())
        .chain((0..mappings.len()).filter(|i| mappings[*i].host_port.is_none()));
    for i in order {
        bound[i] = Some(bind_one(&mappings[i])?);
    }
    Ok(bound.into_iter().flatten().collect())
}

fn bind_one(m: &PortMapping) -> Result<BoundPort> {
    let host_ip = m.host_ip.unwrap_or(DEFAULT_HOST_IP);
    let addr = SocketAddr::new(host_ip, m.host_port.unwrap_or(0));
    let result = match m.protocol {
        Protocol::Tcp => TcpListener::bind(addr).and_then(|s| {
            let port = s.local_addr()?.port();
            Ok((HostSocket::Tcp(s), port))
        }),
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| {
            let port = s.local_addr()?.port();
            Ok((HostSocket::Udp(s), port))
        }),
    };
    let (socket, host_port) = result.map_err(|e| bind_error(m, addr, e))?;
    Ok(BoundPort {
        host_ip,
        host_port,
        container_port: m.container_port,
        protocol: m.protocol,
        socket: Some(socket),
    })
}

fn bind_error(m: &PortMapping, addr: SocketAddr, e: std::io::Error) -> BoxError {
    let c = m.container_port;
    let p = m.protocol;
    match e.kind() {
        std::io::ErrorKind::AddrInUse => BoxError::Conflict(format!(
            "Bind for {addr} failed: port is already allocated (publish {c}/{p} on another host port, as in -p {}:{c}, or leave the host port out for a free one: -p {c})",
            addr.port().checked_add(1).unwrap_or(1024)
        )),
        std::io::ErrorKind::AddrNotAvailable => BoxError::Invalid(format!(
            "Bind for {addr} failed: {} is not an address of this host (publish on one of its addresses, or leave the address out for all of them)",
            addr.ip()
        )),
        std::io::ErrorKind::PermissionDenied => BoxError::Unavailable(format!(
            "Bind for {addr} failed: permission denied (ports below 1024 need privileges: use a higher host port, as in -p 8080:{c})"
        )),
        _ => BoxError::io(format!("Bind for {addr} failed"), e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use a3s_box_core::spec::parse_publish;
    use a3s_box_core::ErrorKind;

    fn maps(specs: &[&str]) -> Vec<PortMapping> {
        specs
            .iter()
            .flat_map(|s| parse_publish(s).unwrap())
            .collect()
    }

    #[test]
    fn publish_all_adds_unpublished_exposed_ports() {
        let exposed = vec![
            ExposedPort {
                port: 80,
                protocol: Protocol::Tcp,
            },
            ExposedPort {
                port: 53,
                protocol: Protocol::Udp,
            },
            ExposedPort {
                port: 443,
                protocol: Protocol::Tcp,
            },
            ExposedPort {
                port: 443,
                protocol: Protocol::Tcp,
            },
        ];
        let explicit = maps(&["127.0.0.1:8080:80"]);
        let added = publish_all(&exposed, &explicit);
        let text: Vec<String> = added.iter().map(|m| m.to_string()).collect();
        assert_eq!(text, ["53/udp", "443/tcp"]);
        let spec = NetworkSpec {
            ports: explicit,
            publish_all: true,
            expose: exposed,
            ..NetworkSpec::default()
        };
        assert_eq!(published(&spec).len(), 3);
        let spec = NetworkSpec {
            publish_all: false,
            ..spec
        };
        assert_eq!(published(&spec).len(), 1);
    }

    #[test]
    fn free_ports_are_picked_and_stay_bound() {
        let mut bound = bind_ports(&maps(&[
            "127.0.0.1::80",
            "127.0.0.1::53/udp",
            "127.0.0.1::81",
        ]))
        .unwrap();
        assert_eq!(bound.len(), 3);
        assert!(bound.iter().all(|b| b.host_port != 0));
        assert_ne!(bound[0].host_port, bound[2].host_port);
        assert_eq!(bound[1].protocol, Protocol::Udp);
        assert_eq!(
            bound[0].mapping().to_string(),
            format!("127.0.0.1:{}:80/tcp", bound[0].host_port)
        );
        // The TCP socket listens: a client connects before anyone accepts.
        let addr = SocketAddr::new(bound[0].host_ip, bound[0].host_port);
        std::net::TcpStream::connect(addr).unwrap();
        // Released, the port can be bound again.
        bound[0].release();
        TcpListener::bind(addr).unwrap();
    }

    #[test]
    fn a_port_in_use_fails_with_dockers_message_and_frees_the_rest() {
        let busy = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let mappings = maps(&["127.0.0.1::90", &format!("127.0.0.1:{port}:80")]);
        let e = bind_ports(&mappings).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "Bind for 127.0.0.1:{port} failed: port is already allocated"
            )),
            "{text}"
        );
        assert!(text.contains("-p 80"), "{text}");
        // Every address: taken on loopback means taken.
        let e = bind_ports(&maps(&[&format!("{port}:80")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("Bind for 0.0.0.0:{port} failed")),
            "{e}"
        );

        let busy = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = busy.local_addr().unwrap().port();
        let e = bind_ports(&maps(&[&format!("127.0.0.1:{port}:53/udp")])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Conflict);
        // The same port number over TCP is free.
        bind_ports(&maps(&[&format!("127.0.0.1:{port}:53/tcp")])).unwrap();
    }

    #[test]
    fn requested_ports_are_bound_before_picked_ones() {
        // Find a free port, then ask for it after a picked one.
        let probe = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = probe.local_addr().unwrap().port();
        drop(probe);
        let bound = bind_ports(&maps(&["127.0.0.1::70", &format!("127.0.0.1:{port}:80")])).unwrap();
        assert_eq!(bound[0].container_port, 70, "order of the mappings kept");
        assert_eq!(bound[1].host_port, port);
        let fd = bound.into_iter().nth(1).unwrap().socket.unwrap().into_fd();
        let listener = TcpListener::from(fd);
        assert_eq!(listener.local_addr().unwrap().port(), port);
    }

    #[test]
    fn an_address_the_host_lacks_is_invalid() {
        let e = bind_ports(&maps(&["192.0.2.1:8080:80"])).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Invalid, "{e}");
        assert!(e.to_string().contains("not an address of this host"), "{e}");
    }
}
