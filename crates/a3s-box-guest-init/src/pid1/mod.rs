//! PID 1 itself: the boot sequence from the kernel's hand-over to serving
//! the host, the early mounts, the clock and entropy from the host
//! ([`seed`]), the reaper of every child, powering off, and the console log.

pub mod log;
pub mod mounts;
pub mod power;
pub mod reaper;
pub mod seed;

use std::io::BufReader;

use a3s_box_core::guest::message::{BootSpec, GuestMessage};
use a3s_box_core::guest::{MAX_DATA_CHUNK_BYTES, PROTOCOL_VERSION};

use self::log::{debug, warning};
use crate::agent::port::{self, Port};
use crate::agent::serve;
use crate::agent::session::Session;
use crate::{container, net, storage};

/// Buffer for frames from the host: a whole data chunk per `read`.
const READ_BUFFER_BYTES: usize = MAX_DATA_CHUNK_BYTES;

/// Boot and serve the host until the VM ends; never returns.
pub fn run() -> ! {
    if let Err(e) = reaper::block_sigchld().and_then(|()| mounts::early_mounts()) {
        power::fatal(None, &e.to_string());
    }
    log::set_debug(mounts::debug_requested());
    debug!("kernel filesystems mounted");
    // Bringing `lo` up is kernel work of ~13 ms under TCG: with more than
    // one vCPU it runs beside the hello and the boot spec. It is up before
    // any workload starts.
    let loopback = std::thread::Builder::new()
        .name("lo".into())
        .spawn(net::loopback_up);

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
    debug!("boot spec received for sandbox {}", spec.sandbox);
    if let Some(disk) = spec
        .container
        .as_ref()
        .and_then(|c| c.storage.as_ref())
        .and_then(|s| s.writable.clone())
    {
        storage::devices::mount_disk_early(disk);
    }
    // Before anything runs: the clock and RNG are this VM's own.
    if let Some(clock) = spec.clock {
        if let Err(e) = seed::set_clock(clock) {
            warning!("{e}");
        }
    }
    if let Err(e) = seed::add_entropy(&spec.entropy) {
        warning!("{e}");
    }
    // The interfaces are configured while the first container is made
    // (the virtio-net link comes up meanwhile); its main process starts
    // only once they are.
    let network_ready = spec.network.clone().map(|network| {
        std::thread::Builder::new()
            .name("net-config".into())
            .spawn(move || net::configure(&network))
    });
    if let Err(e) = container::open_self_exe() {
        warning!("built-in helpers unavailable: {e}");
    }
    let BootSpec {
        network,
        container,
        main,
        ..
    } = spec;
    let session = Session::new(port, network);
    reaper::start(&session);
    if let Some(first) = container {
        // Made on a read-only root; the main process makes its own otherwise.
        let main_workdir = main
            .as_ref()
            .filter(|m| m.container.as_deref().is_none_or(|c| c == first.id))
            .map(|m| m.workdir.as_str());
        let workdirs: Vec<&str> = first
            .workdir
            .as_deref()
            .into_iter()
            .chain(main_workdir)
            .collect();
        if let Err(e) = session.create_first(&first, &workdirs) {
            power::fatal(Some(session.port()), &e.to_string());
        }
        debug!("container {} created", first.id);
    }
    match network_ready {
        None => {}
        Some(Err(e)) => power::fatal(Some(session.port()), &format!("configure the network: {e}")),
        Some(Ok(thread)) => match thread.join() {
            Ok(Ok(())) => debug!("network configured"),
            Ok(Err(e)) => power::fatal(Some(session.port()), &e.to_string()),
            Err(_) => power::fatal(Some(session.port()), "configuring the network panicked"),
        },
    }
    let loopback = match loopback {
        Ok(thread) => thread.join().unwrap_or(Ok(())),
        Err(_) => net::loopback_up(),
    };
    if let Err(e) = loopback {
        warning!("{e}");
    }
    if let Some(main) = main {
        session.start_main(&main);
    }
    serve::serve(&session, reader)
}
