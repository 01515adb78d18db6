//! The A3S Box runtime: everything between the CLI and the VM.
//!
//! - [`vmm`]: hypervisor backends (QEMU `microvm`) and accelerator choice;
//! - [`guest`]: the host end of the guest protocol;
//! - [`image`]: OCI references, registry client, image store, safe layer unpacking, image config;
//! - [`rootfs`]: root filesystem images;
//! - [`storage`]: writable layers, bind mounts, volumes, tmpfs;
//! - [`home`]: where state and boot assets live;
//! - [`network`]: named networks, address leases, published ports, the
//!   embedded DNS server and the egress firewall;
//! - [`launch`]: the one way host helper processes (QEMU, daemons, the shim) are started;
//! - [`sandbox`]: the sandbox actor that owns a running VM, its RPC, pods;
//! - [`manager`]: the operations the CLI and SDK call.

pub mod config;
pub mod copy;
pub mod guest;
pub mod home;
pub mod image;
pub mod launch;
pub mod manager;
pub mod network;
pub mod rootfs;
pub mod sandbox;
pub mod state;
pub mod storage;
pub mod vmm;
