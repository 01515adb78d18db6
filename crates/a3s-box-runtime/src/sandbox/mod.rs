//! Sandboxes: one VM and the containers it runs, owned by one actor.
//!
//! ```text
//! engine (any front end)  ──sandbox RPC──▶  sandbox actor  ──▶  VMM (QEMU) + guest agent
//!   client.rs                server.rs        actor/              qemu.rs / vmm.rs
//! ```
//!
//! - [`actor`]: the one task that owns a sandbox's VM, guest session,
//!   container table and client router, and alone writes their state;
//! - [`rpc`]: the typed, versioned requests, replies and events on
//!   `<sandbox dir>/sandbox.sock`; [`server`] serves them, [`client`] asks;
//! - [`router`]: who gets which frames on the one guest channel;
//! - [`vmm`]: what the actor needs of a hypervisor; [`qemu`] is QEMU;
//! - [`container`]: a container as the actor keeps it; [`pods`]: the pod
//!   store; [`shim`]: what `a3s-box-shim` runs.
//!
//! A standalone box is a sandbox with one container, supervised by its own
//! shim (`boxes/<id12>/`); a pod is a sandbox whose containers are boxes
//! naming it, supervised by the pod's shim (`pods/<id12>/`). The
//! foreground `run --rm` runs the same actor on a task of the CLI.

pub mod actor;
pub mod client;
pub mod container;
#[cfg(any(test, feature = "testing"))]
pub mod fake;
pub mod pods;
pub mod qemu;
pub mod router;
pub mod rpc;
pub mod server;
pub mod shim;
pub mod spawn;
#[cfg(test)]
mod tests;
pub mod vmm;

pub use actor::{
    Actor, Connection, Handle, Kind, Outcome, PodSetup, Records, Setup, Timing, EXIT_KILLED,
};
pub use client::SandboxClient;
pub use container::{ContainerSetup, Discard, OutputSink, RunOptions};
pub use rpc::{Reply, Request, SandboxEvent, WaitCondition, SANDBOX_SOCKET};
