//! Frame encoding.
//!
//! ```text
//! +-----------+---------+--------------+-----------+-----------------+
//! | len: u32  | kind:u8 | process: u32 | stream:u8 | payload (len-6) |
//! +-----------+---------+--------------+-----------+-----------------+
//! ```
//! All integers little-endian; `len` counts everything after itself.
//!
//! # Errors and staying in sync
//!
//! A reader consumes a whole frame (header and declared payload) before it
//! decodes the payload, so a frame that is merely wrong (unknown kind or
//! stream, a payload of the wrong size or shape, a payload over
//! [`MAX_FRAME_PAYLOAD_BYTES`]) costs that frame only: the error is
//! [recoverable](FrameError::is_recoverable), names the process the header
//! named ([`FrameError::process`]), and the next read starts at the next
//! frame. An oversized payload is read through a small buffer and dropped,
//! never held in memory. A length shorter than a header, a length over
//! [`MAX_SKIPPABLE_PAYLOAD_BYTES`], or a transport that fails or ends inside a
//! frame leaves nothing to resynchronise on: those errors end the connection.

use std::io::{self, Read, Write};

use super::message::Message;
use super::MAX_FRAME_PAYLOAD_BYTES;

/// Bytes before the payload: len + kind + process + stream.
pub const FRAME_HEADER_BYTES: usize = 4 + 1 + 4 + 1;
const AFTER_LEN: usize = FRAME_HEADER_BYTES - 4;

/// Largest declared payload a reader skips to stay in sync with the stream.
///
/// A payload above [`MAX_FRAME_PAYLOAD_BYTES`] but at most this long is read
/// and thrown away (a peer with a bug, or a newer peer, sent one frame too
/// big). A longer length is taken as proof that the stream is corrupt or
/// hostile rather than one frame too big: skipping it would mean waiting for
/// up to 4 GiB of bytes that belong to no frame, so the reader gives up.
pub const MAX_SKIPPABLE_PAYLOAD_BYTES: usize = 64 * 1024 * 1024;

const KIND_CONTROL: u8 = 0;
const KIND_DATA: u8 = 1;
const KIND_EOF: u8 = 2;
const KIND_CREDIT: u8 = 3;

/// The process a frame of `kind` is about: none for control frames, whose
/// messages name their processes themselves.
fn named_process(kind: u8, process: u32) -> Option<u32> {
    (kind != KIND_CONTROL).then_some(process)
}

/// One of a process's standard streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StdStream {
    /// Standard input (host → guest).
    Stdin = 0,
    /// Standard output (guest → host).
    Stdout = 1,
    /// Standard error (guest → host).
    Stderr = 2,
}

impl StdStream {
    fn from_byte(b: u8, process: u32) -> Result<Self, FrameError> {
        match b {
            0 => Ok(StdStream::Stdin),
            1 => Ok(StdStream::Stdout),
            2 => Ok(StdStream::Stderr),
            stream => Err(FrameError::BadStream { process, stream }),
        }
    }
}

/// One unit on the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// A typed control message.
    Control(Message),
    /// Bytes of one stream of one process.
    Data {
        /// Process the stream belongs to (host-chosen id).
        process: u32,
        /// Which stream.
        stream: StdStream,
        /// The bytes (at most [`MAX_FRAME_PAYLOAD_BYTES`]).
        bytes: Vec<u8>,
    },
    /// The stream ended; no more data follows on it.
    Eof {
        /// Process.
        process: u32,
        /// Stream.
        stream: StdStream,
    },
    /// The receiver consumed `bytes` of a stream; the sender may send as many more.
    Credit {
        /// Process.
        process: u32,
        /// Stream.
        stream: StdStream,
        /// Bytes of credit returned.
        bytes: u32,
    },
}

