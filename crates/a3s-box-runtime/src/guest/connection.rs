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
            Ok(stream) => return Ok(split(stream)),
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

/// Frame both ways over a connected socket (the agent socket, or a box
/// client's socket: they speak the same frames).
pub fn split(stream: UnixStream) -> (FrameReader, FrameWriter) {
    let (r, w) = stream.into_split();
    (
        FrameReader {
            inner: BufReader::with_capacity(256 * 1024, r),
        },
        FrameWriter {
            inner: w,
            buf: Vec::new(),
        },
    )
}

/// Reads frames from the guest.
#[derive(Debug)]
pub struct FrameReader {
    inner: BufReader<OwnedReadHalf>,
}

impl FrameReader {
    /// Frames from a buffered socket that may already hold some bytes.
    pub fn from_buffered(inner: BufReader<OwnedReadHalf>) -> Self {
        FrameReader { inner }
    }

    /// The buffered socket, to read something other than frames first.
    pub fn into_inner(self) -> BufReader<OwnedReadHalf> {
        self.inner
    }

    /// Next frame; `Ok(None)` when the guest closed the channel cleanly.
    ///
    /// The whole frame is consumed before its payload is decoded: after an
    /// error that [`FrameError::is_recoverable`] the next call reads the next
    /// frame, and [`FrameError::process`] names the process the bad frame was
    /// for. An oversized payload is dropped through the read buffer, never
    /// allocated. Not cancel-safe: dropping the future mid-frame loses sync.
    pub async fn next(&mut self) -> std::result::Result<Option<Frame>, FrameError> {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        match self.inner.read_exact(&mut header[..1]).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        self.inner.read_exact(&mut header[1..]).await?;
        let header = FrameHeader::parse(&header)?;
        let payload = if header.is_oversized() {
            let want = header.payload_len as u64;
            let mut rest = (&mut self.inner).take(want);
            let skipped = tokio::io::copy_buf(&mut rest, &mut tokio::io::sink()).await?;
            if skipped < want {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            Vec::new()
        } else {
            let mut payload = vec![0u8; header.payload_len];
            self.inner.read_exact(&mut payload).await?;
            payload
        };
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
    /// Frames over the write half of a socket that may have carried
    /// something else first (a sandbox RPC connection).
    pub fn new(inner: OwnedWriteHalf) -> Self {
        FrameWriter {
            inner,
            buf: Vec::new(),
        }
    }

    /// Send one frame.
    pub async fn send(&mut self, frame: &Frame) -> std::result::Result<(), FrameError> {
        self.buf.clear();
        frame.encode(&mut self.buf)?;
        self.inner.write_all(&self.buf).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use a3s_box_core::guest::message::{GuestMessage, Message};
    use a3s_box_core::guest::{StdStream, MAX_FRAME_PAYLOAD_BYTES};

    use super::*;

    /// A reader fed `wire` by a task that then closes its end. A small read
    /// buffer makes frames straddle refills.
    fn reader_of(wire: Vec<u8>) -> FrameReader {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (r, _) = ours.into_split();
        tokio::spawn(async move {
            // The reader may stop early on a fatal error; a broken pipe is fine.
            let _ = theirs.write_all(&wire).await;
        });
        FrameReader {
            inner: BufReader::with_capacity(4096, r),
        }
    }

    async fn next(reader: &mut FrameReader) -> std::result::Result<Option<Frame>, FrameError> {
        tokio::time::timeout(Duration::from_secs(5), reader.next())
            .await
            .expect("the reader hung")
    }

    /// A raw frame with a header declaring `payload`.
    fn raw(kind: u8, process: u32, stream: u8, payload: &[u8]) -> Vec<u8> {
        raw_len(payload.len() + 6, kind, process, stream, payload)
    }

    fn raw_len(len: usize, kind: u8, process: u32, stream: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = (len as u32).to_le_bytes().to_vec();
        out.push(kind);
        out.extend_from_slice(&process.to_le_bytes());
        out.push(stream);
        out.extend_from_slice(payload);
        out
    }

    fn encoded(frames: &[Frame]) -> Vec<u8> {
        let mut out = Vec::new();
        for frame in frames {
            frame.encode(&mut out).unwrap();
        }
        out
    }

    fn data(process: u32, len: usize) -> Frame {
        Frame::Data {
            process,
            stream: StdStream::Stdout,
            bytes: (0..len).map(|i| i as u8).collect(),
        }
    }

    #[tokio::test]
    async fn every_bad_frame_costs_only_itself() {
        let bad: Vec<(Vec<u8>, Option<u32>)> = vec![
            (raw(9, 11, 1, b"abc"), Some(11)),
            (raw(1, 12, 7, b"abc"), Some(12)),
            (raw(3, 13, 1, &[1, 2, 3]), Some(13)),
            (raw(2, 14, 1, b"x"), Some(14)),
            (raw(0, 0, 0, b"{\"guest\":{\"type\":\"nope\"}}"), None),
            (raw(0, 0, 0, b"\xff\xfe"), None),
            (raw(1, 16, 1, &vec![0xa5; 1024 * 1024]), Some(16)),
            (raw(0, 0, 0, &[b' '; MAX_FRAME_PAYLOAD_BYTES + 1]), None),
        ];
        let mut wire = Vec::new();
        let mut good = Vec::new();
        for (i, (bytes, _)) in bad.iter().enumerate() {
            let frame = data(i as u32, 5000 + i);
            frame.encode(&mut wire).unwrap();
            good.push(frame);
            wire.extend_from_slice(bytes);
        }
        let last = Frame::Control(Message::Guest(GuestMessage::Exited {
            process: 1,
            exit_code: 0,
        }));
        last.encode(&mut wire).unwrap();

        let mut reader = reader_of(wire);
        for (frame, (_, process)) in good.iter().zip(&bad) {
            assert_eq!(next(&mut reader).await.unwrap().as_ref(), Some(frame));
            let err = next(&mut reader).await.unwrap_err();
            assert!(err.is_recoverable(), "{err}");
            assert_eq!(err.process(), *process, "{err}");
        }
        assert_eq!(next(&mut reader).await.unwrap(), Some(last));
        assert!(next(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn lengths_that_lose_sync_are_fatal() {
        for wire in [
            raw_len(5, 1, 1, 1, b"rest"),
            raw_len(u32::MAX as usize, 1, 1, 1, b"rest"),
        ] {
            let err = next(&mut reader_of(wire)).await.unwrap_err();
            assert!(!err.is_recoverable(), "{err}");
            assert_eq!(err.process(), None);
        }
    }

    #[tokio::test]
    async fn a_stream_cut_anywhere_gives_an_error_not_a_hang() {
        let frames = [
            data(1, 3),
            Frame::Eof {
                process: 1,
                stream: StdStream::Stderr,
            },
            Frame::Credit {
                process: 2,
                stream: StdStream::Stdin,
                bytes: 7,
            },
            Frame::Control(Message::Guest(GuestMessage::Started { process: 1, pid: 9 })),
        ];
        let mut boundaries = vec![0];
        for frame in &frames {
            boundaries.push(
                boundaries[boundaries.len() - 1] + encoded(std::slice::from_ref(frame)).len(),
            );
        }
        let oversized = raw(1, 3, 1, &[0; MAX_FRAME_PAYLOAD_BYTES + 10]);
        let mut wire = encoded(&frames);
        wire.extend_from_slice(&oversized);
        let end = wire.len();
        // Every cut among the small frames, and some inside the skipped payload.
        let cuts = (0..=boundaries[frames.len()]).chain([end - 1, end - 10, end - 5000]);
        for cut in cuts {
            let mut reader = reader_of(wire[..cut].to_vec());
            let whole = boundaries.iter().filter(|b| **b <= cut).count() - 1;
            for frame in &frames[..whole] {
                assert_eq!(next(&mut reader).await.unwrap().as_ref(), Some(frame));
            }
            match next(&mut reader).await {
                Ok(None) => assert!(boundaries.contains(&cut), "cut at {cut}"),
                Err(e) => assert!(!e.is_recoverable(), "cut at {cut}: {e}"),
                Ok(Some(frame)) => panic!("cut at {cut}: read {frame:?}"),
            }
        }
    }
}
