//! A running QEMU process and its [`VmHandler`].

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use a3s_box_core::{BoxError, Result, VmHandler, VmMetrics};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::cmdline::QemuArgs;

const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// Spawn QEMU. Its stdout/stderr go to `log` (QEMU's own diagnostics; the
/// guest console goes where the command line says). It runs in its own
/// process group, so a terminal's Ctrl-C reaches us (to forward to the
/// workload) and not QEMU; with `die_with_parent` it is killed when the
/// spawning thread's process dies.
pub fn spawn(args: &QemuArgs, log: &Path, die_with_parent: bool) -> Result<Child> {
    let log_file =
        File::create(log).map_err(|e| BoxError::io(format!("create {}", log.display()), e))?;
    let log_err = log_file
        .try_clone()
        .map_err(|e| BoxError::io("duplicate QEMU log handle", e))?;
    let mut cmd = Command::new(&args.program);
    cmd.args(&args.args)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err)
        .process_group(0);
    if die_with_parent {
        crate::die_with_parent(&mut cmd);
    }
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BoxError::MissingAsset {
            what: "QEMU",
            path: args.program.clone(),
            hint: "install qemu-system-x86 (make setup) or set A3S_BOX_QEMU",
        },
        _ => BoxError::io(format!("start {}", args.program.display()), e),
    })
}

/// CPU time of a process in clock ticks (utime + stime), from /proc.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

pub(crate) fn ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Handler of a QEMU process this process spawned.
#[derive(Debug)]
pub struct QemuHandler {
    pid: u32,
    child: Mutex<Child>,
    exit_code: Mutex<Option<i32>>,
    last_sample: Mutex<Option<(Instant, u64)>>,
}

impl QemuHandler {
    /// Take ownership of a spawned QEMU.
    pub fn new(child: Child) -> Self {
        QemuHandler {
            pid: child.id(),
            child: Mutex::new(child),
            exit_code: Mutex::new(None),
            last_sample: Mutex::new(None),
        }
    }

    /// Reap QEMU if it has exited; returns its exit code then.
    pub fn try_wait(&self) -> Option<i32> {
        let mut code = self.exit_code.lock().unwrap_or_else(|p| p.into_inner());
        if code.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            if let Ok(Some(status)) = child.try_wait() {
                *code = Some(exit_status_code(status));
            }
        }
        *code
    }

    /// Wait up to `timeout` for QEMU to exit by itself.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(code) = self.try_wait() {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
}

fn exit_status_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

impl VmHandler for QemuHandler {
    fn stop(&mut self, signal: i32, timeout_ms: u64) -> Result<()> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        let pid = Pid::from_raw(self.pid as i32);
        let sig = Signal::try_from(signal)
            .map_err(|_| BoxError::Config(format!("invalid signal number {signal}")))?;
        // ESRCH means it is already gone; the wait below reaps it.
        let _ = kill(pid, sig);
        if self
            .wait_timeout(Duration::from_millis(timeout_ms))
            .is_some()
        {
            return Ok(());
        }
        let _ = kill(pid, Signal::SIGKILL);
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let status = child
            .wait()
            .map_err(|e| BoxError::io(format!("wait for QEMU (pid {})", self.pid), e))?;
        *self.exit_code.lock().unwrap_or_else(|p| p.into_inner()) = Some(exit_status_code(status));
        Ok(())
    }

    fn metrics(&self) -> VmMetrics {
        let now = Instant::now();
        let ticks = cpu_ticks(self.pid);
        let mut last = self.last_sample.lock().unwrap_or_else(|p| p.into_inner());
        let cpu_percent = match (ticks, *last) {
            (Some(t), Some((then, t0))) if now > then => {
                let secs = now.duration_since(then).as_secs_f64();
                Some(((t.saturating_sub(t0)) as f64 / ticks_per_second() / secs * 100.0) as f32)
            }
            _ => None,
        };
        if let Some(t) = ticks {
            *last = Some((now, t));
        }
        VmMetrics {
            cpu_percent,
            memory_bytes: rss_bytes(self.pid),
        }
    }

    fn is_running(&self) -> bool {
        self.try_wait().is_none()
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn exit_code(&self) -> Option<i32> {
        *self.exit_code.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for QemuHandler {
    fn drop(&mut self) {
        if self.try_wait().is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGKILL);
            let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
            let _ = child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(secs: &str, trap_term: bool) -> QemuHandler {
        let script = if trap_term {
            format!("trap '' TERM; sleep {secs}")
        } else {
            format!("sleep {secs}")
        };
        let dir = tempfile::tempdir().unwrap();
        let args = QemuArgs {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script],
        };
        QemuHandler::new(spawn(&args, &dir.path().join("log"), true).unwrap())
    }

    #[test]
    fn stop_with_signal_reports_exit() {
        let mut h = sleeper("30", false);
        assert!(h.is_running());
        h.stop(15, 5_000).unwrap();
        assert!(!h.is_running());
        assert_eq!(h.exit_code(), Some(128 + 15));
    }

    #[test]
    fn stop_escalates_to_sigkill_after_timeout() {
        let mut h = sleeper("30", true);
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        h.stop(15, 300).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(h.exit_code(), Some(128 + 9));
    }

    #[test]
    fn metrics_report_rss_and_cpu_after_two_samples() {
        let h = sleeper("30", false);
        assert!(h.metrics().memory_bytes.unwrap() > 0);
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.metrics().cpu_percent.is_some());
        assert!(h.pid() > 0);
    }

    #[test]
    fn missing_program_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let args = QemuArgs {
            program: "/nonexistent/qemu".into(),
            args: vec![],
        };
        let err = spawn(&args, &dir.path().join("log"), false).unwrap_err();
        assert!(err.to_string().contains("QEMU not found"), "{err}");
    }
}