/// Why a frame could not be decoded or encoded.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The payload exceeds the protocol limit. A reader skipped it.
    #[error(
        "frame payload of {payload_len} bytes exceeds the {MAX_FRAME_PAYLOAD_BYTES}-byte limit"
    )]
    TooLarge {
        /// The process the frame named; `None` for a control frame.
        process: Option<u32>,
        /// The payload length (declared, when reading).
        payload_len: usize,
    },
    /// The declared payload is too long even to skip: the stream is corrupt.
    #[error(
        "frame payload of {0} bytes exceeds the {MAX_SKIPPABLE_PAYLOAD_BYTES}-byte cap; \
         the stream is out of sync"
    )]
    TooLargeToSkip(usize),
    /// The length prefix is smaller than a header.
    #[error("frame length {0} is shorter than a frame header")]
    TooShort(usize),
    /// Unknown frame kind.
    #[error("unknown frame kind {kind} (process {process})")]
    BadKind {
        /// The process the header named.
        process: u32,
        /// The kind byte.
        kind: u8,
    },
    /// Unknown stream number.
    #[error("unknown stream {stream} of process {process}")]
    BadStream {
        /// The process the header named.
        process: u32,
        /// The stream byte.
        stream: u8,
    },
    /// A payload that must have a fixed size did not.
    #[error("malformed {frame} frame of process {process}")]
    Malformed {
        /// The process the header named.
        process: u32,
        /// Which kind of frame (`"credit"`, `"eof"`).
        frame: &'static str,
    },
    /// A control payload is not a valid message.
    #[error("bad control message: {0}")]
    BadMessage(#[from] serde_json::Error),
    /// The transport failed or ended mid-frame.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
}

impl FrameError {
    /// Whether the byte stream is still in sync after this error, so the
    /// caller may drop the one bad frame and read on.
    ///
    /// True for [`TooLarge`](Self::TooLarge), [`BadKind`](Self::BadKind),
    /// [`BadStream`](Self::BadStream), [`Malformed`](Self::Malformed) and
    /// [`BadMessage`](Self::BadMessage): when reading, the whole frame was
    /// consumed and the next read starts at the next frame; when encoding,
    /// nothing was written. False for [`TooShort`](Self::TooShort),
    /// [`TooLargeToSkip`](Self::TooLargeToSkip) and [`Io`](Self::Io): the
    /// reader no longer knows where the next frame starts (or the transport
    /// is gone), so the connection must be dropped.
    pub fn is_recoverable(&self) -> bool {
        match self {
            FrameError::TooLarge { .. }
            | FrameError::BadKind { .. }
            | FrameError::BadStream { .. }
            | FrameError::Malformed { .. }
            | FrameError::BadMessage(_) => true,
            FrameError::TooLargeToSkip(_) | FrameError::TooShort(_) | FrameError::Io(_) => false,
        }
    }

    /// The process the refused frame's header named, so the caller can close
    /// that process's streams with an error. `None` for control frames (their
    /// header names no process) and for errors that are not about one frame.
    pub fn process(&self) -> Option<u32> {
        match self {
            FrameError::TooLarge { process, .. } => *process,
            FrameError::BadKind { process, .. }
            | FrameError::BadStream { process, .. }
            | FrameError::Malformed { process, .. } => Some(*process),
            FrameError::TooLargeToSkip(_)
            | FrameError::TooShort(_)
            | FrameError::BadMessage(_)
            | FrameError::Io(_) => None,
        }
    }
}

/// The fixed part of a frame, read before its payload.
///
/// A reader parses the header, then either reads `payload_len` bytes and
/// passes them to [`FrameHeader::finish`], or, when the header
/// [is oversized](FrameHeader::is_oversized), reads and drops them through a
/// small buffer and calls `finish` with an empty payload, which refuses the
/// frame with [`FrameError::TooLarge`].
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    kind: u8,
    process: u32,
    stream: u8,
    /// Payload bytes that follow the header.
    pub payload_len: usize,
}

impl FrameHeader {
    /// Parse a header. Fails only when the stream cannot be trusted past it:
    /// a length shorter than a header ([`FrameError::TooShort`]) or a payload
    /// over [`MAX_SKIPPABLE_PAYLOAD_BYTES`] ([`FrameError::TooLargeToSkip`]).
    /// A payload over [`MAX_FRAME_PAYLOAD_BYTES`] but within that cap parses;
    /// see [`FrameHeader::is_oversized`].
    pub fn parse(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<Self, FrameError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < AFTER_LEN {
            return Err(FrameError::TooShort(len));
        }
        let payload_len = len - AFTER_LEN;
        if payload_len > MAX_SKIPPABLE_PAYLOAD_BYTES {
            return Err(FrameError::TooLargeToSkip(payload_len));
        }
        Ok(FrameHeader {
            kind: bytes[4],
            process: u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            stream: bytes[9],
            payload_len,
        })
    }

    /// Whether the payload exceeds [`MAX_FRAME_PAYLOAD_BYTES`]: the reader
    /// must skip it without buffering it, and the frame is refused.
    pub fn is_oversized(&self) -> bool {
        self.payload_len > MAX_FRAME_PAYLOAD_BYTES
    }

    /// The process this frame is about; `None` for a control frame.
    pub fn process(&self) -> Option<u32> {
        named_process(self.kind, self.process)
    }

