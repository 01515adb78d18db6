//! The QEMU `microvm` backend.
//!
//! - [`provider`] implements [`VmmProvider`]: an [`InstanceSpec`] and a
//!   [`QemuConfig`] become a [`VmPlan`](crate::vmm::VmPlan), checked and started;
//! - [`cmdline`] turns a plan into QEMU arguments (pure, snapshot-tested);
//! - [`process`] owns a running QEMU and implements [`VmHandler`], with
//!   QEMU's own output kept per start for error messages;
//! - [`qmp`] talks to a running QEMU: commands with arguments, events.
//!
//! [`VmHandler`]: a3s_box_core::VmHandler
//! [`VmmProvider`]: a3s_box_core::VmmProvider
//! [`InstanceSpec`]: a3s_box_core::InstanceSpec

pub mod cmdline;
pub mod process;
pub mod provider;
pub mod qmp;

pub use cmdline::QemuArgs;
pub use process::QemuHandler;
pub use provider::{QemuConfig, QemuProvider};
