//! The QEMU `microvm` backend.
//!
//! - [`cmdline`] turns a spec into QEMU arguments (pure, snapshot-tested);
//! - [`process`] owns a running QEMU and implements [`VmHandler`];
//! - [`provider`] implements [`VmmProvider`];
//! - [`qmp`] talks to a running QEMU (pause, resume).
//!
//! [`VmHandler`]: a3s_box_core::VmHandler
//! [`VmmProvider`]: a3s_box_core::VmmProvider

pub mod cmdline;
pub mod process;
pub mod provider;
pub mod qmp;

pub use cmdline::{QemuArgs, QemuConfig};
pub use process::QemuHandler;
pub use provider::QemuProvider;