    /// Build the frame from this header and its payload. An
    /// [oversized](FrameHeader::is_oversized) header gives
    /// [`FrameError::TooLarge`] whatever the payload.
    pub fn finish(self, payload: Vec<u8>) -> Result<Frame, FrameError> {
        let process = self.process;
        if self.is_oversized() {
            return Err(FrameError::TooLarge {
                process: self.process(),
                payload_len: self.payload_len,
            });
        }
        match self.kind {
            KIND_CONTROL => Ok(Frame::Control(serde_json::from_slice(&payload)?)),
            KIND_DATA => Ok(Frame::Data {
                process,
                stream: StdStream::from_byte(self.stream, process)?,
                bytes: payload,
            }),
            KIND_EOF => {
                let stream = StdStream::from_byte(self.stream, process)?;
                if !payload.is_empty() {
                    return Err(FrameError::Malformed {
                        process,
                        frame: "eof",
                    });
                }
                Ok(Frame::Eof { process, stream })
            }
            KIND_CREDIT => {
                let stream = StdStream::from_byte(self.stream, process)?;
                let raw: [u8; 4] =
                    payload
                        .as_slice()
                        .try_into()
                        .map_err(|_| FrameError::Malformed {
                            process,
                            frame: "credit",
                        })?;
                Ok(Frame::Credit {
                    process,
                    stream,
                    bytes: u32::from_le_bytes(raw),
                })
            }
            kind => Err(FrameError::BadKind { process, kind }),
        }
    }
}

impl Frame {
    /// The header of a data frame carrying `len` bytes, for senders that
    /// write the payload straight from their own buffer (no copy into a
    /// frame). `None` when `len` is over the payload limit.
    pub fn data_header(
        process: u32,
        stream: StdStream,
        len: usize,
    ) -> Option<[u8; FRAME_HEADER_BYTES]> {
        if len > MAX_FRAME_PAYLOAD_BYTES {
            return None;
        }
        let mut h = [0u8; FRAME_HEADER_BYTES];
        h[..4].copy_from_slice(&((len + AFTER_LEN) as u32).to_le_bytes());
        h[4] = KIND_DATA;
        h[5..9].copy_from_slice(&process.to_le_bytes());
        h[9] = stream as u8;
        Some(h)
    }

    /// Append the wire form of this frame to `out`. On error `out` is left as
    /// it was.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = out.len();
        let encoded = self.append_encoded(out);
        if encoded.is_err() {
            out.truncate(start);
        }
        encoded
    }

    fn append_encoded(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
        let (kind, process, stream) = match self {
            Frame::Control(msg) => {
                serde_json::to_writer(&mut *out, msg)?;
                (KIND_CONTROL, 0, 0)
            }
            Frame::Data {
                process,
                stream,
                bytes,
            } => {
                out.extend_from_slice(bytes);
                (KIND_DATA, *process, *stream as u8)
            }
            Frame::Eof { process, stream } => (KIND_EOF, *process, *stream as u8),
            Frame::Credit {
                process,
                stream,
                bytes,
            } => {
                out.extend_from_slice(&bytes.to_le_bytes());
                (KIND_CREDIT, *process, *stream as u8)
            }
        };
        let payload_len = out.len() - start - FRAME_HEADER_BYTES;
        if payload_len > MAX_FRAME_PAYLOAD_BYTES {
            return Err(FrameError::TooLarge {
                process: named_process(kind, process),
                payload_len,
            });
        }
        let len = (payload_len + AFTER_LEN) as u32;
        out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        out[start + 4] = kind;
        out[start + 5..start + 9].copy_from_slice(&process.to_le_bytes());
        out[start + 9] = stream;
        Ok(())
    }

    /// Encode and write one frame.
    pub fn write_to(&self, w: &mut impl Write) -> Result<(), FrameError> {
        let mut buf = Vec::new();
        self.encode(&mut buf)?;
        w.write_all(&buf)?;
        Ok(())
    }

    /// Read one frame from a blocking reader. `Ok(None)` at a clean end of
    /// stream (before any byte of a frame).
    ///
    /// The whole frame is consumed before its payload is decoded, so after a
    /// [recoverable](FrameError::is_recoverable) error the next call reads
    /// the next frame. At most [`MAX_FRAME_PAYLOAD_BYTES`] are allocated for
    /// a payload, whatever the header claims.
    pub fn read_from(r: &mut impl Read) -> Result<Option<Frame>, FrameError> {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        let mut got = 0;
        while got < header.len() {
            match r.read(&mut header[got..]) {
                Ok(0) if got == 0 => return Ok(None),
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into()),
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        let header = FrameHeader::parse(&header)?;
        let payload = if header.is_oversized() {
            skip(r, header.payload_len)?;
            Vec::new()
        } else {
            let mut payload = vec![0; header.payload_len];
            r.read_exact(&mut payload)?;
            payload
        };
        header.finish(payload).map(Some)
    }
}

