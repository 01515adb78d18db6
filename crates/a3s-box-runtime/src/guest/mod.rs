//! The host end of the guest protocol.

mod connection;

pub use connection::{connect, FrameReader, FrameWriter};
