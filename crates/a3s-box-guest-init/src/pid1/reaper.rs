//! Reaping. SIGCHLD is blocked in every thread (before any thread starts) and
//! taken with `sigwait` by one reaper thread, which collects every child:
//! the processes the host knows about are reported through the session,
//! orphans re-parented to PID 1 are reaped silently.

use std::sync::Arc;

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::agent::session::{spawn_thread, Session};
use crate::error::{Context, InitError};
use crate::pid1::log::warning;

fn sigchld() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set
}

/// Block SIGCHLD in the calling thread; call first thing in `main`, so
/// every later thread inherits the mask.
pub fn block_sigchld() -> Result<(), InitError> {
    sigchld().thread_block().context(|| "block SIGCHLD".into())
}

/// The exit code the host sees: the status, or 128 + the signal number.
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// Start the reaper thread.
pub fn start(session: &Arc<Session>) {
    let reaper_session = Arc::clone(session);
    spawn_thread(session, "reaper".into(), move || run(&reaper_session));
}

fn run(session: &Session) {
    let set = sigchld();
    loop {
        reap_all(session);
        if let Err(e) = set.wait() {
            warning!("sigwait: {e}");
        }
    }
}

/// Collect every child that has exited (SIGCHLD coalesces).
fn reap_all(session: &Session) {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
            Ok(status) => {
                if let (Some(pid), Some(code)) = (status.pid(), exit_code(status)) {
                    session.reaped(pid, code);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                warning!("waitpid: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use nix::unistd::Pid;

    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(7);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            Some(137)
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, true)),
            Some(143)
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