/// Read and drop `len` bytes through a small buffer.
fn skip(r: &mut impl Read, len: usize) -> io::Result<()> {
    let skipped = io::copy(&mut r.by_ref().take(len as u64), &mut io::sink())?;
    if skipped < len as u64 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::message::{GuestMessage, Message};
    use super::*;

    fn round_trip(frame: Frame) {
        let mut buf = Vec::new();
        frame.encode(&mut buf).unwrap();
        let back = Frame::read_from(&mut buf.as_slice()).unwrap().unwrap();
        assert_eq!(back, frame);
    }

    fn header(len: u32, kind: u8, process: u32, stream: u8) -> [u8; FRAME_HEADER_BYTES] {
        let mut h = [0u8; FRAME_HEADER_BYTES];
        h[..4].copy_from_slice(&len.to_le_bytes());
        h[4] = kind;
        h[5..9].copy_from_slice(&process.to_le_bytes());
        h[9] = stream;
        h
    }

    /// A raw frame: header for `payload`, then `payload`.
    fn raw(kind: u8, process: u32, stream: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() + AFTER_LEN) as u32;
        let mut out = header(len, kind, process, stream).to_vec();
        out.extend_from_slice(payload);
        out
    }

    fn eof(process: u32) -> Frame {
        Frame::Eof {
            process,
            stream: StdStream::Stdout,
        }
    }

    #[test]
    fn a_data_header_matches_the_encoded_frame() {
        let frame = Frame::Data {
            process: 9,
            stream: StdStream::Stderr,
            bytes: vec![1, 2, 3],
        };
        let mut buf = Vec::new();
        frame.encode(&mut buf).unwrap();
        let header = Frame::data_header(9, StdStream::Stderr, 3).unwrap();
        assert_eq!(buf[..FRAME_HEADER_BYTES], header);
        assert!(Frame::data_header(1, StdStream::Stdout, MAX_FRAME_PAYLOAD_BYTES + 1).is_none());
    }

    #[test]
    fn every_kind_round_trips() {
        round_trip(Frame::Control(Message::Guest(GuestMessage::Hello {
            version: 1,
            kernel: "6.12".into(),
        })));
        round_trip(Frame::Data {
            process: 7,
            stream: StdStream::Stderr,
            bytes: (0..=255).collect(),
        });
        round_trip(Frame::Data {
            process: 7,
            stream: StdStream::Stdin,
            bytes: vec![0xa5; MAX_FRAME_PAYLOAD_BYTES],
        });
        round_trip(eof(1));
        round_trip(Frame::Credit {
            process: u32::MAX,
            stream: StdStream::Stdout,
            bytes: 65536,
        });
    }

    #[test]
    fn clean_eof_is_none_and_torn_frame_is_an_error() {
        assert!(Frame::read_from(&mut &[][..]).unwrap().is_none());
        let mut buf = Vec::new();
        eof(1).encode(&mut buf).unwrap();
        buf.pop();
        let err = Frame::read_from(&mut buf.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::Io(_)));
        assert!(!err.is_recoverable());
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let parse = |len, kind, stream| FrameHeader::parse(&header(len, kind, 4, stream));
        assert!(matches!(
            parse(u32::MAX, 1, 1),
            Err(FrameError::TooLargeToSkip(_))
        ));
        assert!(matches!(parse(2, 1, 1), Err(FrameError::TooShort(2))));
        let over = (MAX_FRAME_PAYLOAD_BYTES + AFTER_LEN + 1) as u32;
        let h = parse(over, 1, 1).unwrap();
        assert!(h.is_oversized());
        assert!(matches!(
            h.finish(vec![]),
            Err(FrameError::TooLarge {
                process: Some(4),
                payload_len,
            }) if payload_len == MAX_FRAME_PAYLOAD_BYTES + 1
        ));
        let h = parse(6, 9, 1).unwrap();
        assert!(matches!(
            h.finish(vec![]),
            Err(FrameError::BadKind {
                process: 4,
                kind: 9
            })
        ));
        let h = parse(6, 1, 5).unwrap();
        assert!(matches!(
            h.finish(vec![]),
            Err(FrameError::BadStream {
                process: 4,
                stream: 5
            })
        ));
        let h = parse(8, 3, 1).unwrap();
        assert!(matches!(
            h.finish(vec![0, 0]),
            Err(FrameError::Malformed {
                process: 4,
                frame: "credit"
            })
        ));
        let h = parse(7, 2, 1).unwrap();
        assert!(matches!(
            h.finish(vec![0]),
            Err(FrameError::Malformed {
                process: 4,
                frame: "eof"
            })
        ));
        let h = parse(9, 0, 0).unwrap();
        assert!(matches!(
            h.finish(b"{x}".to_vec()),
            Err(FrameError::BadMessage(_))
        ));
    }

    #[test]
    fn the_reader_stays_in_sync_after_each_recoverable_error() {
        let bad: [(Vec<u8>, Option<u32>); 7] = [
            (raw(9, 11, 1, b"abc"), Some(11)),
            (raw(KIND_DATA, 12, 7, b"abc"), Some(12)),
            (raw(KIND_CREDIT, 13, 1, &[1, 2, 3]), Some(13)),
            (raw(KIND_EOF, 14, 1, b"x"), Some(14)),
            (raw(KIND_CONTROL, 15, 0, b"{\"host\":{}}"), None),
            (
                raw(KIND_DATA, 16, 1, &[0; MAX_FRAME_PAYLOAD_BYTES + 1]),
                Some(16),
            ),
            (raw(KIND_CONTROL, 0, 0, &[b' '; 300 * 1024]), None),
        ];
        let mut wire = Vec::new();
        for (i, (bytes, _)) in bad.iter().enumerate() {
            eof(i as u32).encode(&mut wire).unwrap();
            wire.extend_from_slice(bytes);
        }
        eof(99).encode(&mut wire).unwrap();

        let mut r = wire.as_slice();
        for (i, (_, process)) in bad.iter().enumerate() {
            assert_eq!(Frame::read_from(&mut r).unwrap(), Some(eof(i as u32)));
            let err = Frame::read_from(&mut r).unwrap_err();
            assert!(err.is_recoverable(), "{err}");
            assert_eq!(err.process(), *process, "{err}");
        }
        assert_eq!(Frame::read_from(&mut r).unwrap(), Some(eof(99)));
        assert!(Frame::read_from(&mut r).unwrap().is_none());
    }

    #[test]
    fn an_oversized_payload_up_to_the_cap_is_skipped_then_over_it_is_fatal() {
        let at_cap = (MAX_SKIPPABLE_PAYLOAD_BYTES + AFTER_LEN) as u32;
        let mut next = Vec::new();
        eof(2).encode(&mut next).unwrap();
        let mut r = io::Cursor::new(header(at_cap, KIND_DATA, 1, 1))
            .chain(io::repeat(7).take(MAX_SKIPPABLE_PAYLOAD_BYTES as u64))
            .chain(next.as_slice());
        let err = Frame::read_from(&mut r).unwrap_err();
        assert!(matches!(err, FrameError::TooLarge { .. }));
        assert_eq!(err.process(), Some(1));
        assert_eq!(Frame::read_from(&mut r).unwrap(), Some(eof(2)));

        // One byte over the cap: refused before reading any payload.
        let mut r = io::Cursor::new(header(at_cap + 1, KIND_DATA, 1, 1)).chain(io::repeat(7));
        let err = Frame::read_from(&mut r).unwrap_err();
        assert!(matches!(err, FrameError::TooLargeToSkip(_)));
        assert!(!err.is_recoverable());
        assert_eq!(err.process(), None);
    }

    #[test]
    fn a_stream_ending_inside_a_skipped_payload_is_fatal() {
        let len = (MAX_FRAME_PAYLOAD_BYTES + AFTER_LEN + 100) as u32;
        let mut r = io::Cursor::new(header(len, KIND_DATA, 1, 1)).chain(io::repeat(0).take(100));
        let err = Frame::read_from(&mut r).unwrap_err();
        assert!(matches!(&err, FrameError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof));
        assert!(!err.is_recoverable());
    }

    #[test]
    fn oversized_payload_is_refused_on_encode() {
        let frame = Frame::Data {
            process: 1,
            stream: StdStream::Stdout,
            bytes: vec![0; MAX_FRAME_PAYLOAD_BYTES + 1],
        };
        let mut buf = vec![1, 2, 3];
        let err = frame.encode(&mut buf).unwrap_err();
        assert!(err.is_recoverable());
        assert_eq!(err.process(), Some(1));
        assert_eq!(
            buf,
            [1, 2, 3],
            "a refused frame leaves the buffer as it was"
        );
    }
}
