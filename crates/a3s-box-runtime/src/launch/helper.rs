//! A running helper process.

use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, ExitStatus};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::Lifetime;

/// A helper [`Launcher::spawn`](super::Launcher::spawn) started. Until it is
/// reaped its pid cannot be reused, so signalling it never hits another
/// process. A helper that dies with us is killed and reaped on drop.
#[derive(Debug)]
pub struct Helper {
    name: &'static str,
    lifetime: Lifetime,
    child: Child,
    status: Option<ExitStatus>,
}

impl Helper {
    pub(super) fn new(name: &'static str, lifetime: Lifetime, child: Child) -> Self {
        Helper {
            name,
            lifetime,
            child,
            status: None,
        }
    }

    /// Its name in logs and errors.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited (reaping it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => tracing::warn!(helper = self.name, "wait: {e}"),
            }
        }
        self.status
    }

    /// Wait until it exits.
    pub fn wait(&mut self) -> std::io::Result<ExitStatus> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// Send `signal` unless it has been reaped already.
    pub fn signal(&self, signal: Signal) {
        if self.status.is_none() {
            // ESRCH: it exited and awaits reaping.
            let _ = nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), signal);
        }
    }

    /// SIGKILL it and reap it.
    pub fn kill(&mut self) -> std::io::Result<ExitStatus> {
        self.signal(Signal::SIGKILL);
        self.wait()
    }

    /// Its stdin, when it is a pipe (once).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its stdout, when it is a pipe (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its stderr, when it is a pipe (once).
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Reap it on a thread of its own whenever it exits (a detached helper
    /// that may end while we still run must not stay a zombie).
    pub fn reap_in_background(mut self) {
        std::thread::spawn(move || {
            let _ = self.wait();
        });
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if self.lifetime == Lifetime::DieWithParent && self.try_wait().is_none() {
            let _ = self.kill();
        }
    }
}

/// An exit status as a shell reports it: the code, or 128 + the signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
