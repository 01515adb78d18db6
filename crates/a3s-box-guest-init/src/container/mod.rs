//! Containers: what the sandbox runs. Each has its own root (assembled by
//! [`crate::storage::root`]), cgroup ([`cgroup`]), ulimits ([`rlimit`]) and,
//! once its main process starts, its own mount, PID, UTS and IPC namespaces
//! ([`namespaces`]), created by that process (the init of its PID
//! namespace) and held by descriptor. Every container shares the VM's
//! network namespace.
//!
//! Processes are spawned into a container by [`spawn`]: the pure plan
//! ([`plan`]), the cloned child ([`child`], [`sys`], [`box_fs`]) and PTYs
//! ([`pty`]). [`table`] names the sandbox's containers.

mod box_fs;
pub mod cgroup;
mod child;
mod clone3;
pub mod namespaces;
pub mod plan;
mod pty;
pub mod rlimit;
pub mod spawn;
mod sys;
pub mod table;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::unistd::Pid;

use self::cgroup::Cgroup;
use self::namespaces::Namespaces;
use self::plan::SpawnFailure;
pub use self::pty::resize;
use self::rlimit::Rlimit;
pub use self::spawn::{open_self_exe, HELPER_ARGV0};
use crate::storage::root::Layout;

/// Where a container's main process is.
#[derive(Debug)]
enum Main {
    /// Never started.
    Created,
    /// Being started.
    Starting,
    /// Running: the namespaces it created.
    Running {
        /// Its pid in guest-init's namespace.
        pid: Pid,
        /// Its namespaces and root.
        ns: Arc<Namespaces>,
    },
    /// Exited; its PID namespace is gone.
    Exited,
}

/// One container of the sandbox.
#[derive(Debug)]
pub struct Container {
    /// Its id.
    pub id: String,
    /// The hostname of its UTS namespace.
    pub hostname: String,
    /// Where its filesystems are.
    pub layout: Layout,
    /// Its cgroup (`None` without cgroup2 and limits).
    pub cgroup: Option<Cgroup>,
    /// The ulimits of its processes.
    pub rlimits: Vec<Rlimit>,
    main: Mutex<Main>,
}

impl Container {
    /// A created container whose main process has not started.
    pub fn new(
        id: String,
        hostname: String,
        layout: Layout,
        cgroup: Option<Cgroup>,
        rlimits: Vec<Rlimit>,
    ) -> Self {
        Container {
            id,
            hostname,
            layout,
            cgroup,
            rlimits,
            main: Mutex::new(Main::Created),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Main> {
        self.main.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claim the start of its main process: refused while one runs.
    /// Returns whether one ran before, for [`Container::start_failed`].
    pub fn begin_start(&self) -> Result<bool, SpawnFailure> {
        let mut main = self.lock();
        let ran = match &*main {
            Main::Created => false,
            Main::Exited => true,
            Main::Starting | Main::Running { .. } => {
                return Err(SpawnFailure::setup(format!(
                    "container {} is already running",
                    self.id
                )))
            }
        };
        *main = Main::Starting;
        Ok(ran)
    }

    /// Its main process `pid` was cloned with the namespaces `ns` (`None`:
    /// it was gone before they could be opened).
    pub fn started(&self, pid: Pid, ns: Option<Namespaces>) {
        *self.lock() = match ns {
            Some(ns) => Main::Running {
                pid,
                ns: Arc::new(ns),
            },
            None => Main::Exited,
        };
    }

    /// Starting its main process failed: back to how it was.
    pub fn start_failed(&self, ran: bool) {
        let mut main = self.lock();
        if matches!(*main, Main::Starting) {
            *main = if ran { Main::Exited } else { Main::Created };
        }
    }

    /// Process `pid` was reaped: if it was the main process, the container
    /// stopped. Returns whether it was.
    pub fn reaped(&self, pid: Pid) -> bool {
        let mut main = self.lock();
        match &*main {
            Main::Running { pid: p, .. } if *p == pid => {
                *main = Main::Exited;
                true
            }
            _ => false,
        }
    }

    /// The namespaces of its running main process, to join.
    pub fn namespaces(&self) -> Result<Arc<Namespaces>, SpawnFailure> {
        let why = match &*self.lock() {
            Main::Running { ns, .. } => return Ok(Arc::clone(ns)),
            Main::Created => "it has not been started",
            Main::Starting => "it is starting",
            Main::Exited => "its main process has exited",
        };
        Err(self.not_running(why))
    }

    /// The refusal of a process that would join it while it does not run.
    pub fn not_running(&self, why: &str) -> SpawnFailure {
        SpawnFailure::setup(format!("container {} is not running: {why}", self.id))
    }

    /// The pid of its running main process.
    pub fn main_pid(&self) -> Option<Pid> {
        match &*self.lock() {
            Main::Running { pid, .. } => Some(*pid),
            _ => None,
        }
    }

    /// Forget its namespaces (it is being removed, its processes killed).
    pub fn stopped(&self) {
        *self.lock() = Main::Exited;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container() -> Container {
        let layout = Layout {
            dir: "/a3s/c/t".into(),
            lower: "/a3s/c/t/lower".into(),
            root: "/a3s/c/t/root".into(),
            merged: "/a3s/c/t/merged".into(),
            rw_tmpfs: None,
            rw_dir: None,
            upper: "/u".into(),
            work: "/w".into(),
            run: "/run/a3s/c/t".into(),
        };
        Container::new("t".into(), "t".into(), layout, None, Vec::new())
    }

    /// Namespaces of this test process: enough to stand for a container's.
    fn own_namespaces() -> Option<Namespaces> {
        let pidfd = pidfd_of_self();
        Some(Namespaces::capture(nix::unistd::getpid(), &pidfd).unwrap())
    }

    fn pidfd_of_self() -> std::os::fd::OwnedFd {
        // SAFETY: pidfd_open of this process; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        assert!(fd >= 0);
        // SAFETY: a new descriptor nothing else owns.
        unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }
    }

    #[test]
    fn the_main_process_starts_once_at_a_time() {
        let c = container();
        let err = c.namespaces().unwrap_err();
        assert_eq!(
            err.reason,
            "container t is not running: it has not been started"
        );
        assert_eq!(c.begin_start(), Ok(false));
        assert!(c
            .begin_start()
            .unwrap_err()
            .reason
            .contains("already running"));
        assert!(c
            .namespaces()
            .unwrap_err()
            .reason
            .ends_with("it is starting"));
        c.start_failed(false);
        assert!(c
            .namespaces()
            .unwrap_err()
            .reason
            .ends_with("not been started"));

        assert_eq!(c.begin_start(), Ok(false));
        c.started(Pid::from_raw(42), own_namespaces());
        assert!(c.namespaces().is_ok());
        assert_eq!(c.main_pid(), Some(Pid::from_raw(42)));
        assert!(!c.reaped(Pid::from_raw(43)), "not the main process");
        assert!(c.reaped(Pid::from_raw(42)));
        assert!(c
            .namespaces()
            .unwrap_err()
            .reason
            .ends_with("its main process has exited"));
        assert_eq!(c.main_pid(), None);
        // A restart after the main process exited.
        assert_eq!(c.begin_start(), Ok(true));
        c.start_failed(true);
        assert!(c.namespaces().unwrap_err().reason.ends_with("has exited"));
        // A main process gone before its namespaces were opened.
        assert_eq!(c.begin_start(), Ok(true));
        c.started(Pid::from_raw(44), None);
        assert!(c.namespaces().unwrap_err().reason.ends_with("has exited"));
    }
}
