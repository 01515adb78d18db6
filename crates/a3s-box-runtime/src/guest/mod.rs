//! The host end of the guest protocol.

mod connection;

pub use connection::{connect, split, FrameReader, FrameWriter};
