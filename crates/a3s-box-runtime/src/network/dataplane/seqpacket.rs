//! Unix `SOCK_SEQPACKET` sockets that carry descriptors (`SCM_RIGHTS`):
//! the channel between a box's supervisor and its network's helper
//! (`a3s-box-netd`), and inside the helper between its halves.
//!
//! A seqpacket socket keeps message boundaries, so one `sendmsg` is one
//! message with its descriptors attached, and one `recvmsg` gets exactly
//! that message and those descriptors: no framing, no descriptor arriving
//! with the wrong bytes. Received descriptors are close-on-exec.
//!
//! The blocking functions ([`send_fds`], [`recv_fds`]) serve the helper's
//! single-threaded parts; [`SeqPacket`] and [`SeqPacketListener`] are the
//! same on tokio.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sys::socket::{
    accept4, bind, connect, listen, recvmsg, sendmsg, socket, socketpair, AddressFamily, Backlog,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, UnixAddr,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// Largest message either side sends (requests and replies are small JSON).
pub const MAX_MESSAGE: usize = 64 << 10;
/// Most descriptors one message carries.
pub const MAX_FDS: usize = 8;

fn io_err(e: nix::Error) -> std::io::Error {
    std::io::Error::from(e)
}

/// Send `bytes` with `fds` attached, as one message (blocking unless the
/// socket is non-blocking).
pub fn send_fds(
    socket: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsgs };
    let iov = [IoSlice::new(bytes)];
    loop {
        match sendmsg::<()>(
            socket.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) if n == bytes.len() => return Ok(()),
            Ok(_) => return Err(std::io::ErrorKind::WriteZero.into()),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
        }
    }
}

/// Receive one message and its descriptors; `None` at the end of the
/// connection.
pub fn recv_fds(socket: BorrowedFd<'_>) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = match recvmsg::<()>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(io_err(e)),
        };
        let mut fds = Vec::new();
        for cmsg in msg.cmsgs().map_err(io_err)? {
            if let ControlMessageOwned::ScmRights(received) = cmsg {
                for fd in received {
                    // SAFETY: the kernel just installed `fd` in our table
                    // for this message; nothing else owns it.
                    fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        let truncated =
            msg.flags.contains(MsgFlags::MSG_TRUNC) || msg.flags.contains(MsgFlags::MSG_CTRUNC);
        let n = msg.bytes;
        if truncated {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a message or its descriptors were cut short",
            ));
        }
        if n == 0 && fds.is_empty() {
            return Ok(None);
        }
        buf.truncate(n);
        return Ok(Some((buf, fds)));
    }
}

/// A connected pair (close-on-exec, blocking).
pub fn pair() -> std::io::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io_err)
}

/// A connected seqpacket socket on tokio.
#[derive(Debug)]
pub struct SeqPacket {
    fd: AsyncFd<OwnedFd>,
}

