//! Every way the VMM can fail before or during boot is explained: the real
//! binary with bad inputs exits 125 with a message naming the cause, and
//! leaves no box and no process behind. Most of these fail before QEMU
//! starts, so they are fast.

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{stderr, TestHome};

/// `run --rm --cpus 1 [--memory 256m] <flags> --rootfs R -- true` with `env`.
fn run(b: &TestHome, env: &[(&str, &Path)], flags: &[&str]) -> Output {
    let mut c = b.cmd();
    for (key, value) in env {
        c.env(key, value);
    }
    c.args(["run", "--rm", "--cpus", "1"]);
    if !flags.contains(&"--memory") {
        c.args(["--memory", "256m"]);
    }
    c.args(flags)
        .arg("--rootfs")
        .arg(common::rootfs())
        .args(["--", "true"]);
    c.output().unwrap()
}

/// The run failed with 125 and a message holding each of `fragments`, and
/// nothing is left: no box, no process started for it.
fn assert_explained(b: &TestHome, o: &Output, fragments: &[&str]) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(125), "{err}");
    for fragment in fragments {
        assert!(err.contains(fragment), "{fragment:?} missing from: {err}");
    }
    assert!(
        err.lines().count() <= 2,
        "the explanation is one or two lines: {err}"
    );
    assert_eq!(common::stdout(&b.cli(&["ps", "-aq"])), "", "a box is left");
    b.assert_no_boxes_left();
    assert_no_process_of(b);
    err
}

