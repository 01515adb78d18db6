//! The host ↔ guest protocol, shared by the runtime and guest-init.
//!
//! One virtio-serial port (named [`AGENT_PORT_NAME`]) carries a stream of
//! length-prefixed [`Frame`]s. Control frames hold typed JSON [`message`]s;
//! data frames carry the bytes of one process stream (stdin, stdout, stderr)
//! so many processes share the port. Each data stream is flow-controlled by
//! credit: a sender may have at most the credit the receiver granted in
//! flight, starting at [`STREAM_WINDOW_BYTES`], and the receiver returns
//! credit as it consumes bytes. A slow reader therefore stops the writer in
//! the guest instead of growing memory on the host.
//!
//! The guest speaks first with [`message::GuestMessage::Hello`]; the host
//! checks [`PROTOCOL_VERSION`] before sending anything else. See
//! `docs/guest-protocol.md`.

pub mod builtin;
mod frame;
pub mod message;

pub use frame::{
    Frame, FrameError, FrameHeader, StdStream, FRAME_HEADER_BYTES, MAX_SKIPPABLE_PAYLOAD_BYTES,
};

/// Version of the wire protocol; both sides must agree.
pub const PROTOCOL_VERSION: u32 = 6;

/// Name of the virtio-serial port carrying the protocol.
pub const AGENT_PORT_NAME: &str = "a3s.agent";

/// Largest payload of one frame. Larger frames are a protocol error.
pub const MAX_FRAME_PAYLOAD_BYTES: usize = 256 * 1024;

/// Largest data payload a sender puts in one frame.
pub const MAX_DATA_CHUNK_BYTES: usize = 128 * 1024;

/// Initial credit of each data stream, in bytes.
pub const STREAM_WINDOW_BYTES: u32 = 1024 * 1024;
