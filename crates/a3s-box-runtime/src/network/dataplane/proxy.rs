//! Published ports, relayed by the box's supervisor: it listens on the
//! host sockets bound before the VM booted (`network::ports`) and, for each
//! TCP connection or UDP flow, asks the network's helper for a socket
//! connected to the box from inside the network's namespace.
//!
//! TCP is moved with splice(2) through a pipe per direction, in the
//! kernel, with `TCP_NODELAY` on both sockets and without
//! `SPLICE_F_MORE` (which corks small replies: finding 11 of
//! `docs/networking.md`). A half-close is passed on. UDP keeps one flow
//! per client address, dropped after [`UDP_IDLE`] without traffic.
//!
//! The TCP relay ([`relay_tcp`]) is also the network helper's: its
//! host-gateway relay moves a box's connection to the host's loopback
//! with it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_box_core::spec::Protocol;
use tokio::io::Interest;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::client;
use crate::network::ports::{BoundPort, HostSocket};

/// A UDP flow without traffic this long is forgotten.
pub const UDP_IDLE: Duration = Duration::from_secs(60);
/// Pipe size of a TCP direction.
const PIPE_BYTES: libc::c_int = 1 << 20;
/// Largest UDP datagram relayed.
const MAX_DATAGRAM: usize = 65536;

/// The relays of a box's published ports; they stop when dropped.
#[derive(Debug, Default)]
pub struct PortProxies {
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for PortProxies {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl PortProxies {
    /// Relay every port of `bound` (their sockets are taken) to the box
    /// `box_id` on the network whose helper listens at `socket`. Must be
    /// called within a tokio runtime.
    pub fn start(bound: &mut [BoundPort], socket: PathBuf, box_id: &str) -> std::io::Result<Self> {
        let mut proxies = PortProxies::default();
        for port in bound.iter_mut() {
            let Some(host) = port.socket.take() else {
                continue;
            };
            let target = Target {
                socket: socket.clone(),
                box_id: box_id.to_string(),
                port: port.container_port,
            };
            let task = match host {
                HostSocket::Tcp(listener) => {
                    listener.set_nonblocking(true)?;
                    tokio::spawn(tcp(TcpListener::from_std(listener)?, target))
                }
                HostSocket::Udp(udp_socket) => {
                    udp_socket.set_nonblocking(true)?;
                    tokio::spawn(udp(UdpSocket::from_std(udp_socket)?, target))
                }
            };
            proxies.tasks.push(task);
        }
        Ok(proxies)
    }
}

/// Where a port's traffic goes.
#[derive(Debug, Clone)]
struct Target {
    socket: PathBuf,
    box_id: String,
    port: u16,
}

impl Target {
    async fn connect(&self, protocol: Protocol) -> Option<OwnedFd> {
        match client::connect(&self.socket, &self.box_id, self.port, protocol).await {
            Ok(fd) => Some(fd),
            Err(e) => {
                tracing::debug!(port = self.port, %protocol, "published port: {e}");
                None
            }
        }
    }
}

async fn tcp(listener: TcpListener, target: Target) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                tracing::debug!("published port {}: accept: {e}", target.port);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let target = target.clone();
        tokio::spawn(async move {
            let Some(fd) = target.connect(Protocol::Tcp).await else {
                return;
            };
            let inside = std::net::TcpStream::from(fd);
            let ready = inside
                .set_nonblocking(true)
                .and_then(|()| TcpStream::from_std(inside));
            let Ok(inside) = ready else {
                return;
            };
            relay_tcp(client, inside).await;
        });
    }
}

/// Relay two connected TCP streams with splice(2), in the kernel: both
/// get `TCP_NODELAY`, each direction moves through its own pipe and a
/// half-close is passed on. Returns when both directions ended, or at
/// once when either fails (a reset, an error): both streams then close
/// here.
pub async fn relay_tcp(a: TcpStream, b: TcpStream) {
    let _ = a.set_nodelay(true);
    let _ = b.set_nodelay(true);
    let ab = pump(&a, &b);
    let ba = pump(&b, &a);
    tokio::pin!(ab, ba);
    let rest = tokio::select! {
        r = &mut ab => r.map(|()| false),
        r = &mut ba => r.map(|()| true),
    };
    let ended = match rest {
        Ok(true) => ab.await,
        Ok(false) => ba.await,
        Err(e) => Err(e),
    };
    if let Err(e) = ended {
        tracing::trace!("relayed connection: {e}");
    }
}

