//! A supervisor's side of `netd.sock`: reaching the helper of a network
//! (starting it when none runs), attaching a box, and asking for a socket
//! connected to a box's port.
//!
//! Starting is race-free without a lock of our own: the helper takes the
//! network's `netd.lock` before anything else and says `busy` when
//! another helper holds it; the starter then connects to that one. A
//! helper that is exiting removes its socket first, and a request it no
//! longer answers (the connection ends before the reply) is sent again to
//! the next helper.

use std::io::{BufRead, BufReader};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use a3s_box_core::spec::Protocol;
use a3s_box_core::{BoxError, Result};

use super::seqpacket::SeqPacket;
use super::wire::{
    decode, encode, AttachRequest, Attachment, ConnectRequest, RenameRequest, Reply, Request,
    NETD_LOG, NETD_SOCKET, PROTOCOL_VERSION,
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

/// A box attached to one network: the helper's reply, the box's TAP, and
/// the connection that keeps the box attached while it is open.
#[derive(Debug)]
pub struct Attached {
    /// Where the box is.
    pub attachment: Attachment,
    /// The box's TAP (for QEMU).
    pub tap: OwnedFd,
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
/// network's helper if none runs.
pub async fn attach(
    engine: &EngineConfig,
    network: &NetworkRecord,
    dir: &Path,
    request: AttachRequest,
) -> Result<Attached> {
    let socket = socket_path(dir)?;
    let bytes = encode(&Request::Attach(request));
    let deadline = Instant::now() + REACH_TIMEOUT;
    loop {
        match exchange(&socket, &bytes).await {
            Ok(Some((Reply::Attached(attachment), mut fds, connection))) => {
                let tap = fds.pop().ok_or_else(|| {
                    BoxError::io(
                        "attach to the network",
                        std::io::Error::other("the helper sent no TAP"),
                    )
                })?;
                return Ok(Attached {
                    attachment,
                    tap,
                    connection,
                });
            }
            Ok(Some((Reply::Error(e), _, _))) => return Err(e.into()),
            Ok(Some((other, _, _))) => {
                return Err(BoxError::io(
                    "attach to the network",
                    std::io::Error::other(format!("unexpected reply {other:?}")),
                ))
            }
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
    let conn = SeqPacket::connect(socket)?;
    if let Err(e) = conn.send(request, &[]).await {
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
