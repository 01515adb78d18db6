//! The guest end of the agent port: finding and opening it, and one writer
//! shared by every thread.
//!
//! Frames are encoded outside the lock and written whole under it, so frames
//! from the forwarders, the stdin writers, the reaper and the main thread
//! never interleave. Reads happen on the main thread through a separate
//! handle to the same open file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{GuestMessage, Message};
use a3s_box_core::guest::{Frame, StdStream, AGENT_PORT_NAME};
use nix::errno::Errno;

use crate::error::{Context, InitError};

const VIRTIO_PORTS: &str = "/sys/class/virtio-ports";
/// How long to wait for the agent port to appear (virtio-serial adds ports
/// asynchronously, when the host side announces them).
const PORT_WAIT: Duration = Duration::from_secs(5);
const PORT_POLL: Duration = Duration::from_millis(10);

/// How long the fatal path waits for another thread to finish its write.
const FATAL_LOCK_WAIT: Duration = Duration::from_secs(1);

/// The write half of the agent port.
#[derive(Debug)]
pub struct Port {
    writer: Mutex<File>,
}

impl Port {
    /// Wrap the open port.
    pub fn new(file: File) -> Self {
        Port {
            writer: Mutex::new(file),
        }
    }

    fn lock(&self) -> MutexGuard<'_, File> {
        // panic = "abort": a poisoned lock cannot happen in the release
        // build; in tests the data is a file handle, still usable.
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Send one frame.
    pub fn send(&self, frame: &Frame) -> Result<(), InitError> {
        let mut buf = Vec::new();
        frame.encode(&mut buf)?;
        let mut w = self.lock();
        w.write_all(&buf).map_err(|e| InitError::Port(e.into()))?;
        Ok(())
    }

    /// Send `bytes` of `stream` as one data frame, written straight from the
    /// caller's buffer (the frame's header, then the payload, under the lock).
    pub fn send_data(
        &self,
        process: u32,
        stream: StdStream,
        bytes: &[u8],
    ) -> Result<(), InitError> {
        let header = Frame::data_header(process, stream, bytes.len())
            .ok_or_else(|| InitError::Protocol(format!("{} bytes exceed a frame", bytes.len())))?;
        let mut w = self.lock();
        w.write_all(&header)
            .and_then(|()| w.write_all(bytes))
            .map_err(|e| InitError::Port(e.into()))
    }

    /// Send a guest control message.
    pub fn send_message(&self, msg: GuestMessage) -> Result<(), InitError> {
        self.send(&Frame::Control(Message::Guest(msg)))
    }

    /// Best-effort `Fatal`: gives up when another thread holds the port for
    /// longer than [`FATAL_LOCK_WAIT`] (a wedged host).
    pub fn send_fatal(&self, reason: &str) {
        let frame = Frame::Control(Message::Guest(GuestMessage::Fatal {
            reason: reason.to_string(),
        }));
        let mut buf = Vec::new();
        if frame.encode(&mut buf).is_err() {
            return;
        }
        let deadline = Instant::now() + FATAL_LOCK_WAIT;
        loop {
            match self.writer.try_lock() {
                Ok(mut w) => {
                    let _ = w.write_all(&buf);
                    return;
                }
                Err(TryLockError::Poisoned(p)) => {
                    let _ = p.into_inner().write_all(&buf);
                    return;
                }
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    thread::sleep(Duration::from_millis(5));
                }
                Err(TryLockError::WouldBlock) => return,
            }
        }
    }
}

/// The entry of `ports_dir` (`/sys/class/virtio-ports`) whose `name` is
/// `wanted`, e.g. `vport0p1`.
pub fn find_port(ports_dir: &Path, wanted: &str) -> io::Result<Option<String>> {
    let entries = match fs::read_dir(ports_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let Ok(name) = fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if name.trim_end_matches('\n') == wanted {
            return Ok(Some(entry.file_name().to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

/// Find and open the agent port, waiting up to [`PORT_WAIT`] for it.
pub fn open_port() -> Result<(File, String), InitError> {
    let deadline = Instant::now() + PORT_WAIT;
    loop {
        let found = find_port(Path::new(VIRTIO_PORTS), AGENT_PORT_NAME)
            .context(|| format!("scan {VIRTIO_PORTS}"))?;
        if let Some(dev) = found {
            let path = format!("/dev/{dev}");
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => return Ok((file, path)),
                Err(e) if e.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {}
                Err(e) => return Err(e).context(|| format!("open {path}")),
            }
        } else if Instant::now() >= deadline {
            return Err(InitError::Sys {
                what: format!("no virtio port named {AGENT_PORT_NAME} in {VIRTIO_PORTS}"),
                errno: Errno::ENODEV,
            });
        }
        thread::sleep(PORT_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_by_name() {
        let dir = std::env::temp_dir().join(format!("a3s-ports-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        for (port, name) in [("vport0p0", "other\n"), ("vport0p1", "a3s.agent\n")] {
            fs::create_dir_all(dir.join(port)).unwrap();
            fs::write(dir.join(port).join("name"), name).unwrap();
        }
        fs::create_dir_all(dir.join("vport0p2")).unwrap(); // no name file
        assert_eq!(
            find_port(&dir, AGENT_PORT_NAME).unwrap().as_deref(),
            Some("vport0p1")
        );
        assert_eq!(find_port(&dir, "nope").unwrap(), None);
        assert_eq!(find_port(&dir.join("missing"), "x").unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }
}
