//! Core types of A3S Box.
//!
//! This crate is pure data: the VMM contract that any hypervisor backend
//! implements ([`vmm`]), the typed, versioned box specs every front end
//! builds and the engine stores ([`spec`]), configuration value types
//! ([`config`], [`units`], [`user`]), and the typed host/guest wire protocol
//! ([`guest`]) shared by the runtime and by guest-init. It has no runtime dependencies, so a third-party
//! VMM can depend on it alone.

pub mod config;
pub mod error;
pub mod event;
pub mod guest;
pub mod spec;
pub mod status;
pub mod time;
pub mod units;
pub mod user;
pub mod vmm;

pub use error::{BoxError, ErrorKind, Result};
pub use vmm::{
    parse_signal_name, Entrypoint, FsMount, InstanceSpec, NetworkInstanceConfig, TeeInstanceConfig,
    VmHandler, VmMetrics, VmmProvider, DEFAULT_SHUTDOWN_TIMEOUT_MS,
};
