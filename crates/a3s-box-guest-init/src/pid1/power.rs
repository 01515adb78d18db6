//! Ending the VM. The kernel runs with `reboot=t` and QEMU with
//! `-no-reboot`, so a reboot makes QEMU exit. PID 1 never returns: if the
//! reboot itself fails it parks forever (exiting would panic the kernel).

use nix::sys::reboot::{reboot, RebootMode};
use nix::unistd::{pause, sync};

use crate::agent::port::Port;
use crate::pid1::log::{debug, warning};
use crate::storage::devices::mounted_disks;
use crate::storage::trim::{trim, TRIM_BUDGET};

/// Flush every filesystem, give the writable disks' free blocks back to
/// the host, and end the VM.
pub fn power_off() -> ! {
    debug!("sync and power off");
    sync();
    // Tmpfs layers cannot be trimmed: nothing to give back. The budget is
    // shared: the host waits a fixed time for the power-off.
    let deadline = std::time::Instant::now() + TRIM_BUDGET;
    for disk in mounted_disks() {
        let budget = deadline.saturating_duration_since(std::time::Instant::now());
        match trim(&disk, budget) {
            Ok(t) => debug!(
                "trimmed {} KiB of {disk} (complete: {})",
                t.bytes >> 10,
                t.complete
            ),
            Err(e) => debug!("no trim of {disk}: {e}"),
        }
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
