//! A container's namespaces and root, held by descriptor: opened while its
//! main process (their creator, and the init of its PID namespace) waits
//! right after setting them up, and kept until the container stops, so
//! `exec` and the built-in helpers enter them by descriptor and never look
//! a process up by its pid.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::fcntl::{open, OFlag};
use nix::sched::{setns, CloneFlags};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use super::child::JoinFds;
use super::plan::SpawnFailure;

/// The namespaces and root of a running container, for processes that join it.
#[derive(Debug)]
pub struct Namespaces {
    pid: OwnedFd,
    /// guest-init's own PID namespace, to return to after cloning.
    own_pid: OwnedFd,
    mnt: OwnedFd,
    uts: OwnedFd,
    ipc: OwnedFd,
    pub(super) root: OwnedFd,
}

fn open_fd(path: &str, flags: OFlag) -> Result<OwnedFd, SpawnFailure> {
    let fd = open(path, flags | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| SpawnFailure::setup(format!("open {path}: {e}")))?;
    // SAFETY: `open` returned a new descriptor that nothing else owns.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

impl Namespaces {
    /// Those that process `pid` created, and its root. Called while it
    /// waits after setting them up, so it cannot be gone.
    pub fn of(pid: Pid) -> Result<Self, SpawnFailure> {
        let ns = |name: &str| open_fd(&format!("/proc/{pid}/ns/{name}"), OFlag::O_RDONLY);
        Ok(Namespaces {
            pid: ns("pid")?,
            own_pid: open_fd("/proc/self/ns/pid", OFlag::O_RDONLY)?,
            mnt: ns("mnt")?,
            uts: ns("uts")?,
            ipc: ns("ipc")?,
            root: open_fd(
                &format!("/proc/{pid}/root"),
                OFlag::O_RDONLY | OFlag::O_DIRECTORY,
            )?,
        })
    }

    /// Clone `f`'s children into the container's PID namespace: the calling
    /// thread's namespace for children is the container's while `f` runs (the
    /// thread itself stays where it is), and guest-init's again after, as
    /// the kernel refuses to start threads otherwise.
    pub(super) fn in_pid_namespace<T>(
        &self,
        f: impl FnOnce() -> Result<T, SpawnFailure>,
    ) -> Result<T, SpawnFailure> {
        setns(self.pid.as_fd(), CloneFlags::CLONE_NEWPID)
            .map_err(|e| SpawnFailure::setup(format!("join the container's PID namespace: {e}")))?;
        let out = f();
        if let Err(e) = setns(self.own_pid.as_fd(), CloneFlags::CLONE_NEWPID) {
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
            root: self.root.as_raw_fd(),
        }
    }
}
