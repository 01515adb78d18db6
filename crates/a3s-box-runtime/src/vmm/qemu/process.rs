//! A running QEMU process, its [`VmHandler`], and its own output (the
//! reason it gives when it fails).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result, VmHandler, VmMetrics};
use nix::sys::signal::Signal;

use super::cmdline::QemuArgs;
use super::provider::QEMU_HINT;
use crate::launch::{exit_code, Helper, HelperSpec, Launcher, Stdio};

const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// A log bigger than this is moved to `<log>.1` at the next start.
const LOG_ROTATE_BYTES: u64 = 256 * 1024;
/// First line of each start's section in the log.
const SECTION_MARK: &str = "--- a3s-box: QEMU started at ";

/// QEMU's stdout and stderr of one start: a section appended to the box's
/// `qemu.log`, headed by the time and the command line.
#[derive(Debug, Clone)]
pub struct QemuLog {
    path: PathBuf,
    /// Where this start's output begins.
    start: u64,
}

impl QemuLog {
    /// Open a new section of `path` for a start of `args`.
    pub fn begin(path: &Path, args: &QemuArgs) -> Result<Self> {
        let io = |what: &str| {
            let what = format!("{what} {}", path.display());
            move |e| BoxError::io(what, e)
        };
        if std::fs::metadata(path).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            std::fs::rename(path, path.with_extension("log.1")).map_err(io("rotate"))?;
        }
        let mut file = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io("open"))?;
        writeln!(
            file,
            "{SECTION_MARK}{} ---\n$ {}",
            now_rfc3339(),
            args.to_shell()
        )
        .map_err(io("write"))?;
        let start = file.seek(SeekFrom::End(0)).map_err(io("seek"))?;
        Ok(QemuLog {
            path: path.to_path_buf(),
            start,
        })
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What QEMU wrote in this start.
    pub fn output(&self) -> String {
        let mut text = Vec::new();
        if let Ok(mut file) = File::open(&self.path) {
            if file.seek(SeekFrom::Start(self.start)).is_ok() {
                let _ = file.take(LOG_ROTATE_BYTES).read_to_end(&mut text);
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    }
}

/// The line of QEMU's output that says why it failed: the last error, else
/// the last line; without the program's name in front.
pub fn reason_line(output: &str) -> Option<String> {
    let lines: Vec<&str> = output
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = lines
        .iter()
        .rev()
        .find(|l| !l.contains("warning:"))
        .or(lines.last())?;
    // "qemu-system-x86_64: -drive …: msg" / "qemu: msg": the name adds nothing.
    let line = match line.split_once(": ") {
        Some((program, rest)) if program.starts_with("qemu") && !program.contains(' ') => rest,
        _ => line,
    };
    Some(line.to_string())
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

/// Handler of a QEMU process this process spawned (killed when dropped).
#[derive(Debug)]
pub struct QemuHandler {
    pid: u32,
    program: PathBuf,
    helper: Mutex<Helper>,
    exit: Mutex<Option<ExitStatus>>,
    log: QemuLog,
    last_sample: Mutex<Option<(Instant, u64)>>,
}

impl QemuHandler {
    /// Start `args` through `launcher`, its output going to `log`, with
    /// `fds` inherited at their target numbers.
    pub fn spawn(
        launcher: &Launcher,
        args: &QemuArgs,
        log: QemuLog,
        fds: Vec<(OwnedFd, RawFd)>,
    ) -> Result<Self> {
        let out = Stdio::File {
            path: log.path.clone(),
            append: true,
        };
        let mut spec = HelperSpec::new("QEMU", &args.program, QEMU_HINT)
            .args(&args.args)
            .stdout(out.clone())
            .stderr(out);
        for (fd, target) in fds {
            spec = spec.fd(fd, target);
        }
        let helper = launcher.spawn(spec)?;
        Ok(QemuHandler {
            pid: helper.pid(),
            program: args.program.clone(),
            helper: Mutex::new(helper),
            exit: Mutex::new(None),
            log,
            last_sample: Mutex::new(None),
        })
    }

    /// QEMU's exit status once it has exited (reaping it).
    pub fn try_wait(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        if exit.is_none() {
            let status = self
                .helper
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_wait();
            if let Some(status) = status {
                self.exited(status);
                *exit = Some(status);
            }
        }
        *exit
    }

    /// Wait up to `timeout` for QEMU to exit by itself.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    /// The log of this start.
    pub fn log(&self) -> &QemuLog {
        &self.log
    }

    fn exited(&self, status: ExitStatus) {
        if !tracing::enabled!(tracing::Level::DEBUG) {
            return;
        }
        tracing::debug!(
            pid = self.pid,
            code = exit_code(status),
            output = %self.log.output().trim_end(),
            "QEMU exited"
        );
    }
}

impl VmHandler for QemuHandler {
    fn stop(&mut self, signal: i32, timeout_ms: u64) -> Result<()> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        let sig = Signal::try_from(signal)
            .map_err(|_| BoxError::Invalid(format!("invalid signal number {signal}")))?;
        self.helper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .signal(sig);
        if self
            .wait_timeout(Duration::from_millis(timeout_ms))
            .is_some()
        {
            return Ok(());
        }
        let status = self
            .helper
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .kill()
            .map_err(|e| BoxError::io(format!("wait for QEMU (pid {})", self.pid), e))?;
        self.exited(status);
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
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
        self.exit
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .map(exit_code)
    }

    /// QEMU's failure in its own words: its exit status and the line of its
    /// output that says why. `None` after a clean exit (the guest powered
    /// off, or panicked and QEMU quit as `-no-reboot` asks).
    fn exit_reason(&self) -> Option<String> {
        let status = (*self.exit.lock().unwrap_or_else(|p| p.into_inner()))?;
        if status.success() {
            return None;
        }
        let said = reason_line(&self.log.output());
        Some(match (status.signal(), said) {
            (Some(sig), Some(line)) => format!("QEMU was killed by signal {sig}: {line}"),
            (Some(sig), None) => format!("QEMU was killed by signal {sig}"),
            (None, Some(line)) => format!("QEMU exited with code {}: {line}", exit_code(status)),
            (None, None) => format!(
                "QEMU ({}) exited with code {} without a message: is it qemu-system-x86_64?",
                self.program.display(),
                exit_code(status),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path, script: &str) -> QemuHandler {
        let args = QemuArgs {
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
        };
        let log = QemuLog::begin(&dir.join("qemu.log"), &args).unwrap();
        QemuHandler::spawn(&Launcher::new(), &args, log, Vec::new()).unwrap()
    }

    #[test]
    fn stop_with_signal_reports_exit() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = sleeper(dir.path(), "sleep 30");
        assert!(h.is_running());
        h.stop(15, 5_000).unwrap();
        assert!(!h.is_running());
        assert_eq!(h.exit_code(), Some(128 + 15));
        assert_eq!(
            h.exit_reason().as_deref(),
            Some("QEMU was killed by signal 15")
        );
    }

    #[test]
    fn stop_escalates_to_sigkill_after_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = sleeper(dir.path(), "trap '' TERM; sleep 30");
        std::thread::sleep(Duration::from_millis(100));
        let start = Instant::now();
        h.stop(15, 300).unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(h.exit_code(), Some(128 + 9));
    }

    #[test]
    fn metrics_report_rss_and_cpu_after_two_samples() {
        let dir = tempfile::tempdir().unwrap();
        let h = sleeper(dir.path(), "sleep 30");
        assert!(h.metrics().memory_bytes.unwrap() > 0);
        std::thread::sleep(Duration::from_millis(50));
        assert!(h.metrics().cpu_percent.is_some());
        assert!(h.pid() > 0);
    }

    #[test]
    fn the_reason_is_the_last_line_of_this_start_only() {
        let dir = tempfile::tempdir().unwrap();
        let first = sleeper(
            dir.path(),
            "echo 'qemu-system-x86_64: old failure' >&2; exit 1",
        );
        first.wait_timeout(Duration::from_secs(10)).unwrap();
        let h = sleeper(
            dir.path(),
            "echo 'qemu-system-x86_64: warning: whatever' >&2; \
             echo 'qemu-system-x86_64: cannot set up guest memory: Cannot allocate memory' >&2; \
             echo 'qemu-system-x86_64: warning: later' >&2; exit 1",
        );
        h.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(
            h.exit_reason().unwrap(),
            "QEMU exited with code 1: cannot set up guest memory: Cannot allocate memory"
        );
        let silent = sleeper(dir.path(), "exit 1");
        silent.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(silent.exit_reason().unwrap().contains("without a message"));
        let clean = sleeper(dir.path(), "echo bye; exit 0");
        clean.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(clean.exit_reason(), None);
        // Every start has its section, headed by its command line.
        let log = std::fs::read_to_string(dir.path().join("qemu.log")).unwrap();
        assert_eq!(log.matches(SECTION_MARK).count(), 4);
        assert!(log.contains("$ /bin/sh -c 'exit 1'"), "{log}");
    }

    #[test]
    fn reason_lines() {
        assert_eq!(
            reason_line("qemu: invalid kernel header\n").as_deref(),
            Some("invalid kernel header")
        );
        assert_eq!(reason_line("\n\n"), None);
        assert_eq!(
            reason_line("qemu-system-x86_64: warning: only this\n").as_deref(),
            Some("warning: only this")
        );
        assert_eq!(
            reason_line("some other: text").as_deref(),
            Some("some other: text")
        );
    }

    #[test]
    fn a_big_log_is_rotated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qemu.log");
        std::fs::write(&path, vec![b'x'; LOG_ROTATE_BYTES as usize + 1]).unwrap();
        let args = QemuArgs {
            program: "/bin/true".into(),
            args: vec![],
        };
        let log = QemuLog::begin(&path, &args).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() < 200);
        assert!(dir.path().join("qemu.log.1").exists());
        assert_eq!(log.output(), "");
    }
}
