//! A supervisor's side of `netd.sock`: reaching the helper of a network
//! (starting it when none runs), attaching a box, asking for a socket
//! connected to a box's port, and moving spare NICs (a namespace's
//! descriptor, lend, release).
//!
//! Starting is race-free without a lock of our own: the helper takes the
//! network's `netd.lock` before anything else and says `busy` when
//! another helper holds it; the starter then connects to that one. A
//! helper that is exiting removes its socket first, and a request it no
//! longer answers (the connection ends before the reply) is sent again to
//! the next helper.

use std::io::{BufRead, BufReader};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use a3s_box_core::spec::Protocol;
use a3s_box_core::{BoxError, Result};

use super::seqpacket::SeqPacket;
use super::wire::{
    decode, encode, AttachRequest, Attachment, ConnectRequest, LendRequest, NamespaceRequest,
    ReleaseRequest, RenameRequest, Reply, Request, NETD_LOG, NETD_SOCKET, PROTOCOL_VERSION,
};
use crate::config::EngineConfig;
use crate::launch::{Environment, HelperSpec, Lifetime, Stdio};
use crate::network::store::NetworkRecord;

/// The descriptor the helper reports on.
const READY_FD: i32 = 3;
/// How long reaching a helper may take, starts included.
const REACH_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest unix socket path.
const MAX_SOCKET_PATH: usize = 107;

/// A box attached to one network: the helper's reply, the box's TAP and
/// spares, and the connection that keeps the box attached while it is
/// open.
#[derive(Debug)]
pub struct Attached {
    /// Where the box is.
    pub attachment: Attachment,
    /// The box's TAP (none when it was adopted), then its spares (for
    /// QEMU).
    pub taps: Vec<OwnedFd>,
    /// Closing it detaches the box.
    pub connection: SeqPacket,
}

/// The helper socket of the network in `dir`.
pub fn socket_path(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(NETD_SOCKET);
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(BoxError::Invalid(format!(
            "network path {} is too long for a unix socket: set A3S_HOME to a shorter directory",
            path.display()
        )));
    }
    Ok(path)
}

/// Attach a box to `network` (its directory `dir`), starting the
/// network's helper if none runs. `parking`: for an adopted TAP, the
/// namespace it goes back to if the attach fails.
pub async fn attach(
    engine: &EngineConfig,
    network: &NetworkRecord,
    dir: &Path,
    request: AttachRequest,
    parking: Option<BorrowedFd<'_>>,
) -> Result<Attached> {
    let bytes = encode(&Request::Attach(request));
    let fds: Vec<BorrowedFd<'_>> = parking.into_iter().collect();
    match reach(engine, network, dir, &bytes, &fds).await? {
        (Reply::Attached(attachment), taps, connection) => Ok(Attached {
            attachment,
            taps,
            connection,
        }),
        (Reply::Error(e), _, _) => Err(e.into()),
        (other, _, _) => Err(unexpected("attach to the network", &other)),
    }
}

/// The network namespace of `network`'s helper (started if none runs).
pub async fn namespace(
    engine: &EngineConfig,
    network: &NetworkRecord,
    dir: &Path,
) -> Result<OwnedFd> {
    let bytes = encode(&Request::Namespace(NamespaceRequest {
        version: PROTOCOL_VERSION,
    }));
    match reach(engine, network, dir, &bytes, &[]).await? {
        (Reply::Namespace, mut fds, _) => fds.pop().ok_or_else(|| {
            BoxError::io(
                "open the network's namespace",
                std::io::Error::other("the helper sent no descriptor"),
            )
        }),
        (Reply::Error(e), _, _) => Err(e.into()),
        (other, _, _) => Err(unexpected("open the network's namespace", &other)),
    }
}

/// The network namespace of the helper at `socket` (a helper the caller
/// holds a connection to: none is started).
pub async fn namespace_at(socket: &Path) -> Result<OwnedFd> {
    let bytes = encode(&Request::Namespace(NamespaceRequest {
        version: PROTOCOL_VERSION,
    }));
    let what = "open the namespace where spare NICs park";
    match exchange(socket, &bytes).await {
        Ok(Some((Reply::Namespace, mut fds, _))) => fds
            .pop()
            .ok_or_else(|| BoxError::io(what, std::io::Error::other("no descriptor in the reply"))),
        Ok(Some((Reply::Error(e), _, _))) => Err(e.into()),
        Ok(Some((other, _, _))) => Err(unexpected(what, &other)),
        Ok(None) => Err(BoxError::io(
            what,
            std::io::Error::other("the helper went away"),
        )),
        Err(e) => Err(BoxError::io(what, e)),
    }
}

