//! Helpers for tests that drive the real `a3s-box` binary and boot real VMs.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The binary under test.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_a3s-box"))
}

/// Boot assets built by `make setup` / `make test`: target/share/a3s-box.
pub fn share() -> PathBuf {
    bin()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("share/a3s-box")
}

/// The busybox root filesystem built by scripts/build-rootfs.sh.
pub fn rootfs() -> PathBuf {
    let dir = share().join("rootfs-busybox");
    assert!(
        dir.join("bin/busybox").exists(),
        "{} missing: run `make test` (or scripts/build-rootfs.sh)",
        dir.display()
    );
    dir
}

/// A command with its own empty A3S_HOME.
#[derive(Debug)]
pub struct TestHome {
    pub home: tempfile::TempDir,
}

impl Default for TestHome {
    fn default() -> Self {
        TestHome {
            home: tempfile::Builder::new().prefix("a3s").tempdir().unwrap(),
        }
    }
}

impl Drop for TestHome {
    /// Remove whatever boxes a test leaves (it may have failed half-way):
    /// their VMs must not outlive the test's home.
    fn drop(&mut self) {
        let Ok(o) = self.cmd().args(["ps", "-aq", "--no-trunc"]).output() else {
            return;
        };
        for id in String::from_utf8_lossy(&o.stdout).split_whitespace() {
            let _ = self.cmd().args(["rm", "-f", id]).output();
        }
    }
}

impl TestHome {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        c.env("A3S_HOME", self.home.path())
            .env_remove("A3S_BOX_KERNEL")
            .env_remove("A3S_BOX_ACCEL");
        c
    }

    /// `a3s-box run --rm --cpus 1 --memory 256m --rootfs R <extra> -- <command>`.
    pub fn run(&self, extra: &[&str], command: &[&str]) -> Output {
        let mut c = self.cmd();
        c.args(["run", "--rm", "--cpus", "1", "--memory", "256m", "--rootfs"])
            .arg(rootfs())
            .args(extra)
            .arg("--")
            .args(command);
        c.output().unwrap()
    }

    /// Nothing is left in the home's box directory.
    pub fn assert_no_boxes_left(&self) {
        let boxes = self.home.path().join("boxes");
        let left: Vec<_> = std::fs::read_dir(&boxes)
            .map(|d| {
                d.map(|e| e.unwrap().path())
                    .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// Wait up to `secs` until no process of this home (a shim, QEMU, a
    /// daemon) runs. A network's helper (`a3s-box-netd`) is not counted:
    /// it stays for its grace period by design, for the next box, and
    /// leaves with the home (`tests/network.rs` checks it goes).
    pub fn assert_no_process_left(&self, secs: u64) {
        let home = self.home.path().display().to_string();
        let left = || -> Vec<String> {
            let o = Command::new("pgrep").args(["-af", &home]).output().unwrap();
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.contains("a3s-box-netd"))
                .map(str::to_string)
                .collect()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !left().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let left = left();
        assert!(left.is_empty(), "processes left: {left:#?}");
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The stdout of a command that must have succeeded (else its stderr).
pub fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    stdout(o)
}

impl TestHome {
    /// Run `a3s-box ARGS…`, return the output.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// `run -d` a small box with extra flags; its id.
    pub fn run_detached(&self, extra: &[&str], command: &[&str]) -> String {
        let mut c = self.cmd();
        c.args(["run", "-d", "--cpus", "1", "--memory", "128m", "--rootfs"])
            .arg(rootfs())
            .args(extra)
            .arg("--")
            .args(command);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "run -d: {}", stderr(&o));
        let id = stdout(&o).trim().to_string();
        assert_eq!(id.len(), 64, "{id}");
        id
    }

    /// `inspect` of one box as JSON.
    pub fn inspect(&self, key: &str) -> serde_json::Value {
        let o = self.cli(&["inspect", key]);
        assert_eq!(o.status.code(), Some(0), "inspect: {}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v[0].clone()
    }

    /// Poll `inspect` until `pred` holds (or panic after `secs`).
    pub fn wait_for(
        &self,
        key: &str,
        secs: u64,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let v = self.inspect(key);
            if pred(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting on {key}: {v:#}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// `kill -SIG PID`.
pub fn send_signal(pid: u64, sig: i32) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

impl TestHome {
    /// `a3s-box run --rm --cpus 1 --memory 256m --rootfs R` (add `--` and the command).
    pub fn foreground(&self) -> Command {
        let mut c = self.cmd();
        c.args(["run", "--rm", "--cpus", "1", "--memory", "256m", "--rootfs"])
            .arg(rootfs());
        c
    }
}
