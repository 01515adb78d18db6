//! `a3s-box-shim [--listen-fd N] DIR`: the supervisor of one sandbox, a
//! box's (`boxes/<id12>/`) or a pod's (`pods/<id12>/`).
//!
//! Started detached (own session) by the engine (`run -d`, `start`, `pod
//! start`), which binds the sandbox's socket and passes it as descriptor
//! N; the shim serves the sandbox RPC on it and runs the sandbox's actor:
//! it owns the VM, writes the containers' logs and state, applies restart
//! policies. See `a3s_box_runtime::sandbox`. It reads no environment;
//! diagnostics go to stderr, which the starter points at `shim.log`.

use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use a3s_box_runtime::sandbox::shim;

const USAGE: &str = "usage: a3s-box-shim [--listen-fd N] DIR";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let mut listen_fd = None;
    let mut dir = None;
    while let Some(arg) = args.next() {
        if arg == "--listen-fd" {
            let Some(fd) = args
                .next()
                .and_then(|v| v.into_string().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|fd| *fd > 2)
            else {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            };
            listen_fd = Some(fd);
        } else if dir.is_none() {
            dir = Some(PathBuf::from(arg));
        } else {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let Some(dir) = dir else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    // SAFETY: the starter passes this descriptor, a listening unix socket,
    // open for us alone (it was moved onto it before exec) and never uses
    // it again. It is made close-on-exec so QEMU does not inherit it.
    let listener = listen_fd.map(|fd| unsafe {
        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        std::os::unix::net::UnixListener::from_raw_fd(fd)
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("a3s-box-shim: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(shim::run(&dir, listener)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("a3s-box-shim: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}
