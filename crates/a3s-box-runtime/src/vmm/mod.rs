//! Hypervisor backends. QEMU (`microvm`) is the one we ship.

pub mod accel;
pub mod qemu;

pub use accel::{Accel, AccelChoice, AccelDecision};
