//! One virtio-fs daemon per share, for the life of one VM.
//!
//! The daemon is our `a3s-box-fs` (built on the `virtiofsd` crate): it serves
//! the directory from its own mount, PID and network namespaces, pivoted
//! into it, so the guest reaches nothing outside it; a read-only share is a
//! read-only bind mount in the daemon's namespace, so even a compromised
//! guest kernel cannot write it; a single host file is served as a one-file
//! view. Each daemon is started through the [`Launcher`], dies with the
//! process that started it (like QEMU) and is killed when the VM ends
//! ([`Daemons`]' drop).

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use a3s_box_core::FsMount;

use super::StorageError;
use crate::launch::{Helper, HelperSpec, LaunchError, Launcher, Stdio};

/// Our daemon (crate `a3s-box-fs`), installed next to the CLI.
const DAEMON: &str = "a3s-box-fs";
/// What to do when the daemon is missing.
const DAEMON_HINT: &str = "install a3s-box-fs beside a3s-box (make setup) or set A3S_BOX_VIRTIOFSD";
/// How long a daemon gets to create its socket (slow, loaded hosts).
const SOCKET_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(5);

/// How often the watcher checks that every daemon still runs.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// The running daemons of one VM; killed on drop.
#[derive(Debug, Default)]
pub struct Daemons {
    children: Arc<Mutex<Vec<Helper>>>,
    done: Arc<AtomicBool>,
}

impl Daemons {
    /// Kill the VM `vm_pid` if a daemon dies while it runs: its guest would
    /// otherwise wait on the share forever.
    pub fn watch(&self, vm_pid: u32) {
        if self.lock().is_empty() {
            return;
        }
        // A pidfd names this very QEMU even after it is reaped and its pid
        // reused, so the watcher can never signal another process.
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, vm_pid as libc::pid_t, 0) };
        if pidfd < 0 {
            return;
        }
        // SAFETY: the kernel returned a new descriptor that nothing else owns.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd as i32) };
        let (children, done) = (self.children.clone(), self.done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let died = children
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter_mut()
                    .any(|c| c.try_wait().is_some());
                if died {
                    // A daemon also ends when QEMU does: only a VM that
                    // outlives its daemon is stopped.
                    std::thread::sleep(WATCH_INTERVAL);
                }
                if died && !done.load(Ordering::Relaxed) && !exited(&pidfd) {
                    tracing::warn!("a virtio-fs daemon died: stopping the VM");
                    // SAFETY: signals the process the open pidfd names.
                    unsafe {
                        libc::syscall(
                            libc::SYS_pidfd_send_signal,
                            pidfd.as_raw_fd(),
                            libc::SIGKILL,
                            std::ptr::null::<libc::siginfo_t>(),
                            0,
                        )
                    };
                }
                if died {
                    return;
                }
                std::thread::sleep(WATCH_INTERVAL);
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Helper>> {
        self.children.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Whether the process a pidfd names has exited (the fd polls readable).
fn exited(pidfd: &OwnedFd) -> bool {
    let mut poll = libc::pollfd {
        fd: pidfd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    unsafe { libc::poll(&mut poll, 1, 0) == 1 }
}

impl Drop for Daemons {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
        for child in self.lock().iter_mut() {
            let _ = child.kill();
        }
    }
}

/// A share to serve.
#[derive(Debug, Clone)]
pub struct Share {
    pub mount: FsMount,
    /// The vhost-user socket QEMU connects to.
    pub socket: PathBuf,
    /// A read-only mount that guest-init fills first: served writable until
    /// guest-init seals it (see `a3s-box-fs --seal-after-fill`).
    pub seal_after_fill: bool,
}

/// Start a daemon (`daemon`, an `a3s-box-fs`) for each share with
/// `launcher`, and wait until each listens.
pub fn start(
    launcher: &Launcher,
    daemon: &Path,
    shares: &[Share],
    log: &Path,
) -> Result<Daemons, StorageError> {
    let daemons = Daemons::default();
    for Share {
        mount: share,
        socket,
        seal_after_fill,
    } in shares
    {
        let _ = std::fs::remove_file(socket);
        let mut child = spawn(launcher, daemon, share, socket, *seal_after_fill, log)?;
        let deadline = Instant::now() + SOCKET_WAIT;
        while !socket.exists() {
            if let Some(status) = child.try_wait() {
                return Err(StorageError::Daemon {
                    path: share.host_path.clone(),
                    reason: format!("{status}: {}", crate::manager::log_tail(log, 3)),
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                return Err(StorageError::Daemon {
                    path: share.host_path.clone(),
                    reason: format!("no socket after {}s", SOCKET_WAIT.as_secs()),
                });
            }
            std::thread::sleep(POLL);
        }
        daemons.lock().push(child);
    }
    Ok(daemons)
}

fn spawn(
    launcher: &Launcher,
    daemon: &Path,
    share: &FsMount,
    socket: &Path,
    seal: bool,
    log: &Path,
) -> Result<Helper, StorageError> {
    let mut args: Vec<OsString> = vec!["--socket-path".into(), socket.into()];
    // Page cache kept; names and attributes trusted for 0.1 s only, so a
    // write by the host or another box is seen at the next open at most
    // 0.1 s later. (0 made small-file work 2-4x slower under TCG, 1 s let
    // a reader see a stale size for a second.)
    args.extend(["--cache-timeout-ms".into(), "100".into()]);
    if share.host_path.is_file() {
        // A single file: the daemon mounts a one-file view on an empty
        // directory of the box (in its own mount namespace only).
        let view = socket.with_extension("view");
        std::fs::create_dir_all(&view).map_err(StorageError::io("create", &view))?;
        args.extend([
            "--shared-dir".into(),
            view.into(),
            "--file".into(),
            share.host_path.clone().into(),
        ]);
    } else {
        args.extend(["--shared-dir".into(), share.host_path.clone().into()]);
    }
    if seal {
        args.push("--seal-after-fill".into());
    } else if share.read_only {
        args.push("--read-only".into());
    }
    let spec = HelperSpec::new(DAEMON, daemon, DAEMON_HINT)
        .args(args)
        .stderr(Stdio::File {
            path: log.to_path_buf(),
            append: true,
        });
    launcher.spawn(spec).map_err(|e| match e {
        LaunchError::NotFound { path, .. } => StorageError::MissingTool {
            tool: path.display().to_string(),
            package: DAEMON,
        },
        other => StorageError::Daemon {
            path: share.host_path.clone(),
            reason: other.to_string(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_daemon_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let share = FsMount {
            tag: "t".into(),
            host_path: dir.path().into(),
            read_only: false,
        };
        let share = Share {
            mount: share,
            socket: dir.path().join("s.sock"),
            seal_after_fill: false,
        };
        let err = start(
            &Launcher::new(),
            Path::new("/nonexistent/a3s-box-fs"),
            &[share],
            &dir.path().join("log"),
        );
        assert!(err.unwrap_err().to_string().contains("install a3s-box-fs"));
    }
}
