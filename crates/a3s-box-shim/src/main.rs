//! `a3s-box-shim BOX_DIR`: the per-box supervisor.
//!
//! Started detached (own session) by `a3s-box run -d` / `start`. It owns the
//! box's QEMU, writes its log, records its exits and applies its restart
//! policy; see `a3s_box_runtime::manager::supervise`. Diagnostics go to
//! stderr, which the starter points at `shim.log` in the box directory.

use std::fs::File;
use std::os::fd::FromRawFd;
use std::path::PathBuf;
use std::process::ExitCode;

use a3s_box_runtime::manager::supervise;

const ENV_READY_FD: &str = "A3S_SHIM_READY_FD";

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: a3s-box-shim BOX_DIR");
        return ExitCode::from(2);
    };
    let ready = std::env::var(ENV_READY_FD)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        // SAFETY: the starter passes this descriptor open for us alone (it
        // dup2'd its pipe onto it before exec) and never uses it again. It is
        // made close-on-exec so QEMU does not inherit it and keep the pipe open.
        .map(|fd| unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            File::from_raw_fd(fd)
        });
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
    match runtime.block_on(supervise(&dir, ready)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("a3s-box-shim: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}
