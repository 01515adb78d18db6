//! Ending the VM. The kernel runs with `reboot=t` and QEMU with
//! `-no-reboot`, so a reboot makes QEMU exit. PID 1 never returns: if the
//! reboot itself fails it parks forever (exiting would panic the kernel).

use nix::sys::reboot::{reboot, RebootMode};
use nix::unistd::{pause, sync};

use crate::agent::port::Port;
use crate::pid1::log::{debug, warning};
use crate::storage::root::RW;
use crate::storage::trim::{trim, TRIM_BUDGET};

/// Flush every filesystem, give the writable layer's free blocks back to
/// the host, and end the VM.
pub fn power_off() -> ! {
    debug!("sync and power off");
    sync();
    // A tmpfs upper layer (or none yet) cannot be trimmed: nothing to give back.
    match trim(RW, TRIM_BUDGET) {
        Ok(t) => debug!("trimmed {} KiB (complete: {})", t.bytes >> 10, t.complete),
        Err(e) => debug!("no trim of {RW}: {e}"),
    }
    let err = match reboot(RebootMode::RB_AUTOBOOT) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    warning!("reboot failed: {err}; halting here");
    loop {
        pause();
    }
}

/// Unrecoverable error: log it, tell the host if the port is up, power off.
pub fn fatal(port: Option<&Port>, reason: &str) -> ! {
    warning!("fatal: {reason}");
    if let Some(port) = port {
        port.send_fatal(reason);
    }
    power_off()
}
