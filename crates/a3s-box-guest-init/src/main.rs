//! a3s-box-guest-init: PID 1 inside an A3S Box VM, which is a sandbox of
//! one or more containers.
//!
//! Boot: kernel filesystems, loopback → agent port → `Hello` → `Boot` (clock,
//! entropy, network) → on the one-container fast path, the first container
//! (its root: image + overlay) and its main process in new namespaces →
//! `Started` or `SpawnFailed`. Then it serves the host (containers, `Exec`,
//! signals, stdin, credit), reaps every child, reports `Exited` after the
//! process's output, and powers off on `Shutdown` or when the host goes
//! away, never because a container's main process ended. It never exits or
//! panics: an unrecoverable error is logged to the console, sent as `Fatal`
//! when the port is up, and ends the VM.
//!
//! Modules by responsibility:
//! - [`pid1`]: the boot sequence, early mounts, clock and entropy, the
//!   reaper, power, the console log;
//! - [`agent`]: the host session over the agent port (frames, process table,
//!   container requests, stdin/stdout streams and their credit);
//! - [`container`]: containers (state, cgroup, ulimits, namespaces) and
//!   spawning processes into them;
//! - [`storage`]: each container's root (image, writable layer, overlay,
//!   mounts, /etc files) and its layers;
//! - [`net`]: the sandbox's network: loopback, interfaces, /etc file contents;
//! - [`helpers`]: the built-in helper programs guest-init runs inside a
//!   container.

mod agent;
mod container;
mod error;
mod helpers;
mod net;
mod pid1;
mod storage;

use std::io::Write;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().map(String::as_str) == Some(container::HELPER_ARGV0) {
        // Re-executed inside a box as one of the built-in helpers.
        if let Some(code) = storage::layers::main(&args[1..]) {
            std::process::exit(code);
        }
        std::process::exit(helpers::main(&args[1..]));
    }
    if nix::unistd::getpid().as_raw() != 1 {
        // Guard against running on a host by mistake: this program reboots.
        let msg = "a3s-box-guest-init: must run as PID 1 inside an A3S Box VM\n";
        let _ = std::io::stderr().write_all(msg.as_bytes());
        std::process::exit(2);
    }
    pid1::run()
}