/// A pipe for splice(2): read end, write end.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two descriptors into a live array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: two new descriptors nothing else owns.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // A bigger pipe moves more per call; the default (64 KiB) is fine if refused.
    // SAFETY: F_SETPIPE_SZ on our own pipe.
    unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    Ok((r, w))
}

fn splice(from: BorrowedFd<'_>, to: BorrowedFd<'_>, len: usize) -> std::io::Result<usize> {
    // SAFETY: splice between two live descriptors, no offsets.
    let n = unsafe {
        libc::splice(
            from.as_raw_fd(),
            std::ptr::null_mut(),
            to.as_raw_fd(),
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// One direction: `src` → pipe → `dst`, then pass the end on.
async fn pump(src: &TcpStream, dst: &TcpStream) -> std::io::Result<()> {
    let (r, w) = pipe()?;
    let dst_fd = dst.as_raw_fd();
    loop {
        let n = src
            .async_io(Interest::READABLE, || {
                splice(
                    std::os::fd::AsFd::as_fd(src),
                    borrowed(&w),
                    PIPE_BYTES as usize,
                )
            })
            .await;
        let n = match n {
            Ok(n) => n,
            Err(e) => {
                let _ = shutdown(dst_fd);
                return Err(e);
            }
        };
        if n == 0 {
            return shutdown(dst_fd);
        }
        let mut left = n;
        while left > 0 {
            left -= dst
                .async_io(Interest::WRITABLE, || {
                    splice(borrowed(&r), std::os::fd::AsFd::as_fd(dst), left)
                })
                .await?;
        }
    }
}

fn borrowed(fd: &OwnedFd) -> BorrowedFd<'_> {
    std::os::fd::AsFd::as_fd(fd)
}

fn shutdown(fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: shutdown of a socket its stream owns.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(e);
        }
    }
    Ok(())
}

/// One UDP flow: the socket to the box and when it last carried traffic.
struct Flow {
    inside: Arc<UdpSocket>,
    last: Instant,
    task: JoinHandle<()>,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn udp(host: UdpSocket, target: Target) {
    let host = Arc::new(host);
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(UDP_IDLE / 4);
    loop {
        let (n, peer) = tokio::select! {
            got = host.recv_from(&mut buf) => match got {
                Ok(got) => got,
                Err(e) => {
                    tracing::debug!("published port {}/udp: {e}", target.port);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = sweep.tick() => {
                flows.retain(|_, f| f.last.elapsed() < UDP_IDLE);
                continue;
            }
        };
        if let std::collections::hash_map::Entry::Vacant(vacant) = flows.entry(peer) {
            let Some(fd) = target.connect(Protocol::Udp).await else {
                continue;
            };
            let socket = std::net::UdpSocket::from(fd);
            let Ok(inside) = socket
                .set_nonblocking(true)
                .and_then(|()| UdpSocket::from_std(socket))
            else {
                continue;
            };
            let inside = Arc::new(inside);
            let task = tokio::spawn(udp_back(inside.clone(), host.clone(), peer));
            vacant.insert(Flow {
                inside,
                last: Instant::now(),
                task,
            });
        }
        if let Some(flow) = flows.get_mut(&peer) {
            flow.last = Instant::now();
            let _ = flow.inside.send(&buf[..n]).await;
        }
    }
}

/// The box's replies of one flow, back to its client.
async fn udp_back(inside: Arc<UdpSocket>, host: Arc<UdpSocket>, peer: SocketAddr) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match inside.recv(&mut buf).await {
            Ok(n) => {
                let _ = host.send_to(&buf[..n], peer).await;
            }
            // ICMP errors (the box's port is closed) end nothing: the
            // client may retry.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(_) => return,
        }
    }
}