impl SeqPacket {
    /// Connect to the listener at `path`.
    pub fn connect(path: &Path) -> std::io::Result<Self> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(io_err)?;
        let addr = UnixAddr::new(path).map_err(io_err)?;
        // A unix connect completes at once (or fails): no need to wait.
        connect(fd.as_raw_fd(), &addr).map_err(io_err)?;
        Self::from_fd(fd)
    }

    /// Wrap a connected socket (made non-blocking here). Must be called
    /// within a tokio runtime.
    pub fn from_fd(fd: OwnedFd) -> std::io::Result<Self> {
        set_nonblocking(fd.as_fd())?;
        // SAFETY: the AsyncFd owns the descriptor and nothing replaces or
        // closes it while registered.
        let fd = unsafe {
            AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE)?
        };
        Ok(SeqPacket { fd })
    }

    /// Send one message with `fds` attached.
    pub async fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| send_fds(fd.get_ref().as_fd(), bytes, fds)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receive one message and its descriptors; `None` when the peer is
    /// gone.
    pub async fn recv(&self) -> std::io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| recv_fds(fd.get_ref().as_fd())) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Wait until the peer has closed its end (or sent something: the
    /// caller's protocol says whether that may happen). Used to notice a
    /// helper that died.
    pub async fn closed(&self) -> std::io::Result<()> {
        loop {
            let mut guard = self.fd.ready(Interest::READABLE | Interest::ERROR).await?;
            let mut byte = [0u8; 1];
            // SAFETY: recv into a live one-byte buffer with MSG_PEEK: it
            // only reads the queue.
            let rc = unsafe {
                libc::recv(
                    self.fd.get_ref().as_raw_fd(),
                    byte.as_mut_ptr().cast(),
                    1,
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if rc == 0 {
                return Ok(());
            }
            if rc > 0 {
                // A message is waiting: the peer is alive. Let whoever
                // reads it read it; check again later.
                guard.clear_ready();
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            if err.raw_os_error() == Some(libc::ECONNRESET) {
                return Ok(());
            }
            return Err(err);
        }
    }
}

impl AsFd for SeqPacket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

/// A listening seqpacket socket on tokio.
#[derive(Debug)]
pub struct SeqPacketListener {
    fd: AsyncFd<OwnedFd>,
}

impl SeqPacketListener {
    /// Listen at `path` (which must not exist). Must be called within a
    /// tokio runtime.
    pub fn bind(path: &Path) -> std::io::Result<Self> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            None,
        )
        .map_err(io_err)?;
        let addr = UnixAddr::new(path).map_err(io_err)?;
        bind(fd.as_raw_fd(), &addr).map_err(io_err)?;
        listen(&fd, Backlog::new(128).map_err(io_err)?).map_err(io_err)?;
        // SAFETY: as in `SeqPacket::from_fd`.
        let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
        Ok(SeqPacketListener { fd })
    }

    /// The next connection.
    pub async fn accept(&self) -> std::io::Result<SeqPacket> {
        loop {
            let mut guard = self.fd.readable().await?;
            let accepted = guard.try_io(|fd| {
                accept4(
                    fd.get_ref().as_raw_fd(),
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                )
                .map_err(io_err)
            });
            match accepted {
                // SAFETY: accept4 returned a new descriptor nothing else owns.
                Ok(Ok(raw)) => return SeqPacket::from_fd(unsafe { OwnedFd::from_raw_fd(raw) }),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNABORTED) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }
}

/// Set `O_NONBLOCK` on `fd`.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(io_err)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags)).map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_keep_their_bounds_and_descriptors() {
        let (a, b) = pair().unwrap();
        let (r, w) = std::io::pipe().unwrap();
        send_fds(a.as_fd(), b"one", &[w.as_fd()]).unwrap();
        send_fds(a.as_fd(), b"two", &[]).unwrap();
        drop(w);
        let (bytes, fds) = recv_fds(b.as_fd()).unwrap().unwrap();
        assert_eq!(bytes, b"one");
        assert_eq!(fds.len(), 1);
        // The descriptor is the pipe's write end: writing reaches `r`.
        let mut w = std::fs::File::from(fds.into_iter().next().unwrap());
        std::io::Write::write_all(&mut w, b"x").unwrap();
        drop(w);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut { r }, &mut got).unwrap();
        assert_eq!(got, "x");
        let (bytes, fds) = recv_fds(b.as_fd()).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), fds.len()), (&b"two"[..], 0));
        drop(a);
        assert!(recv_fds(b.as_fd()).unwrap().is_none(), "end of connection");
    }

    #[tokio::test]
    async fn listener_and_connection_on_tokio() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = SeqPacketListener::bind(&path).unwrap();
        let client = SeqPacket::connect(&path).unwrap();
        let server = listener.accept().await.unwrap();
        client.send(b"ping", &[]).await.unwrap();
        let (bytes, _) = server.recv().await.unwrap().unwrap();
        assert_eq!(bytes, b"ping");
        let (r, _w) = std::io::pipe().unwrap();
        server.send(b"pong", &[r.as_fd()]).await.unwrap();
        let (bytes, fds) = client.recv().await.unwrap().unwrap();
        assert_eq!((bytes.as_slice(), fds.len()), (&b"pong"[..], 1));
        drop(server);
        client.closed().await.unwrap();
        assert!(client.recv().await.unwrap().is_none());
    }
}