/// Ask the helper at `socket`, where the box's spare `spare` is parked,
/// to move it into namespace `to` as `name`.
pub async fn lend(
    socket: &Path,
    box_id: &str,
    spare: &str,
    name: &str,
    to: BorrowedFd<'_>,
) -> Result<()> {
    let bytes = encode(&Request::Lend(LendRequest {
        version: PROTOCOL_VERSION,
        box_id: box_id.to_string(),
        spare: spare.to_string(),
        name: name.to_string(),
    }));
    let what = "move a spare NIC";
    match exchange_with(socket, &bytes, &[to]).await {
        Ok(Some((Reply::Lent, _, _))) => Ok(()),
        Ok(Some((Reply::Error(e), _, _))) => Err(e.into()),
        Ok(Some((other, _, _))) => Err(unexpected(what, &other)),
        Ok(None) => Err(BoxError::io(
            what,
            std::io::Error::other("the helper where spares park went away"),
        )),
        Err(e) => Err(BoxError::io(what, e)),
    }
}

/// On the box's attach connection: take it off the network and park its
/// TAP in namespace `to` as `spare`.
pub async fn release(connection: &SeqPacket, spare: &str, to: BorrowedFd<'_>) -> Result<()> {
    let bytes = encode(&Request::Release(ReleaseRequest {
        version: PROTOCOL_VERSION,
        spare: spare.to_string(),
    }));
    let what = "take the box off the network";
    connection
        .send(&bytes, &[to])
        .await
        .map_err(|e| BoxError::io(what, e))?;
    match connection.recv().await {
        Ok(Some((bytes, _))) => match decode::<Reply>(&bytes).map_err(|e| BoxError::io(what, e))? {
            Reply::Released => Ok(()),
            Reply::Error(e) => Err(e.into()),
            other => Err(unexpected(what, &other)),
        },
        Ok(None) => Err(BoxError::io(
            what,
            std::io::Error::other("the network's helper went away"),
        )),
        Err(e) => Err(BoxError::io(what, e)),
    }
}

fn unexpected(what: &str, reply: &Reply) -> BoxError {
    BoxError::io(
        what.to_string(),
        std::io::Error::other(format!("unexpected reply {reply:?}")),
    )
}

