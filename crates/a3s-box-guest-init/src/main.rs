//! a3s-box-guest-init: PID 1 inside an A3S Box VM.
//!
//! Boot: kernel filesystems → agent port → `Hello` → `Boot` spec → box root
//! (overlay) → the main process in its own namespaces → `Started` or
//! `SpawnFailed`. Then it serves the host (signals, stdin, credit), reaps
//! every child, reports `Exited` after the process's output, and powers off
//! on `Shutdown` or when the host goes away. It never exits or panics: an
//! unrecoverable error is logged to the console, sent as `Fatal` when the
//! port is up, and ends the VM.

mod boot;
mod credit;
mod error;
mod helper;
mod layers;
mod log;
mod mount_file;
mod populate;
mod port;
mod power;
mod process;
mod reaper;
mod serve;
mod session;
mod storage;
mod streams;
mod trim;

use std::io::{BufReader, Write};

use a3s_box_core::guest::message::GuestMessage;
use a3s_box_core::guest::{MAX_DATA_CHUNK_BYTES, PROTOCOL_VERSION};

use crate::log::{debug, warning};
use crate::port::Port;
use crate::session::Session;

/// Buffer for frames from the host: a whole data chunk per `read`.
const READ_BUFFER_BYTES: usize = MAX_DATA_CHUNK_BYTES;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.first().map(String::as_str) == Some(process::HELPER_ARGV0) {
        // Re-executed inside a box as one of the built-in helpers.
        if let Some(code) = layers::main(&args[1..]) {
            std::process::exit(code);
        }
        std::process::exit(helper::main(&args[1..]));
    }
    if nix::unistd::getpid().as_raw() != 1 {
        // Guard against running on a host by mistake: this program reboots.
        let msg = "a3s-box-guest-init: must run as PID 1 inside an A3S Box VM\n";
        let _ = std::io::stderr().write_all(msg.as_bytes());
        std::process::exit(2);
    }
    if let Err(e) = reaper::block_sigchld().and_then(|()| boot::early_mounts()) {
        power::fatal(None, &e.to_string());
    }
    log::set_debug(boot::debug_requested());
    debug!("kernel filesystems mounted");

    let (file, path) = boot::open_port().unwrap_or_else(|e| power::fatal(None, &e.to_string()));
    let reader = file
        .try_clone()
        .unwrap_or_else(|e| power::fatal(None, &format!("dup {path}: {e}")));
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let port = Port::new(file);
    let hello = GuestMessage::Hello {
        version: PROTOCOL_VERSION,
        kernel: boot::kernel_release(),
    };
    if let Err(e) = port.send_message(hello) {
        power::fatal(Some(&port), &e.to_string());
    }
    debug!("hello sent on {path}");

    let spec = serve::await_boot(&port, &mut reader);
    debug!("boot spec received");
    if let Err(e) = boot::assemble_root(&spec) {
        power::fatal(Some(&port), &e.to_string());
    }
    debug!("root {} ({}) assembled", spec.root.device, spec.root.fstype);

    if let Err(e) = process::open_self_exe() {
        warning!("built-in helpers unavailable: {e}");
    }
    let session = Session::new(port);
    reaper::start(&session);
    session.start_main(&spec.hostname, &spec.main);
    serve::serve(&session, reader)
}
