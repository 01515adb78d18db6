//! PID 1 itself: the boot sequence from the kernel's hand-over to serving
//! the host, the early mounts, the reaper of every child, powering off, and
//! the console log.

pub mod log;
pub mod mounts;
pub mod power;
pub mod reaper;

use std::io::BufReader;

use a3s_box_core::guest::message::GuestMessage;
use a3s_box_core::guest::{MAX_DATA_CHUNK_BYTES, PROTOCOL_VERSION};

use self::log::{debug, warning};
use crate::agent::port::{self, Port};
use crate::agent::serve;
use crate::agent::session::Session;
use crate::container;
use crate::storage;

/// Buffer for frames from the host: a whole data chunk per `read`.
const READ_BUFFER_BYTES: usize = MAX_DATA_CHUNK_BYTES;

/// Boot and serve the host until the VM ends; never returns.
pub fn run() -> ! {
    if let Err(e) = reaper::block_sigchld().and_then(|()| mounts::early_mounts()) {
        power::fatal(None, &e.to_string());
    }
    log::set_debug(mounts::debug_requested());
    debug!("kernel filesystems mounted");

    let (file, path) = port::open_port().unwrap_or_else(|e| power::fatal(None, &e.to_string()));
    let reader = file
        .try_clone()
        .unwrap_or_else(|e| power::fatal(None, &format!("dup {path}: {e}")));
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let port = Port::new(file);
    let hello = GuestMessage::Hello {
        version: PROTOCOL_VERSION,
        kernel: mounts::kernel_release(),
    };
    if let Err(e) = port.send_message(hello) {
        power::fatal(Some(&port), &e.to_string());
    }
    debug!("hello sent on {path}");

    let spec = serve::await_boot(&port, &mut reader);
    debug!("boot spec received");
    if let Err(e) = storage::root::assemble_root(&spec) {
        power::fatal(Some(&port), &e.to_string());
    }
    debug!("root {} ({}) assembled", spec.root.device, spec.root.fstype);

    if let Err(e) = container::open_self_exe() {
        warning!("built-in helpers unavailable: {e}");
    }
    let session = Session::new(port);
    reaper::start(&session);
    session.start_main(&spec.hostname, &spec.main);
    serve::serve(&session, reader)
}
