//! The host end of the guest protocol.

mod connection;
mod credit;
pub mod seed;

pub use connection::{connect, split, FrameReader, FrameWriter};
pub use credit::{CreditBatch, CREDIT_BATCH_BYTES};
