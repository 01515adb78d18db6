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
//! - [`manager`]: the operations the CLI and SDK call.

pub mod config;
pub mod copy;
pub mod guest;
pub mod home;
pub mod image;
pub mod manager;
pub mod network;
pub mod rootfs;
pub mod state;
pub mod storage;
pub mod vmm;

/// The A3S Box program `name` installed next to the running one (the CLI,
/// the shim and the virtio-fs daemon ship together), or `name` for a `PATH`
/// lookup when the running program's path is unknown.
pub fn sibling_binary(name: &str) -> std::path::PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| name.into())
}

/// Have the child `cmd` starts be SIGKILLed when the thread that started it
/// exits (`PR_SET_PDEATHSIG`): a VM or daemon never outlives its owner.
pub(crate) fn die_with_parent(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and only
    // calls prctl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
