//! The helper's half that stays in the host's namespaces: a child forked
//! before the helper leaves them, serving two requests over a seqpacket
//! pair:
//!
//! - `socket udp4|udp6|tcp4|tcp6`: a new socket of the host's network
//!   namespace (the DNS server's upstream queries leave from the host, so
//!   a box's `--dns` and the host's `resolv.conf`, loopback resolvers
//!   included, work as on the host; rootless, the helper could not
//!   `setns` back, so sockets are made here and passed over);
//! - `pasta`: start the uplink, pasta, here (it must live in the host's
//!   namespaces), joined to the namespace descriptors passed with the
//!   request (`--netns /proc/self/fd/3`: as root with `--runas 0:0`, pasta
//!   drops the capabilities it would need to open `/proc/PID/ns/net`).
//!
//! When the helper's end closes (it exited or was killed), the agent kills
//! pasta and exits: the uplink never outlives its network.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::Mutex;

use a3s_box_runtime::launch::{HelperSpec, Launcher, Lifetime, Stdio};
use a3s_box_runtime::network::dataplane::seqpacket::{pair, recv_fds, send_fds};
use a3s_box_runtime::network::dns::UpstreamSockets;

/// The agent's socket number in the agent.
const AGENT_FD: RawFd = 3;

/// The helper's handle on its agent.
#[derive(Debug)]
pub struct Agent {
    socket: Mutex<OwnedFd>,
    pid: libc::pid_t,
}

/// How the agent starts pasta.
#[derive(Debug, Clone)]
pub struct PastaCommand {
    /// The program.
    pub program: PathBuf,
    /// Its arguments; the namespace descriptors arrive as 3 (net) and 4
    /// (user, rootless).
    pub args: Vec<String>,
    /// Where its output goes.
    pub log: PathBuf,
}

impl Agent {
    /// Fork the agent. Must run while the process has one thread, before
    /// it leaves the host's namespaces. `launcher` starts pasta.
    pub fn fork(launcher: Launcher) -> io::Result<Agent> {
        let (ours, theirs) = pair()?;
        // SAFETY: the process is single-threaded (the caller's contract),
        // so the child may run ordinary code.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(ours);
                let code = match child_setup(theirs) {
                    Ok(socket) => serve(socket, &launcher),
                    Err(e) => {
                        eprintln!("a3s-box-netd: host agent: {e}");
                        1
                    }
                };
                // SAFETY: _exit ends the child without running the
                // parent's exit handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            pid => Ok(Agent {
                socket: Mutex::new(ours),
                pid,
            }),
        }
    }

    /// The agent's pid.
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    fn call(&self, request: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<(String, Vec<OwnedFd>)> {
        let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
        send_fds(socket.as_fd(), request, fds)?;
        let (bytes, fds) = recv_fds(socket.as_fd())?
            .ok_or_else(|| io::Error::new(io::ErrorKind::BrokenPipe, "the host agent is gone"))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        match text.strip_prefix("err ") {
            Some(reason) => Err(io::Error::other(reason.to_string())),
            None => Ok((text, fds)),
        }
    }

    /// Start pasta joined to `net` (and `user`); its pid.
    pub fn start_pasta(
        &self,
        command: &PastaCommand,
        net: BorrowedFd<'_>,
        user: Option<BorrowedFd<'_>>,
    ) -> io::Result<u32> {
        let mut request = b"pasta\n".to_vec();
        request.extend_from_slice(command.program.as_os_str().as_encoded_bytes());
        request.push(b'\n');
        request.extend_from_slice(command.log.as_os_str().as_encoded_bytes());
        for arg in &command.args {
            request.push(b'\n');
            request.extend_from_slice(arg.as_bytes());
        }
        let fds: Vec<BorrowedFd<'_>> = std::iter::once(net).chain(user).collect();
        let (reply, _) = self.call(&request, &fds)?;
        reply
            .strip_prefix("ok ")
            .and_then(|pid| pid.parse().ok())
            .ok_or_else(|| io::Error::other(format!("bad reply from the host agent: {reply}")))
    }
}

impl UpstreamSockets for Agent {
    fn socket(&self, v6: bool, stream: bool) -> io::Result<OwnedFd> {
        let kind = match (stream, v6) {
            (false, false) => "socket udp4",
            (false, true) => "socket udp6",
            (true, false) => "socket tcp4",
            (true, true) => "socket tcp6",
        };
        let (_, mut fds) = self.call(kind.as_bytes(), &[])?;
        fds.pop()
            .ok_or_else(|| io::Error::other("the host agent sent no socket"))
    }
}

