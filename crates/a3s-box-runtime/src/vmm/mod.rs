//! Hypervisor backends. QEMU (`microvm`) is the one we ship.
//!
//! - [`accel`]: choosing KVM or software emulation;
//! - [`plan`]: what a VM is made of ([`VmPlan`]: machine, memory, devices),
//!   pure data with its own rules;
//! - [`kernel`] and [`host`]: what is checked before a VM starts (a bootable
//!   kernel image; memory and CPUs the host can give);
//! - [`qemu`]: the QEMU backend (plan → command line, process, QMP).

pub mod accel;
pub mod host;
pub mod kernel;
pub mod plan;
pub mod qemu;

pub use accel::{Accel, AccelChoice, AccelDecision};
pub use plan::{Device, MemoryBackend, VmPlan};
