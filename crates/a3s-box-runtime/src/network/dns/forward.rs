//! Forwarding a query to upstream servers, as received: over UDP (a fresh
//! socket per query, so replies cannot be confused) or over TCP, each
//! upstream in turn until one answers within the timeout. The sockets are
//! the caller's namespace's, or made by an [`UpstreamSockets`] (the
//! network helper makes them in the host's namespace, so upstreams are
//! reached as the host reaches them: its loopback resolvers included).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};

/// Largest DNS message.
pub(crate) const MAX_MESSAGE: usize = 65535;

/// How one query travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

/// Makes the sockets upstream queries leave from.
pub trait UpstreamSockets: Send + Sync + std::fmt::Debug {
    /// A new socket, neither bound nor connected: a stream (TCP) or a
    /// datagram (UDP) socket, IPv6 or IPv4.
    fn socket(&self, v6: bool, stream: bool) -> std::io::Result<OwnedFd>;
}

/// A socket of `maker` (non-blocking), or `None` to make one here.
fn made(
    maker: Option<&dyn UpstreamSockets>,
    v6: bool,
    stream: bool,
) -> std::io::Result<Option<OwnedFd>> {
    let Some(maker) = maker else {
        return Ok(None);
    };
    let fd = maker.socket(v6, stream)?;
    crate::network::dataplane::seqpacket::set_nonblocking(fd.as_fd())?;
    Ok(Some(fd))
}

/// Set `SO_MARK` on a socket (the firewall lets marked packets pass).
fn set_mark(fd: &impl AsRawFd, mark: u32) -> std::io::Result<()> {
    // SAFETY: setsockopt reads `size_of::<u32>()` bytes from a live u32 on
    // our stack; the descriptor is owned by the socket borrowed here.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MARK,
            std::ptr::from_ref(&mark).cast(),
            std::mem::size_of::<u32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether `reply` answers `query`: a response with the same id.
fn is_reply(query: &[u8], reply: &[u8]) -> bool {
    reply.len() >= 12 && reply[..2] == query[..2] && reply[2] & 0x80 != 0
}

async fn udp(
    query: &[u8],
    upstream: SocketAddr,
    mark: Option<u32>,
    maker: Option<&dyn UpstreamSockets>,
) -> std::io::Result<Vec<u8>> {
    let local: IpAddr = if upstream.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = match made(maker, upstream.is_ipv6(), false)? {
        // Bound by the connect below, in the socket's namespace.
        Some(fd) => UdpSocket::from_std(std::net::UdpSocket::from(fd))?,
        None => UdpSocket::bind((local, 0)).await?,
    };
    if let Some(mark) = mark {
        set_mark(&socket, mark)?;
    }
    socket.connect(upstream).await?;
    socket.send(query).await?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let n = socket.recv(&mut buf).await?;
        if is_reply(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(
    query: &[u8],
    upstream: SocketAddr,
    mark: Option<u32>,
    maker: Option<&dyn UpstreamSockets>,
) -> std::io::Result<Vec<u8>> {
    let socket = match made(maker, upstream.is_ipv6(), true)? {
        Some(fd) => TcpSocket::from_std_stream(std::net::TcpStream::from(fd)),
        None if upstream.is_ipv4() => TcpSocket::new_v4()?,
        None => TcpSocket::new_v6()?,
    };
    if let Some(mark) = mark {
        set_mark(&socket, mark)?;
    }
    let mut stream = socket.connect(upstream).await?;
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "query too long"))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await?;
    if !is_reply(query, &reply) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the upstream's reply does not match the query",
        ));
    }
    Ok(reply)
}

/// The first reply of `upstreams`, tried in order, each for at most
/// `timeout`; `None` if none answered.
pub(crate) async fn forward(
    query: &[u8],
    upstreams: &[SocketAddr],
    transport: Transport,
    timeout: Duration,
    mark: Option<u32>,
    maker: Option<&dyn UpstreamSockets>,
) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    for upstream in upstreams {
        let attempt = async {
            match transport {
                Transport::Udp => udp(query, *upstream, mark, maker).await,
                Transport::Tcp => tcp(query, *upstream, mark, maker).await,
            }
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(reply)) => return Some(reply),
            Ok(Err(e)) => tracing::debug!("DNS upstream {upstream}: {e}"),
            Err(_) => tracing::debug!("DNS upstream {upstream}: no answer in {timeout:?}"),
        }
    }
    None
}