/// No process (QEMU, a daemon, a fake QEMU) has the test home in its
/// command line. The default network's helper (and its pasta) stays for
/// its grace period by design, for the next box; it leaves with the home.
fn assert_no_process_of(b: &TestHome) {
    let home = b.home.path().display().to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let found = std::process::Command::new("pgrep")
            .args(["-af", &home])
            .output()
            .unwrap();
        let left: Vec<String> = common::stdout(&found)
            .lines()
            .filter(|l| !l.contains("a3s-box-netd") && !l.contains("pasta"))
            .map(str::to_string)
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "processes left: {left:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// An executable shell script in the test home.
fn script(b: &TestHome, name: &str, body: &str) -> PathBuf {
    let path = b.home.path().join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn a_file_that_is_not_a_kernel_is_named_as_such() {
    let b = TestHome::new();
    let o = run(&b, &[], &["--kernel", "/etc/passwd"]);
    assert_explained(
        &b,
        &o,
        &["guest kernel /etc/passwd is not a Linux kernel image"],
    );
}

#[test]
fn a_missing_kernel_or_initramfs_names_the_path_and_the_fix() {
    let b = TestHome::new();
    let o = run(&b, &[], &["--kernel", "/nonexistent/vmlinux"]);
    assert_explained(
        &b,
        &o,
        &["guest kernel not found at /nonexistent/vmlinux", "--kernel"],
    );
    let o = run(
        &b,
        &[("A3S_BOX_INITRAMFS", Path::new("/nonexistent/initramfs"))],
        &[],
    );
    assert_explained(
        &b,
        &o,
        &["guest initramfs not found at /nonexistent/initramfs"],
    );
}

#[test]
fn memory_or_cpus_the_host_cannot_give_are_refused_with_the_numbers() {
    let b = TestHome::new();
    let available_gib = std::fs::read_to_string("/proc/meminfo")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap()
        >> 20;
    let memory = format!("{}g", (available_gib + 1).max(100));
    let o = run(&b, &[], &["--memory", &memory]);
    let err = assert_explained(
        &b,
        &o,
        &[
            &format!("--memory {memory}: the host has "),
            "GiB available",
        ],
    );
    assert!(!err.contains("hypervisor failed"), "{err}");

    // The CPUs of our affinity mask, as a3s-box counts them.
    let cpus: u32 = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed:"))
        .unwrap()
        .trim()
        .chars()
        .filter_map(|c| c.to_digit(16))
        .map(u32::count_ones)
        .sum();
    if cpus < 64 {
        let mut c = b.cmd();
        c.args([
            "run", "--rm", "--cpus", "64", "--memory", "128m", "--rootfs",
        ])
        .arg(common::rootfs())
        .args(["--", "true"]);
        let o = c.output().unwrap();
        assert_explained(&b, &o, &["--cpus 64: this host gives a3s-box "]);
    }
}

#[test]
fn a_missing_or_unrunnable_qemu_names_the_path_and_what_to_do() {
    let b = TestHome::new();
    let o = run(&b, &[("A3S_BOX_QEMU", Path::new("/nonexistent"))], &[]);
    assert_explained(
        &b,
        &o,
        &[
            "QEMU not found at /nonexistent",
            "qemu-system-x86",
            "A3S_BOX_QEMU",
        ],
    );
    let plain = b.home.path().join("not-executable");
    std::fs::write(&plain, "data").unwrap();
    let o = run(&b, &[("A3S_BOX_QEMU", &plain)], &[]);
    assert_explained(
        &b,
        &o,
        &[
            &format!("QEMU at {} cannot be run", plain.display()),
            "not executable",
            "A3S_BOX_QEMU",
        ],
    );
}

#[test]
fn a_qemu_that_exits_at_once_is_named_with_its_exit() {
    let b = TestHome::new();
    let o = run(&b, &[("A3S_BOX_QEMU", Path::new("/bin/false"))], &[]);
    assert_explained(
        &b,
        &o,
        &["QEMU (/bin/false) exited with code 1 without a message"],
    );
    let failing = script(
        &b,
        "qemu-fails",
        "echo 'qemu-system-x86_64: -drive id=root: Could not open: Permission denied' >&2; exit 1",
    );
    let o = run(&b, &[("A3S_BOX_QEMU", &failing)], &[]);
    let err = assert_explained(
        &b,
        &o,
        &["QEMU exited with code 1: -drive id=root: Could not open: Permission denied"],
    );
    assert!(!err.contains("agent socket"), "{err}");
}

#[test]
fn a_qemu_that_dies_during_boot_is_the_reason_not_the_transport() {
    let b = TestHome::new();
    // A real QEMU that dies while the guest boots (the host is connected
    // to its agent socket by then, or about to be).
    let dying = script(
        &b,
        "qemu-dies",
        "qemu-system-x86_64 \"$@\" & pid=$!\nsleep 0.5; kill -9 $pid; wait $pid\n\
         echo 'qemu-system-x86_64: fake failure during boot' >&2; exit 1",
    );
    // A workload that outlasts the fake QEMU's life even under KVM.
    let mut c = b.cmd();
    c.env("A3S_BOX_QEMU", &dying)
        .args(["run", "--rm", "--cpus", "1", "--memory", "256m", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "sleep", "30"]);
    let o = c.output().unwrap();
    let err = assert_explained(
        &b,
        &o,
        &["hypervisor failed: QEMU exited with code 1: fake failure during boot"],
    );
    assert!(!err.contains("transport"), "{err}");
    assert!(!err.contains("Connection reset"), "{err}");
}

#[test]
fn debug_logging_shows_the_qemu_command_line_and_its_output() {
    let b = TestHome::new();
    let failing = script(
        &b,
        "qemu-says",
        "echo 'qemu-system-x86_64: something QEMU said' >&2; exit 1",
    );
    let mut c = b.cmd();
    c.env("A3S_BOX_QEMU", &failing)
        .args(["--log-level", "debug", "run", "--rm", "--cpus", "1"])
        .args(["--memory", "256m", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "true"]);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("starting QEMU"), "{err}");
    assert!(err.contains("-M microvm,"), "{err}");
    assert!(err.contains("-append 'console=ttyS0"), "{err}");
    assert!(err.contains("QEMU exited"), "{err}");
    assert!(
        err.matches("something QEMU said").count() >= 2,
        "the output in the log and in the error: {err}"
    );
    b.assert_no_boxes_left();
    assert_no_process_of(&b);
}

#[test]
fn a_detached_box_that_cannot_start_ends_run_with_125() {
    let b = TestHome::new();
    let mut c = b.cmd();
    c.args(["run", "-d", "--cpus", "1", "--memory", "128m"])
        .args(["--kernel", "/etc/passwd", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "true"]);
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(125), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a Linux kernel image"),
        "{}",
        stderr(&o)
    );
    // Like `docker run -d`, the box stays (exited), with the reason.
    let id = common::stdout(&b.cli(&["ps", "-aq"]));
    let v = b.inspect(id.trim());
    assert!(
        v["State"]["Error"]
            .as_str()
            .unwrap()
            .contains("not a Linux kernel image"),
        "{v:#}"
    );
    assert_eq!(b.cli(&["rm", "-f", id.trim()]).status.code(), Some(0));
    assert_no_process_of(&b);
}
