//! A container's namespaces, held by descriptor: opened right after its
//! main process (their creator, and the init of its PID namespace) is
//! cloned, and kept until the container stops, so `exec` and the built-in
//! helpers enter them by descriptor and never look a process up by its pid.
//!
//! They are opened through `/proc/<pid>/ns` while the process may already
//! be running; its pidfd (from `clone3`) then proves they were that
//! process's: a pid is only reused once its process is reaped, and the
//! pidfd says whether it was.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::child::JoinFds;
use super::plan::SpawnFailure;

/// guest-init's own PID namespace, to return to after cloning.
static OWN_PID: OnceLock<OwnedFd> = OnceLock::new();

/// The namespaces of a running container, for processes that join it.
#[derive(Debug)]
pub struct Namespaces {
    pid: OwnedFd,
    mnt: OwnedFd,
    uts: OwnedFd,
    ipc: OwnedFd,
    /// The container's root as its mount namespace has it, opened when
    /// first needed ([`Namespaces::root`]).
    root: OnceLock<OwnedFd>,
}

fn open_fd(path: &str, flags: OFlag) -> Result<OwnedFd, SpawnFailure> {
    let fd = open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| SpawnFailure::setup(format!("open {path}: {e}")))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// On a thread of its own: enter the mount namespace `mnt` and open `/`.
fn open_root_in(mnt: std::os::fd::RawFd) -> nix::Result<OwnedFd> {
    // SAFETY: unshare(CLONE_FS) gives this thread its own root and working
    // directory, which setns(CLONE_NEWNS) requires; the thread ends after.
    Errno::result(unsafe { libc::unshare(libc::CLONE_FS) })?;
    // SAFETY: setns reads the descriptor and changes this thread's mount
    // namespace, root and working directory only.
    Errno::result(unsafe { libc::setns(mnt, libc::CLONE_NEWNS) })?;
    let fd = open(
        "/",
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

/// Whether the process `pidfd` names has not been reaped yet.
fn not_reaped(pidfd: &OwnedFd) -> bool {
    // SAFETY: pidfd_send_signal with signal 0 only checks the process; the
    // info pointer may be null.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            0,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    // A zombie takes signal 0 too: its namespaces are gone, and the opens
    // before this already failed.
    rc == 0 || Errno::last() == Errno::EPERM
}

impl Namespaces {
    /// The namespaces of the main process `pid` (its pidfd `pidfd`), just
    /// cloned with them; `None` when it is already gone.
    pub fn capture(pid: Pid, pidfd: &OwnedFd) -> Option<Self> {
        let ns = |name: &str| open_fd(&format!("/proc/{pid}/ns/{name}"), OFlag::O_RDONLY).ok();
        let captured = Namespaces {
            pid: ns("pid")?,
            mnt: ns("mnt")?,
            uts: ns("uts")?,
            ipc: ns("ipc")?,
            root: OnceLock::new(),
        };
        not_reaped(pidfd).then_some(captured)
    }

    /// The container's root directory (`O_PATH`), to resolve paths in it
    /// from guest-init: opened by a short-lived thread that enters the
    /// container's mount namespace (where `/` is the container's root).
    pub fn root(&self) -> Result<&OwnedFd, SpawnFailure> {
        if let Some(root) = self.root.get() {
            return Ok(root);
        }
        let mnt = self.mnt.as_raw_fd();
        let opened = std::thread::Builder::new()
            .name("enter-root".into())
            .stack_size(64 * 1024)
            .spawn(move || open_root_in(mnt))
            .map_err(|e| SpawnFailure::setup(format!("start a thread: {e}")))?
            .join()
            .map_err(|_| SpawnFailure::setup("the root opener failed"))?
            .map_err(|e| SpawnFailure::setup(format!("open the container's root: {e}")))?;
        Ok(self.root.get_or_init(|| opened))
    }

    /// Clone `f`'s children into the container's PID namespace: the calling
    /// thread's namespace for children is the container's while `f` runs (the
    /// thread itself stays where it is), and guest-init's again after, as
    /// the kernel refuses to start threads otherwise.
    pub(super) fn in_pid_namespace<T>(
        &self,
        f: impl FnOnce() -> Result<T, SpawnFailure>,
    ) -> Result<T, SpawnFailure> {
        let own_pid = match OWN_PID.get() {
            Some(fd) => fd,
            None => {
                let fd = open_fd("/proc/self/ns/pid", OFlag::O_RDONLY)?;
                OWN_PID.get_or_init(|| fd)
            }
        };
        setns(self.pid.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| SpawnFailure::setup(format!("join the container's PID namespace: {e}")))?;
        let out = f();
        if let Err(e) = setns(own_pid.as_fd(), CloneFlags::CLONE_NEWPID) {
            // Threads could no longer be started: PID 1 cannot go on.
            crate::pid1::power::fatal(None, &format!("leave a container's PID namespace: {e}"));
        }
        out
    }

    pub(super) fn join_fds(&self) -> JoinFds {
        JoinFds {
            mnt: self.mnt.as_raw_fd(),
            uts: self.uts.as_raw_fd(),
            ipc: self.ipc.as_raw_fd(),
        }
    }
}