/// In the child: the socket on [`AGENT_FD`], every other descriptor above
/// stdio closed (the helper's lock and its starter's pipe must not be
/// held here).
fn child_setup(socket: OwnedFd) -> io::Result<OwnedFd> {
    let raw = socket.as_raw_fd();
    if raw != AGENT_FD {
        // SAFETY: dup2 onto a fixed number; the old one is closed below.
        if unsafe { libc::dup2(raw, AGENT_FD) } < 0 {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(socket);
    } else {
        std::mem::forget(socket);
        // dup2(fd, fd) would keep close-on-exec; clear it (finding 10).
        // SAFETY: F_SETFD on our own descriptor.
        unsafe { libc::fcntl(AGENT_FD, libc::F_SETFD, 0) };
    }
    // SAFETY: closes descriptors of this child only; every object of the
    // parent that owned one is never used again here (the child ends
    // with _exit).
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            (AGENT_FD + 1) as libc::c_uint,
            libc::c_uint::MAX,
            0,
        )
    };
    // SAFETY: AGENT_FD is the socket dup'd above, owned by nothing else now.
    let socket = unsafe { OwnedFd::from_raw_fd(AGENT_FD) };
    // SAFETY: fcntl on our own descriptor.
    unsafe { libc::fcntl(AGENT_FD, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(socket)
}

/// The agent's loop; its exit code.
fn serve(socket: OwnedFd, launcher: &Launcher) -> i32 {
    let mut pasta = None;
    loop {
        let (request, fds) = match recv_fds(socket.as_fd()) {
            Ok(Some(got)) => got,
            Ok(None) => break,
            Err(e) => {
                eprintln!("a3s-box-netd: host agent: {e}");
                break;
            }
        };
        let text = String::from_utf8_lossy(&request).into_owned();
        let (reply, fd) = match text.split_once('\n').map_or((text.as_str(), ""), |p| p) {
            ("pasta", rest) => match start_pasta(launcher, rest, fds) {
                Ok(helper) => {
                    let reply = format!("ok {}", helper.pid());
                    pasta = Some(helper);
                    (reply, None)
                }
                Err(e) => (format!("err {e}"), None),
            },
            _ => match make_socket(&text) {
                Ok(fd) => ("ok".to_string(), Some(fd)),
                Err(e) => (format!("err {e}"), None),
            },
        };
        let fds: Vec<BorrowedFd<'_>> = fd.iter().map(AsFd::as_fd).collect();
        if send_fds(socket.as_fd(), reply.as_bytes(), &fds).is_err() {
            break;
        }
    }
    // The helper is gone: so is its uplink (dropping a helper that dies
    // with us kills and reaps it).
    drop(pasta);
    0
}

fn make_socket(request: &str) -> io::Result<OwnedFd> {
    let (domain, kind) = match request {
        "socket udp4" => (libc::AF_INET, libc::SOCK_DGRAM),
        "socket udp6" => (libc::AF_INET6, libc::SOCK_DGRAM),
        "socket tcp4" => (libc::AF_INET, libc::SOCK_STREAM),
        "socket tcp6" => (libc::AF_INET6, libc::SOCK_STREAM),
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("unknown request {other:?}"),
            ))
        }
    };
    // SAFETY: plain integer arguments; the result is checked.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn start_pasta(
    launcher: &Launcher,
    request: &str,
    fds: Vec<OwnedFd>,
) -> io::Result<a3s_box_runtime::launch::Helper> {
    let mut lines = request.split('\n');
    let program = lines.next().unwrap_or_default();
    let log = lines.next().unwrap_or_default();
    let mut spec = HelperSpec::new(
        "pasta",
        program,
        "install passt, which has pasta (scripts/install-deps.sh), or use --network none",
    )
    .args(lines)
    .stderr(Stdio::File {
        path: log.into(),
        append: true,
    })
    .lifetime(Lifetime::DieWithParent);
    for (fd, target) in fds.into_iter().zip(3..) {
        spec = spec.fd(fd, target);
    }
    launcher
        .spawn(spec)
        .map_err(|e| io::Error::other(e.to_string()))
}
