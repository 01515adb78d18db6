//! Console logging. PID 1's stderr is `/dev/console` (the serial console).
//! Milestones are logged only when the kernel command line has `a3s.debug`;
//! warnings and fatal errors always are. A failed console write is ignored:
//! PID 1 must not die because the console is gone.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// The kernel command-line word that turns on milestone logging.
pub const DEBUG_FLAG: &str = "a3s.debug";

/// Whether a kernel command line asks for milestone logging.
pub fn cmdline_wants_debug(cmdline: &str) -> bool {
    cmdline.split_ascii_whitespace().any(|w| w == DEBUG_FLAG)
}

/// Turn milestone logging on or off.
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

/// Whether milestone logging is on.
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Milliseconds since boot (`CLOCK_BOOTTIME`), to time milestones.
fn uptime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

/// Write one line to the console, in one `write` so threads do not interleave.
pub fn console(args: fmt::Arguments<'_>) {
    let ms = uptime_ms();
    let line = format!("[{:>5}.{:03}] a3s-init: {args}\n", ms / 1000, ms % 1000);
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// Log a milestone when `a3s.debug` is on.
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::pid1::log::debug_enabled() {
            $crate::pid1::log::console(format_args!($($arg)*));
        }
    };
}

/// Log a line unconditionally.
macro_rules! warning {
    ($($arg:tt)*) => {
        $crate::pid1::log::console(format_args!($($arg)*))
    };
}

pub(crate) use {debug, warning};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_flag_is_a_whole_word() {
        assert!(cmdline_wants_debug("console=ttyS0 a3s.debug quiet\n"));
        assert!(cmdline_wants_debug("a3s.debug"));
        assert!(!cmdline_wants_debug("console=ttyS0 a3s.debugger"));
        assert!(!cmdline_wants_debug("x=a3s.debug"));
    }
}
