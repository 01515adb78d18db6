//! Frame encoding.
//!
//! ```text
//! +-----------+---------+--------------+-----------+-----------------+
//! | len: u32  | kind:u8 | process: u32 | stream:u8 | payload (len-6) |
//! +-----------+---------+--------------+-----------+-----------------+
//! ```
//! All integers little-endian; `len` counts everything after itself.

use std::io::{self, Read, Write};

use super::message::Message;
use super::MAX_FRAME_PAYLOAD_BYTES;

/// Bytes before the payload: len + kind + process + stream.
pub const FRAME_HEADER_BYTES: usize = 4 + 1 + 4 + 1;
const AFTER_LEN: usize = FRAME_HEADER_BYTES - 4;

const KIND_CONTROL: u8 = 0;
const KIND_DATA: u8 = 1;
const KIND_EOF: u8 = 2;
const KIND_CREDIT: u8 = 3;

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
    fn from_byte(b: u8) -> Result<Self, FrameError> {
        match b {
            0 => Ok(StdStream::Stdin),
            1 => Ok(StdStream::Stdout),
            2 => Ok(StdStream::Stderr),
            other => Err(FrameError::BadStream(other)),
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
    /// The length prefix exceeds the protocol limit.
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
    /// The length prefix is smaller than a header.
    #[error("frame length {0} is shorter than a frame header")]
    TooShort(usize),
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    BadKind(u8),
    /// Unknown stream number.
    #[error("unknown stream {0}")]
    BadStream(u8),
    /// A payload that must have a fixed size did not.
    #[error("malformed {0} frame")]
    Malformed(&'static str),
    /// A control payload is not a valid message.
    #[error("bad control message: {0}")]
    BadMessage(#[from] serde_json::Error),
    /// The transport failed or ended mid-frame.
    #[error("transport: {0}")]
    Io(#[from] io::Error),
}

/// The fixed part of a frame, read before its payload.
#[derive(Debug, Clone, Copy)]
pub struct FrameHeader {
    kind: u8,
    process: u32,
    stream: u8,
    /// Payload bytes that follow the header.
    pub payload_len: usize,
}

impl FrameHeader {
    /// Parse and bound-check a header.
    pub fn parse(bytes: &[u8; FRAME_HEADER_BYTES]) -> Result<Self, FrameError> {
        let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        if len < AFTER_LEN {
            return Err(FrameError::TooShort(len));
        }
        let payload_len = len - AFTER_LEN;
        if payload_len > MAX_FRAME_PAYLOAD_BYTES {
            return Err(FrameError::TooLarge(payload_len));
        }
        Ok(FrameHeader {
            kind: bytes[4],
            process: u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]),
            stream: bytes[9],
            payload_len,
        })
    }

    /// Build the frame from this header and its payload.
    pub fn finish(self, payload: Vec<u8>) -> Result<Frame, FrameError> {
        let process = self.process;
        match self.kind {
            KIND_CONTROL => Ok(Frame::Control(serde_json::from_slice(&payload)?)),
            KIND_DATA => Ok(Frame::Data {
                process,
                stream: StdStream::from_byte(self.stream)?,
                bytes: payload,
            }),
            KIND_EOF => Ok(Frame::Eof {
                process,
                stream: StdStream::from_byte(self.stream)?,
            }),
            KIND_CREDIT => {
                let raw: [u8; 4] = payload
                    .as_slice()
                    .try_into()
                    .map_err(|_| FrameError::Malformed("credit"))?;
                Ok(Frame::Credit {
                    process,
                    stream: StdStream::from_byte(self.stream)?,
                    bytes: u32::from_le_bytes(raw),
                })
            }
            other => Err(FrameError::BadKind(other)),
        }
    }
}

impl Frame {
    /// Append the wire form of this frame to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), FrameError> {
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
            out.truncate(start);
            return Err(FrameError::TooLarge(payload_len));
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
        let mut payload = vec![0; header.payload_len];
        r.read_exact(&mut payload)?;
        header.finish(payload).map(Some)
    }
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
        round_trip(Frame::Eof {
            process: 1,
            stream: StdStream::Stdin,
        });
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
        Frame::Eof {
            process: 1,
            stream: StdStream::Stdout,
        }
        .encode(&mut buf)
        .unwrap();
        buf.pop();
        assert!(Frame::read_from(&mut buf.as_slice()).is_err());
    }

    #[test]
    fn hostile_headers_are_rejected() {
        let header = |len: u32, kind: u8, stream: u8| {
            let mut h = [0u8; FRAME_HEADER_BYTES];
            h[..4].copy_from_slice(&len.to_le_bytes());
            h[4] = kind;
            h[9] = stream;
            h
        };
        assert!(matches!(
            FrameHeader::parse(&header(u32::MAX, 1, 1)),
            Err(FrameError::TooLarge(_))
        ));
        assert!(matches!(
            FrameHeader::parse(&header(2, 1, 1)),
            Err(FrameError::TooShort(2))
        ));
        let h = FrameHeader::parse(&header(6, 9, 1)).unwrap();
        assert!(matches!(h.finish(vec![]), Err(FrameError::BadKind(9))));
        let h = FrameHeader::parse(&header(6, 1, 5)).unwrap();
        assert!(matches!(h.finish(vec![]), Err(FrameError::BadStream(5))));
        let h = FrameHeader::parse(&header(8, 3, 1)).unwrap();
        assert!(matches!(
            h.finish(vec![0, 0]),
            Err(FrameError::Malformed(_))
        ));
        let h = FrameHeader::parse(&header(9, 0, 0)).unwrap();
        assert!(matches!(
            h.finish(b"{x}".to_vec()),
            Err(FrameError::BadMessage(_))
        ));
    }

    #[test]
    fn oversized_payload_is_refused_on_encode() {
        let frame = Frame::Data {
            process: 1,
            stream: StdStream::Stdout,
            bytes: vec![0; MAX_FRAME_PAYLOAD_BYTES + 1],
        };
        let mut buf = vec![1, 2, 3];
        assert!(frame.encode(&mut buf).is_err());
        assert_eq!(
            buf,
            [1, 2, 3],
            "a refused frame leaves the buffer as it was"
        );
    }
}
