//! `exec` through the real binary into boxes running in real VMs: exit
//! codes, streams, stdin, 100 MB each way, 20 concurrent sessions, signals,
//! and a client killed on the host.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{send_signal, stderr, stdout, TestHome};

const IDLE: &[&str] = &["sh", "-c", "while :; do sleep 1; done"];

fn exec(b: &TestHome, args: &[&str]) -> std::process::Output {
    let mut all = vec!["exec"];
    all.extend_from_slice(args);
    b.cli(&all)
}

fn sha256(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

#[test]
fn exit_codes_streams_env_user_workdir() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x", "-e", "BOXVAR=fromrun"], IDLE);

    let o = exec(&b, &["x", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");

    let o = exec(&b, &["x", "no-such-program"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("executable file not found"),
        "{}",
        stderr(&o)
    );
    let o = exec(&b, &["x", "/etc/passwd"]);
    assert_eq!(o.status.code(), Some(126), "{}", stderr(&o));

    let o = exec(
        &b,
        &[
            "-u",
            "1000:1000",
            "-w",
            "/tmp/work",
            "-e",
            "A=1",
            "x",
            "sh",
            "-c",
            "id -u; id -g; pwd; echo $A $BOXVAR; hostname",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let hostname = b.inspect("x")["Config"]["Hostname"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let lines: Vec<String> = stdout(&o).lines().map(String::from).collect();
    assert_eq!(lines[..4], ["1000", "1000", "/tmp/work", "1 fromrun"]);
    if !hostname.is_empty() {
        assert_eq!(lines[4], hostname);
    }

    // The exec'd process lives in the box: it sees the box's processes.
    let o = exec(&b, &["x", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"]);
    assert!(stdout(&o).starts_with("sh -c while"), "{}", stdout(&o));

    // -d returns at once; the process keeps running.
    let o = exec(&b, &["-d", "x", "sh", "-c", "sleep 1; echo later > /tmp/d"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let deadline = Instant::now() + Duration::from_secs(30);
    while stdout(&exec(&b, &["x", "cat", "/tmp/d"])) != "later\n" {
        assert!(Instant::now() < deadline, "exec -d never ran");
        std::thread::sleep(Duration::from_millis(200));
    }

    // A stopped box is a clear error.
    b.cli(&["stop", "-t", "1", "x"]);
    let o = exec(&b, &["x", "true"]);
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("not running"), "{}", stderr(&o));
    b.cli(&["rm", "-f", "x"]);
}

#[test]
fn stdin_is_forwarded_and_closed_at_eof() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], IDLE);
    let mut child = b
        .cmd()
        .args(["exec", "-i", "x", "sh", "-c", "cat; echo END"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"abc\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "abc\nEND\n");
    b.cli(&["rm", "-f", "x"]);
}

#[test]
fn hundred_megabytes_each_way_arrive_intact() {
    const SIZE: usize = 100 * 1000 * 1000;
    let b = TestHome::new();
    let o = b
        .cmd()
        .args([
            "run", "-d", "--name", "x", "--cpus", "1", "--memory", "512m", "--rootfs",
        ])
        .arg(common::rootfs())
        .arg("--")
        .args(IDLE)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Guest → host: a file made in the box, read through stdout.
    let o = exec(
        &b,
        &[
            "x",
            "sh",
            "-c",
            "head -c 100000000 /dev/urandom > /tmp/big && sha256sum /tmp/big",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let guest_sum = stdout(&o)[..64].to_string();
    let started = Instant::now();
    let o = exec(&b, &["x", "cat", "/tmp/big"]);
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(o.stdout.len(), SIZE);
    assert_eq!(sha256(&o.stdout), guest_sum);
    eprintln!("stdout: {:.1} MB/s", SIZE as f64 / secs / 1e6);

    // Host → guest: random bytes through stdin.
    let mut data = vec![0u8; SIZE];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut data)
        .unwrap();
    let want = sha256(&data);
    let mut child = b
        .cmd()
        .args(["exec", "-i", "x", "sh", "-c", "sha256sum; rm /tmp/big"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout)[..64], want);
    b.cli(&["rm", "-f", "x"]);
}

#[test]
fn twenty_concurrent_execs_each_get_their_own_streams() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], IDLE);
    let children: Vec<_> = (0..20)
        .map(|i| {
            let script =
                format!("echo start {i}; sleep 1; echo end {i}; echo err {i} >&2; exit {i}");
            b.cmd()
                .args(["exec", "x", "sh", "-c", &script])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(i as i32), "{}", stderr(&out));
        assert_eq!(stdout(&out), format!("start {i}\nend {i}\n"));
        assert_eq!(stderr(&out), format!("err {i}\n"));
    }
    b.cli(&["rm", "-f", "x"]);
}

/// Spawn `exec` and wait until its stdout shows `ready`.
fn spawn_ready(b: &TestHome, args: &[&str]) -> std::process::Child {
    let mut child = b
        .cmd()
        .arg("exec")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "exec ended before it was ready");
        seen.extend_from_slice(&buf[..n]);
    }
    child.stdout = Some(out);
    child
}

#[test]
fn signals_reach_the_process_and_a_killed_client_takes_it_along() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], IDLE);
    let script = "trap 'echo got-term; exit 5' TERM; echo ready; while :; do sleep 0.1; done";
    let child = spawn_ready(&b, &["x", "sh", "-c", script]);
    send_signal(u64::from(child.id()), libc_sigterm());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout(&out).contains("got-term"), "{}", stdout(&out));

    // SIGKILL of the client on the host: the guest process does not survive.
    let mut child = spawn_ready(&b, &["x", "sh", "-c", "echo ready; exec sleep 4242"]);
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = exec(&b, &["x", "ps"]);
        if !stdout(&o).contains("sleep 4242") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "orphan exec survives: {}",
            stdout(&o)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    b.cli(&["rm", "-f", "x"]);
}

fn libc_sigterm() -> i32 {
    15
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_slow_reader_holds_the_writer_back_instead_of_buffering() {
    const SIZE: usize = 60 * 1000 * 1000;
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], IDLE);
    let shim = u32::try_from(b.inspect("x")["A3s"]["ShimPid"].as_u64().unwrap_or(0)).unwrap();
    let mut child = b
        .cmd()
        .args(["exec", "x", "head", "-c", &SIZE.to_string(), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody reads for a while: everything in between must stay bounded.
    std::thread::sleep(Duration::from_secs(4));
    let (cli_kib, shim_kib) = (
        rss_kib(child.id()),
        if shim > 0 { rss_kib(shim) } else { 0 },
    );
    assert!(cli_kib < 48 * 1024, "exec client grew to {cli_kib} KiB");
    assert!(shim_kib < 48 * 1024, "shim grew to {shim_kib} KiB");
    let mut out = child.stdout.take().unwrap();
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(total, SIZE);
    b.cli(&["rm", "-f", "x"]);
}