/// Send `bytes` (with `fds`) to the helper of `network`, starting it if
/// none runs, until one answers.
async fn reach(
    engine: &EngineConfig,
    network: &NetworkRecord,
    dir: &Path,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(Reply, Vec<OwnedFd>, SeqPacket)> {
    let socket = socket_path(dir)?;
    let deadline = Instant::now() + REACH_TIMEOUT;
    loop {
        match exchange_with(&socket, bytes, fds).await {
            Ok(Some(answer)) => return Ok(answer),
            // The helper went away before answering: it was exiting.
            Ok(None) => {}
            Err(e) if is_absent(&e) => start(engine, network, dir).await?,
            Err(e) => {
                return Err(BoxError::io(
                    format!("reach the helper of network {}", network.name),
                    e,
                ))
            }
        }
        if Instant::now() >= deadline {
            return Err(BoxError::Unavailable(format!(
                "the helper of network {} did not answer within {REACH_TIMEOUT:?} (see {})",
                network.name,
                dir.join(NETD_LOG).display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A socket connected from the network's namespace to `port` of the box.
pub async fn connect(
    socket: &Path,
    box_id: &str,
    port: u16,
    protocol: Protocol,
) -> Result<OwnedFd> {
    let bytes = encode(&Request::Connect(ConnectRequest {
        version: PROTOCOL_VERSION,
        box_id: box_id.to_string(),
        port,
        protocol,
    }));
    let what = || format!("connect to port {port}/{protocol} of the box");
    match exchange(socket, &bytes).await {
        Ok(Some((Reply::Connected, mut fds, _))) => fds
            .pop()
            .ok_or_else(|| BoxError::io(what(), std::io::Error::other("no socket in the reply"))),
        Ok(Some((Reply::Error(e), _, _))) => Err(e.into()),
        Ok(Some((other, _, _))) => Err(BoxError::io(
            what(),
            std::io::Error::other(format!("unexpected reply {other:?}")),
        )),
        Ok(None) => Err(BoxError::io(
            what(),
            std::io::Error::other("the network's helper went away"),
        )),
        Err(e) => Err(BoxError::io(what(), e)),
    }
}

/// Tell the helper at `socket` that the box is now called `name` (its DNS
/// records there follow). A network whose helper is not running has no
/// records to change: that is not an error.
pub async fn rename(socket: &Path, box_id: &str, name: &str) -> Result<()> {
    let bytes = encode(&Request::Rename(RenameRequest {
        version: PROTOCOL_VERSION,
        box_id: box_id.to_string(),
        name: name.to_string(),
    }));
    let what = "rename the box on its network";
    match exchange(socket, &bytes).await {
        Ok(Some((Reply::Renamed, _, _))) => Ok(()),
        Ok(Some((Reply::Error(e), _, _))) => Err(e.into()),
        Ok(Some((other, _, _))) => Err(BoxError::io(
            what,
            std::io::Error::other(format!("unexpected reply {other:?}")),
        )),
        Ok(None) => Ok(()),
        Err(e) if is_absent(&e) => Ok(()),
        Err(e) => Err(BoxError::io(what, e)),
    }
}

/// One request and its reply; `None` when the helper closed the
/// connection without a reply.
async fn exchange(
    socket: &Path,
    request: &[u8],
) -> std::io::Result<Option<(Reply, Vec<OwnedFd>, SeqPacket)>> {
    exchange_with(socket, request, &[]).await
}

/// [`exchange`] with descriptors attached to the request.
async fn exchange_with(
    socket: &Path,
    request: &[u8],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<Option<(Reply, Vec<OwnedFd>, SeqPacket)>> {
    let conn = SeqPacket::connect(socket)?;
    if let Err(e) = conn.send(request, fds).await {
        return match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => Ok(None),
            _ => Err(e),
        };
    }
    match conn.recv().await {
        Ok(Some((bytes, fds))) => Ok(Some((decode(&bytes)?, fds, conn))),
        Ok(None) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
        Err(e) => Err(e),
    }
}

/// No helper listens there.
fn is_absent(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT) | Some(libc::ECONNREFUSED)
    )
}

/// Start the network's helper and wait for its word: `ok` (it serves),
/// `busy` (another one does: connect to it).
async fn start(engine: &EngineConfig, network: &NetworkRecord, dir: &Path) -> Result<()> {
    let (engine, network, dir) = (engine.clone(), network.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || start_blocking(&engine, &network, &dir))
        .await
        .map_err(|e| BoxError::io("start the network helper", std::io::Error::other(e)))?
}

fn start_blocking(engine: &EngineConfig, network: &NetworkRecord, dir: &Path) -> Result<()> {
    let (read_end, write_end) = std::io::pipe().map_err(|e| BoxError::io("pipe", e))?;
    let grace = match network.is_default() {
        true => engine.network.default_grace_secs,
        false => engine.network.grace_secs,
    };
    let mut spec = HelperSpec::new(
        "a3s-box-netd",
        &engine.network.netd,
        "install it beside a3s-box (make setup) or set A3S_BOX_NETD",
    )
    .arg(dir)
    .arg("--pasta")
    .arg(&engine.network.pasta)
    .arg("--grace-secs")
    .arg(grace.to_string())
    .env(Environment::clean().set("A3S_NETD_READY_FD", READY_FD.to_string()))
    .stderr(Stdio::File {
        path: dir.join(NETD_LOG),
        append: true,
    })
    .lifetime(Lifetime::Detached)
    .fd(write_end.into(), READY_FD);
    if !engine.network.host_gateway {
        spec = spec.arg("--no-map-gw");
    }
    let helper = engine.launcher().spawn(spec)?;
    helper.reap_in_background();
    let mut line = String::new();
    BufReader::new(read_end)
        .read_line(&mut line)
        .map_err(|e| BoxError::io("read the network helper's status", e))?;
    let line = line.trim_end();
    match line {
        "ok" | "busy" => Ok(()),
        _ => {
            let reason = match line.strip_prefix("fail ") {
                Some(reason) => reason.to_string(),
                None => format!(
                    "it exited without a word: {}",
                    crate::manager::log_tail(&dir.join(NETD_LOG), 5).trim()
                ),
            };
            Err(BoxError::Unavailable(format!(
                "network {}: its helper (a3s-box-netd) could not start: {reason}",
                network.name
            )))
        }
    }
}
