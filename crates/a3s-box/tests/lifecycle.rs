//! Box lifecycle through the real binary: detached boxes with a shim, the
//! store, reconciliation after crashes. The supervisor's own logic
//! (restart policies and their back-off, `--rm` and its holds, wait
//! conditions, stop escalation) is tested in-process over a fake
//! hypervisor: `a3s_box_runtime::sandbox` (`sandbox/tests/`).

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{stderr, stdout, TestHome};

const TICKER: &[&str] = &[
    "sh",
    "-c",
    "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.2; done",
];

fn status(v: &serde_json::Value) -> &str {
    v["State"]["Status"].as_str().unwrap()
}

fn pid_alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn full_cycle_run_ps_logs_stop_start_restart_rm() {
    let b = TestHome::new();
    let id = b.run_detached(&["--name", "web", "-l", "tier=front"], TICKER);
    let ps = stdout(&b.cli(&["ps"]));
    assert!(
        ps.contains(&id[..12]) && ps.contains("web") && ps.contains("Up"),
        "{ps}"
    );
    let v = b.inspect("web");
    assert_eq!(v["Id"], id.as_str());
    assert_eq!(status(&v), "running");
    assert_eq!(v["State"]["Running"], true);
    assert!(v["State"]["Pid"].as_u64().unwrap() > 0);
    assert!(
        v["A3s"]["Accelerator"].as_str().unwrap().starts_with("tcg")
            || v["A3s"]["Accelerator"].as_str().unwrap().starts_with("kvm")
    );

    // Logs arrive and keep coming.
    b.wait_for("web", 30, |_| {
        stdout(&b.cli(&["logs", "web"])).contains("tick 2")
    });
    let tail = stdout(&b.cli(&["logs", "--tail", "1", "web"]));
    assert_eq!(tail.lines().count(), 1, "{tail}");
    assert!(stdout(&b.cli(&["logs", "-t", "web"]))
        .lines()
        .next()
        .unwrap()
        .contains("Z tick 0"));

    let o = b.cli(&["stop", "-t", "1", "web"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v = b.inspect(&id[..8]);
    assert_eq!(status(&v), "exited");
    assert!(!stdout(&b.cli(&["ps"])).contains("web"));
    assert!(stdout(&b.cli(&["ps", "-a"])).contains("Exited"));
    assert_eq!(
        stdout(&b.cli(&["ps", "-aq", "--filter", "label=tier=front"])).trim(),
        &id[..12]
    );
    assert!(stdout(&b.cli(&["ps", "-aq", "--filter", "status=running"]))
        .trim()
        .is_empty());

    assert_eq!(b.cli(&["start", "web"]).status.code(), Some(0));
    assert_eq!(status(&b.inspect("web")), "running");
    let first_start = b.inspect("web")["State"]["StartedAt"].clone();
    assert_eq!(b.cli(&["restart", "-t", "1", "web"]).status.code(), Some(0));
    let v = b.inspect("web");
    assert_eq!(status(&v), "running");
    assert_ne!(v["State"]["StartedAt"], first_start);

    let o = b.cli(&["rm", "web"]);
    assert_eq!(o.status.code(), Some(125), "a running box needs -f");
    assert!(stderr(&o).contains("rm -f"));
    let vm_pid = b.inspect("web")["State"]["Pid"].as_u64().unwrap();
    assert_eq!(b.cli(&["rm", "-f", "web"]).status.code(), Some(0));
    assert!(stdout(&b.cli(&["ps", "-aq"])).trim().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(vm_pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(vm_pid), "QEMU survived rm -f");
    b.assert_no_boxes_left();
}

#[test]
fn exit_codes_names_and_auto_remove() {
    let b = TestHome::new();
    let id = b.run_detached(&["--name", "once"], &["sh", "-c", "echo done; exit 3"]);
    let o = b.cli(&["wait", "once"]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(stdout(&o).trim(), "3");
    assert_eq!(b.inspect(&id)["State"]["ExitCode"], 3);
    assert_eq!(stdout(&b.cli(&["logs", "once"])), "done\n");

    // Duplicate names are refused, and nothing is created.
    let o = b
        .cmd()
        .args(["run", "-d", "--name", "once", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("already in use"), "{}", stderr(&o));
    assert_eq!(stdout(&b.cli(&["ps", "-aq"])).lines().count(), 1);

    // A command that does not exist fails `run -d` with 127.
    let o = b
        .cmd()
        .args(["run", "-d", "--cpus", "1", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "no-such-program"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));

    // An unknown signal name is an error; an ambiguous or unknown box too.
    assert_eq!(
        b.cli(&["kill", "-s", "BOGUS", "once"]).status.code(),
        Some(125)
    );
    let o = b.cli(&["inspect", "nope"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("no such box"));
}

#[test]
fn a_killed_shim_or_vm_is_reconciled_and_rm_f_cleans_up() {
    let b = TestHome::new();
    b.run_detached(&["--name", "s"], TICKER);
    b.run_detached(&["--name", "q"], TICKER);
    let s = b.inspect("s");
    let shim = s["A3s"]["ShimPid"].as_u64().unwrap();
    let vm = s["State"]["Pid"].as_u64().unwrap();
    common::send_signal(shim, 9);
    let v = b.wait_for("s", 20, |v| status(v) == "exited");
    assert_eq!(v["State"]["ExitCode"], 137);
    assert!(
        v["State"]["Error"].as_str().unwrap().contains("shim"),
        "{v:#}"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(vm) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(vm), "QEMU outlived its shim");

    let q = b.inspect("q");
    common::send_signal(q["State"]["Pid"].as_u64().unwrap(), 9);
    let v = b.wait_for("q", 20, |v| status(v) == "exited");
    assert_eq!(v["State"]["ExitCode"], 137);
    assert!(!v["State"]["Error"].as_str().unwrap().is_empty());

    for name in ["s", "q"] {
        assert_eq!(b.cli(&["rm", "-f", name]).status.code(), Some(0));
    }
    b.assert_no_boxes_left();
}

#[test]
fn ten_boxes_start_in_parallel() {
    let b = TestHome::new();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let mut c = b.cmd();
            c.args(["run", "-d", "--cpus", "1", "--memory", "128m", "--rootfs"])
                .arg(common::rootfs())
                .args(["--", "sleep", "60"]);
            std::thread::spawn(move || c.output().unwrap())
        })
        .collect();
    let mut ids: Vec<String> = handles
        .into_iter()
        .map(|h| {
            let o = h.join().unwrap();
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            stdout(&o).trim().to_string()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 10);
    let o = b.cli(&["ps", "--format", "json"]);
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut names: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["Names"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 10);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 10, "names must be distinct");
    let mut rm = b.cmd();
    rm.args(["rm", "-f"]).args(&ids);
    assert_eq!(rm.output().unwrap().status.code(), Some(0));
    b.assert_no_boxes_left();
}

#[test]
fn pause_unpause_rename_prune_and_attach() {
    let b = TestHome::new();
    b.run_detached(&["--name", "clock"], TICKER);
    b.wait_for("clock", 30, |_| {
        stdout(&b.cli(&["logs", "clock"])).contains("tick 1")
    });
    assert_eq!(b.cli(&["pause", "clock"]).status.code(), Some(0));
    assert_eq!(status(&b.inspect("clock")), "paused");
    assert!(stdout(&b.cli(&["ps"])).contains("(Paused)"));
    // Output already on its way when the vCPUs stopped may still land.
    std::thread::sleep(Duration::from_millis(500));
    let before = stdout(&b.cli(&["logs", "clock"])).lines().count();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        stdout(&b.cli(&["logs", "clock"])).lines().count(),
        before,
        "a paused VM ran"
    );
    assert_eq!(
        b.cli(&["pause", "clock"]).status.code(),
        Some(125),
        "already paused"
    );
    assert_eq!(b.cli(&["unpause", "clock"]).status.code(), Some(0));
    b.wait_for("clock", 30, |_| {
        stdout(&b.cli(&["logs", "clock"])).lines().count() > before
    });

    assert_eq!(b.cli(&["rename", "clock", "ticker"]).status.code(), Some(0));
    assert_eq!(b.inspect("ticker")["Name"], "ticker");
    assert_eq!(b.cli(&["inspect", "clock"]).status.code(), Some(125));
    let since = stdout(&b.cli(&["logs", "--since", "1s", "ticker"]));
    assert!(since.lines().count() < stdout(&b.cli(&["logs", "ticker"])).lines().count());
    assert_eq!(
        b.cli(&["logs", "--since", "yesterday", "ticker"])
            .status
            .code(),
        Some(125)
    );

    // start -a: output of the new run only, and its exit code.
    let env_file = b.home.path().join("env");
    std::fs::write(&env_file, "# settings\nA=from-file\nB=from-file\n").unwrap();
    let mut c = b.cmd();
    c.args([
        "create",
        "--name",
        "job",
        "--cpus",
        "1",
        "--memory",
        "128m",
        "--env-file",
    ])
    .arg(&env_file)
    .args(["-e", "B=from-flag", "--entrypoint", "/bin/sh", "--rootfs"])
    .arg(common::rootfs())
    .args(["--", "-c", "echo $A $B; exit 5"]);
    assert_eq!(c.output().unwrap().status.code(), Some(0));
    assert_eq!(status(&b.inspect("job")), "created");
    let o = b.cli(&["start", "-a", "job"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(stdout(&o), "from-file from-flag\n");
    let o = b.cli(&["start", "-a", "job"]);
    assert_eq!(
        stdout(&o),
        "from-file from-flag\n",
        "only the new run's output"
    );

    let o = b.cli(&["prune"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(!stdout(&o).contains(b.inspect("ticker")["Id"].as_str().unwrap()));
    assert_eq!(
        b.cli(&["inspect", "job"]).status.code(),
        Some(125),
        "pruned"
    );
    assert_eq!(
        status(&b.inspect("ticker")),
        "running",
        "prune keeps running boxes"
    );
    b.cli(&["rm", "-f", "ticker"]);
}

#[test]
fn logs_rotate_by_size() {
    let b = TestHome::new();
    let mut c = b.cmd();
    c.env("A3S_BOX_LOG_MAX_BYTES", "20000")
        .args([
            "run", "-d", "--name", "chatty", "--cpus", "1", "--memory", "128m", "--rootfs",
        ])
        .arg(common::rootfs())
        .args(["--", "seq", "1", "3000"]);
    assert_eq!(c.output().unwrap().status.code(), Some(0));
    assert_eq!(b.cli(&["wait", "chatty"]).status.code(), Some(0));
    let dir = std::path::PathBuf::from(b.inspect("chatty")["A3s"]["Dir"].as_str().unwrap());
    assert!(std::fs::metadata(dir.join("log.jsonl")).unwrap().len() <= 20000);
    assert!(dir.join("log.jsonl.1").exists());
    let logs = stdout(&b.cli(&["logs", "chatty"]));
    assert!(logs.ends_with("2999\n3000\n"), "newest lines kept");
    assert!(logs.len() < 3000 * 5, "older lines rotated away");
    b.cli(&["rm", "chatty"]);
}

#[test]
fn a_cli_killed_during_run_d_leaves_no_half_made_box() {
    let b = TestHome::new();
    for delay_ms in [5, 50, 300] {
        let mut child = b
            .cmd()
            .args(["run", "-d", "--cpus", "1", "--memory", "128m", "--rootfs"])
            .arg(common::rootfs())
            .args(["--", "sleep", "60"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // Every box that exists is whole: it has a config and a sane state
    // (the shim, once started, carries on without the CLI).
    std::thread::sleep(Duration::from_secs(3));
    let o = b.cli(&["ps", "-a", "--format", "json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for row in rows.as_array().unwrap() {
        let state = row["State"].as_str().unwrap();
        assert!(["created", "running", "exited"].contains(&state), "{row}");
    }
    let leftovers: Vec<_> = std::fs::read_dir(b.home.path().join("boxes"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    for name in &leftovers {
        assert!(
            !name.starts_with(".new-"),
            "half-made box left: {leftovers:?}"
        );
    }
    let ids: Vec<String> = stdout(&b.cli(&["ps", "-aq"]))
        .lines()
        .map(String::from)
        .collect();
    if !ids.is_empty() {
        let mut rm = b.cmd();
        rm.args(["rm", "-f"]).args(&ids);
        assert_eq!(rm.output().unwrap().status.code(), Some(0));
    }
    b.assert_no_boxes_left();
    // No supervisor or VM of this home survives `rm -f` (QEMU follows its
    // killed shim within moments). The default network's helper (and its
    // pasta) stays for its grace period by design, for the next box; it
    // leaves with the home.
    let home = b.home.path().display().to_string();
    let survivors = || -> Vec<u8> {
        let out = std::process::Command::new("pgrep")
            .args(["-af", &home])
            .output()
            .unwrap()
            .stdout;
        String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.contains("a3s-box-netd") && !l.contains("pasta"))
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !survivors().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = survivors();
    assert!(
        left.is_empty(),
        "left running: {}",
        String::from_utf8_lossy(&left)
    );
}
