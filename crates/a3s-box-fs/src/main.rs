//! `a3s-box-fs`: the virtio-fs daemon of A3S Box.
//!
//! One daemon serves one host directory (or one host file) to one VM over a
//! vhost-user socket. It is built on the `virtiofsd` crate's passthrough
//! filesystem, sandbox and seccomp filter, with what A3S Box needs on top:
//!
//! - files skip the per-`close` `FLUSH` round trip ([`share`]);
//! - `--seal-after-fill` serves a share writable until the guest seals it,
//!   read-only from then on: a new read-only volume filled from the image
//!   ([`seal`]);
//! - `--read-only` is enforced by the host kernel (a read-only bind mount in
//!   the daemon's own mount namespace), not only by refusing FUSE writes;
//! - `--file` serves a single host file: the share is a tmpfs holding only
//!   that file, so the guest can reach nothing else of its directory
//!   ([`view`]).
//!
//! The daemon runs as root, enters new mount, PID and network namespaces
//! pivoted into the share, drops every capability it does not need and
//! installs a seccomp filter before it reads the first request.

mod logger;
mod seal;
mod share;
mod view;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use vhost::vhost_user::Listener;
use vhost_user_backend::VhostUserDaemon;
use virtiofsd::filesystem::{FileSystem, SerializableFileSystem};
use virtiofsd::passthrough::read_only::PassthroughFsRo;
use virtiofsd::passthrough::{CachePolicy, Config, PassthroughFs};
use virtiofsd::sandbox::{Sandbox, SandboxMode};
use virtiofsd::seccomp::{enable_seccomp, SeccompAction};
use vm_memory::{GuestMemoryAtomic, GuestMemoryMmap};

use share::Share;

/// Serve a host directory (or file) to a VM over virtio-fs.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// vhost-user socket to listen on (created; an old one is replaced).
    #[arg(long)]
    socket_path: PathBuf,
    /// Directory to serve. With `--file`, an empty directory the daemon
    /// mounts its one-file view on (in its own mount namespace).
    #[arg(long)]
    shared_dir: PathBuf,
    /// Serve only this host file, as `file` in the share's root.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Refuse every write, in the daemon and in the host kernel.
    #[arg(long)]
    read_only: bool,
    /// Writable until the guest sets the seal xattr on the share, then
    /// read-only for good (enforced by the daemon only).
    #[arg(long, conflicts_with = "read_only")]
    seal_after_fill: bool,
    /// How long the guest may trust names and attributes, in milliseconds.
    #[arg(long, default_value_t = 100)]
    cache_timeout_ms: u64,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, default_value = "warn")]
    log_level: log::LevelFilter,
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init(args.log_level);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if !args.shared_dir.is_dir() {
        return Err(format!(
            "{}: not a directory (--shared-dir must exist)",
            args.shared_dir.display()
        ));
    }
    let shared_dir = args
        .shared_dir
        .to_str()
        .ok_or_else(|| format!("{}: not a UTF-8 path", args.shared_dir.display()))?
        .to_string();
    let socket = args
        .socket_path
        .to_str()
        .ok_or_else(|| format!("{}: not a UTF-8 path", args.socket_path.display()))?;
    let listener = Listener::new(socket, true).map_err(|e| format!("listen on {socket}: {e}"))?;
    // After the socket exists: a read-only share may hold the socket's own
    // directory (`-v /:/host:ro`, or a home under a shared directory).
    view::prepare(&args.shared_dir, args.file.as_deref(), args.read_only)
        .map_err(|e| e.to_string())?;
    // As many descriptors as we may have (one per inode the guest holds).
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(|e| format!("read the open-file limit: {e}"))?;
    let fd_limit = virtiofsd::limits::setup_rlimit_nofile(Some(hard))?;

    let mut sandbox = Sandbox::new(shared_dir, SandboxMode::Namespace, Vec::new(), Vec::new());
    let mountinfo_prefix = sandbox
        .get_mountinfo_prefix()
        .map_err(|e| format!("read mountinfo: {e}"))?;
    // From here on this process is the sandboxed server: its parent only
    // waits for it (and dies with the process that started it).
    let listener = sandbox
        .enter(listener)
        .map_err(|e| format!("enter the sandbox: {e}"))?;

    let timeout = Duration::from_millis(args.cache_timeout_ms);
    let config = Config {
        entry_timeout: timeout,
        attr_timeout: timeout,
        cache_policy: CachePolicy::Auto,
        root_dir: sandbox.get_root_dir(),
        mountinfo_prefix,
        proc_sfd_rawfd: sandbox.get_proc_self_fd(),
        proc_mountinfo_rawfd: sandbox.get_mountinfo_fd(),
        // Leave room for the daemon's own descriptors.
        guest_fd_limit: fd_limit.saturating_sub(64).max(128),
        ..Default::default()
    };
    enable_seccomp(SeccompAction::Kill, false).map_err(|e| format!("seccomp: {e}"))?;
    drop_capabilities()?;
    if args.read_only {
        let fs = PassthroughFsRo::new(config).map_err(|e| format!("open the share: {e}"))?;
        serve(Share::new(fs, false), listener)
    } else {
        let fs = PassthroughFs::new(config).map_err(|e| format!("open the share: {e}"))?;
        serve(Share::new(fs, args.seal_after_fill), listener)
    }
}

/// Keep only what a passthrough server needs to act for any guest user.
fn drop_capabilities() -> Result<(), String> {
    const KEEP: [&str; 8] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
        "FSETID",
        "SETGID",
        "SETUID",
        "MKNOD",
        "SETFCAP",
    ];
    capng::clear(capng::Set::BOTH);
    capng::updatev(
        capng::Action::ADD,
        capng::Type::PERMITTED | capng::Type::EFFECTIVE,
        KEEP.to_vec(),
    )
    .map_err(|e| format!("capabilities: {e}"))?;
    capng::apply(capng::Set::BOTH).map_err(|e| format!("capabilities: {e}"))
}

/// Serve requests until the VM disconnects.
fn serve<F>(fs: F, mut listener: Listener) -> Result<(), String>
where
    F: FileSystem + SerializableFileSystem + Send + Sync + 'static,
{
    // Requests are served on the queue's own thread: a hand-off to a pool
    // costs a wakeup per request, which under TCG is most of a round trip.
    let backend = virtiofsd::vhost_user::VhostUserFsBackendBuilder::default()
        .set_thread_pool_size(0)
        .build(fs)
        .map_err(|e| format!("vhost-user backend: {e}"))?;
    let mut daemon = VhostUserDaemon::new(
        "a3s-box-fs".to_string(),
        Arc::new(backend),
        GuestMemoryAtomic::new(GuestMemoryMmap::new()),
    )
    .map_err(|e| format!("vhost-user daemon: {e:?}"))?;
    daemon
        .start(&mut listener)
        .map_err(|e| format!("accept the VMM: {e:?}"))?;
    match daemon.wait() {
        Ok(()) => Ok(()),
        Err(vhost_user_backend::Error::HandleRequest(vhost::vhost_user::Error::Disconnected)) => {
            Ok(())
        }
        Err(e) => Err(format!("serving: {e:?}")),
    }
}
