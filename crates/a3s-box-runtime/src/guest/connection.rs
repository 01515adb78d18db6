//! Reading and writing protocol frames over the agent socket.

use std::path::Path;
use std::time::{Duration, Instant};

use a3s_box_core::guest::{Frame, FrameError, FrameHeader, FRAME_HEADER_BYTES};
use a3s_box_core::{BoxError, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

const CONNECT_RETRY: Duration = Duration::from_millis(2);

/// Connect to the agent socket QEMU listens on, retrying while it does not
/// exist yet. `alive` is asked between tries so a QEMU that died is noticed.
pub async fn connect(
    path: &Path,
    timeout: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<(FrameReader, FrameWriter)> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path).await {
            Ok(stream) => {
                let (r, w) = stream.into_split();
                return Ok((
                    FrameReader {
                        inner: BufReader::with_capacity(256 * 1024, r),
                    },
                    FrameWriter {
                        inner: w,
                        buf: Vec::new(),
                    },
                ));
            }
            Err(e) if Instant::now() < deadline && alive() => {
                tracing::trace!("agent socket not ready: {e}");
                tokio::time::sleep(CONNECT_RETRY).await;
            }
            Err(e) => {
                return Err(BoxError::io(
                    format!("connect to the VM's agent socket {}", path.display()),
                    e,
                ))
            }
        }
    }
}

/// Reads frames from the guest.
#[derive(Debug)]
pub struct FrameReader {
    inner: BufReader<OwnedReadHalf>,
}

impl FrameReader {
    /// Next frame; `Ok(None)` when the guest closed the channel cleanly.
    pub async fn next(&mut self) -> std::result::Result<Option<Frame>, FrameError> {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        match self.inner.read_exact(&mut header[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.inner.read_exact(&mut header[1..]).await?;
        let header = FrameHeader::parse(&header)?;
        let mut payload = vec![0u8; header.payload_len];
        self.inner.read_exact(&mut payload).await?;
        header.finish(payload).map(Some)
    }
}

/// Writes frames to the guest.
#[derive(Debug)]
pub struct FrameWriter {
    inner: OwnedWriteHalf,
    buf: Vec<u8>,
}

impl FrameWriter {
    /// Send one frame.
    pub async fn send(&mut self, frame: &Frame) -> std::result::Result<(), FrameError> {
        self.buf.clear();
        frame.encode(&mut self.buf)?;
        self.inner.write_all(&self.buf).await?;
        Ok(())
    }
}
