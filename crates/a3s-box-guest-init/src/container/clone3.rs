//! `clone3(2)` the way guest-init spawns: fork-like (no new stack, no
//! shared memory), optionally into new namespaces, straight into a cgroup
//! (`CLONE_INTO_CGROUP`: no migration afterwards), and with a pidfd that
//! names the child for sure (`CLONE_PIDFD`).

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::unistd::Pid;

/// `CLONE_PIDFD`.
const CLONE_PIDFD: u64 = 0x1000;
/// `CLONE_INTO_CGROUP`.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (version 2, with `cgroup`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What to clone into.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clone3 {
    /// `CLONE_NEW*` flags.
    pub namespaces: libc::c_int,
    /// A cgroup directory to start the child in.
    pub cgroup: Option<RawFd>,
    /// Ask for a pidfd.
    pub pidfd: bool,
}

/// Who was cloned, as the parent sees it.
#[derive(Debug)]
pub struct Cloned {
    /// The child's pid.
    pub pid: Pid,
    /// Its pidfd, when asked for.
    pub pidfd: Option<OwnedFd>,
}

impl Clone3 {
    fn args(&self, pidfd: &mut libc::c_int) -> CloneArgs {
        let mut flags = u64::from(self.namespaces.unsigned_abs());
        if self.pidfd {
            flags |= CLONE_PIDFD;
        }
        if self.cgroup.is_some() {
            flags |= CLONE_INTO_CGROUP;
        }
        CloneArgs {
            flags,
            pidfd: if self.pidfd {
                pidfd as *mut libc::c_int as u64
            } else {
                0
            },
            exit_signal: libc::SIGCHLD as u64,
            cgroup: self.cgroup.map_or(0, |fd| fd.unsigned_abs().into()),
            ..CloneArgs::default()
        }
    }

    /// Clone: the child runs `child`, which never returns (it execs or
    /// exits) and may only make async-signal-safe calls (this process has
    /// threads; the child is a copy of this one thread).
    ///
    /// # Safety
    /// `child` must obey the rules above.
    pub unsafe fn spawn(&self, child: impl FnOnce()) -> Result<Cloned, Errno> {
        let mut pidfd: libc::c_int = -1;
        let args = self.args(&mut pidfd);
        // SAFETY: `args` is a valid clone_args of the size passed, and the
        // pidfd pointer in it is live; without CLONE_VM and with no stack
        // given, the child continues here on a copy of this stack, like
        // fork, and only runs `child`.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        match rc {
            -1 => Err(Errno::last()),
            0 => {
                child();
                // SAFETY: only if `child` broke its promise: leave at once.
                unsafe { libc::_exit(127) }
            }
            pid => Ok(Cloned {
                pid: Pid::from_raw(pid as libc::pid_t),
                // SAFETY: the kernel stored a new descriptor in `pidfd`.
                pidfd: self.pidfd.then(|| unsafe { OwnedFd::from_raw_fd(pidfd) }),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_args_carry_flags_cgroup_and_pidfd() {
        let mut pidfd = -1;
        let plain = Clone3::default().args(&mut pidfd);
        assert_eq!((plain.flags, plain.pidfd, plain.cgroup), (0, 0, 0));
        assert_eq!(plain.exit_signal, libc::SIGCHLD as u64);
        let main = Clone3 {
            namespaces: libc::CLONE_NEWNS | libc::CLONE_NEWPID,
            cgroup: Some(7),
            pidfd: true,
        }
        .args(&mut pidfd);
        let ns = (libc::CLONE_NEWNS | libc::CLONE_NEWPID) as u64;
        assert_eq!(main.flags, ns | CLONE_PIDFD | CLONE_INTO_CGROUP);
        assert_eq!(main.cgroup, 7);
        assert_ne!(main.pidfd, 0);
        assert_eq!(std::mem::size_of::<CloneArgs>(), 88);
    }

    #[test]
    fn a_child_runs_and_its_pidfd_names_it() {
        let how = Clone3 {
            pidfd: true,
            ..Clone3::default()
        };
        // SAFETY: the child only calls _exit.
        let cloned = unsafe { how.spawn(|| libc::_exit(7)) }.unwrap();
        assert!(cloned.pidfd.is_some());
        let status = nix::sys::wait::waitpid(cloned.pid, None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(cloned.pid, 7));
    }
}
