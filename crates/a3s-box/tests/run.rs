//! `a3s-box run` end to end: real binary, real VM (TCG here), real kernel.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{stderr, stdout, TestHome};

#[test]
fn exit_codes_pass_through() {
    let b = TestHome::new();
    let ok = b.run(&[], &["true"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));
    let three = b.run(&[], &["sh", "-c", "exit 3"]);
    assert_eq!(three.status.code(), Some(3), "{}", stderr(&three));
    b.assert_no_boxes_left();
}

#[test]
fn missing_command_is_127_and_non_executable_is_126() {
    let b = TestHome::new();
    let missing = b.run(&[], &["no-such-command"]);
    assert_eq!(missing.status.code(), Some(127), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("no-such-command"),
        "{}",
        stderr(&missing)
    );
    let missing_path = b.run(&[], &["/bin/nope"]);
    assert_eq!(
        missing_path.status.code(),
        Some(127),
        "{}",
        stderr(&missing_path)
    );
    let not_exec = b.run(&[], &["/bin/not-executable"]);
    assert_eq!(not_exec.status.code(), Some(126), "{}", stderr(&not_exec));
    assert!(stdout(&not_exec).is_empty());
}

#[test]
fn stdout_and_stderr_are_kept_apart() {
    let b = TestHome::new();
    let o = b.run(
        &[],
        &[
            "sh",
            "-c",
            "echo to-out; echo to-err >&2; echo more-out; echo more-err >&2",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "to-out\nmore-out\n");
    assert_eq!(stderr(&o), "to-err\nmore-err\n");
}

#[test]
fn env_workdir_and_user_are_applied() {
    let b = TestHome::new();
    let o = b.run(
        &[
            "-e",
            "GREETING=hello world",
            "-e",
            "EMPTY=",
            "-w",
            "/tmp",
            "-u",
            "tester",
        ],
        &[
            "sh",
            "-c",
            "echo \"$GREETING|${EMPTY-unset}|$(pwd)|$(id -u):$(id -g)|$(id -G)|$HOME|$PATH\"",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).trim(),
        "hello world||/tmp|1000:1000|1000 50|/home/tester|\
         /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let o = b.run(
        &["-u", "4242:50", "-w", "/made/by/workdir"],
        &["sh", "-c", "echo $(id -u):$(id -g) $(pwd)"],
    );
    assert_eq!(
        stdout(&o).trim(),
        "4242:50 /made/by/workdir",
        "{}",
        stderr(&o)
    );
    let o = b.run(&["-u", "nosuchuser"], &["true"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("nosuchuser"), "{}", stderr(&o));
}

#[test]
fn ten_megabytes_of_output_arrive_intact() {
    let b = TestHome::new();
    let o = b.run(&[], &["seq", "1", "1500000"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let expected: String = (1..=1_500_000).map(|n| format!("{n}\n")).collect();
    assert!(expected.len() > 10_000_000);
    assert_eq!(o.stdout.len(), expected.len());
    assert!(o.stdout == expected.as_bytes(), "output differs");
}

#[test]
fn the_guest_runs_its_own_kernel() {
    let b = TestHome::new();
    let o = b.run(&[], &["uname", "-r"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let host = std::process::Command::new("uname")
        .arg("-r")
        .output()
        .unwrap();
    let guest = stdout(&o);
    assert!(guest.starts_with("6.12"), "guest kernel {guest}");
    assert_ne!(guest, stdout(&host));
    // PID namespace: the workload is PID 1 of its own namespace.
    let o = b.run(&[], &["sh", "-c", "echo $$"]);
    assert_eq!(stdout(&o).trim(), "1");
}

#[test]
fn the_rootfs_directory_is_never_modified() {
    let b = TestHome::new();
    let before = snapshot(&common::rootfs());
    let o = b.run(
        &[],
        &[
            "sh",
            "-c",
            "echo x > /new-file && rm /bin/ls && mkdir /etc/new && echo ok",
        ],
    );
    assert_eq!(stdout(&o), "ok\n", "{}", stderr(&o));
    assert_eq!(snapshot(&common::rootfs()), before);
}

fn snapshot(dir: &std::path::Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            out.push((e.path().display().to_string(), m.len()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// A stored `--rm` box (named, so supervised by a shim) is removed by its
/// supervisor the moment it ends; `run` must still get its last output and
/// its code, and return only once the box is gone.
#[test]
fn a_named_rm_box_returns_its_last_output_and_code_then_is_gone() {
    let b = TestHome::new();
    for i in 0..3 {
        let name = format!("rm{i}");
        let o = b.run(&["--name", &name], &["sh", "-c", "echo last-line; exit 7"]);
        assert_eq!(o.status.code(), Some(7), "round {i}: {}", stderr(&o));
        assert_eq!(stdout(&o), "last-line\n", "round {i}");
        assert!(!b.cli(&["inspect", &name]).status.success(), "round {i}");
        b.assert_no_boxes_left();
    }
    // `wait` on a running `--rm` box gets its code too (as `docker wait`).
    b.run_detached(&["--rm", "--name", "w"], &["sh", "-c", "sleep 3; exit 5"]);
    let o = b.cli(&["wait", "w"]);
    assert_eq!(o.status.code(), Some(5), "{}", stderr(&o));
    assert_eq!(stdout(&o), "5\n");
    b.assert_no_boxes_left();
    // So does `attach`, with the output that follows.
    b.run_detached(
        &["--rm", "--name", "a"],
        &["sh", "-c", "sleep 3; echo bye; exit 4"],
    );
    let o = b.cli(&["attach", "--no-stdin", "a"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert_eq!(stdout(&o), "bye\n");
    // And `start -a` of a box made by `create --rm`.
    let o = b
        .cmd()
        .args([
            "create", "--rm", "--name", "c", "--cpus", "1", "--memory", "128m",
        ])
        .arg("--rootfs")
        .arg(common::rootfs())
        .args(["--", "sh", "-c", "echo end; exit 6"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = b.cli(&["start", "-a", "c"]);
    assert_eq!(o.status.code(), Some(6), "{}", stderr(&o));
    assert_eq!(stdout(&o), "end\n");
    b.assert_no_boxes_left();
}

#[test]
fn a3s_box_errors_exit_125_with_one_line() {
    let b = TestHome::new();
    let o = b
        .cmd()
        .args([
            "run",
            "--rm",
            "--rootfs",
            "/nonexistent/rootfs",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/rootfs"), "{err}");

    let o = b
        .cmd()
        .args([
            "run",
            "--rm",
            "--kernel",
            "/nonexistent/vmlinux",
            "--rootfs",
        ])
        .arg(common::rootfs())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("guest kernel not found at /nonexistent/vmlinux"),
        "{err}"
    );

    let o = b.cmd().args(["run", "--bogus-flag"]).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    let o = b
        .cmd()
        .args(["run", "--rm", "--memory", "lots", "--rootfs", "/"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(
        stderr(&o).contains("invalid --memory \"lots\""),
        "{}",
        stderr(&o)
    );
    b.assert_no_boxes_left();
}

#[test]
fn a_kernel_panic_is_reported_with_the_console_not_a_hang() {
    let b = TestHome::new();
    // An initramfs without /init: the kernel finds no init and panics.
    let empty = b.home.path().join("empty.cpio");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cd /var/empty 2>/dev/null || cd \"$(mktemp -d)\"; printf '' | cpio -o -H newc --quiet > {}", empty.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let start = Instant::now();
    let o = b
        .cmd()
        .env("A3S_BOX_INITRAMFS", &empty)
        .args(["run", "--rm", "--cpus", "1", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("Kernel panic"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(60));
    b.assert_no_boxes_left();
}

#[test]
fn sigterm_to_the_cli_reaches_the_workload() {
    let b = TestHome::new();
    let mut child = b
        .foreground()
        .args([
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.1; done",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    common::send_signal(child.id().into(), 15);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(42));
}

#[test]
fn a_killed_cli_takes_its_vm_along_and_leaves_no_debris() {
    let b = TestHome::new();
    let mut child = b
        .foreground()
        .args(["--", "sh", "-c", "echo ready; sleep 60"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    let boxes = b.home.path().join("boxes");
    let dirs: Vec<_> = std::fs::read_dir(&boxes)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1);
    child.kill().unwrap();
    child.wait().unwrap();
    // QEMU dies with its parent, so nothing holds the box's socket open.
    let deadline = Instant::now() + Duration::from_secs(10);
    let qemu_alive = || {
        std::process::Command::new("pgrep")
            .args(["-f", &dirs[0].join("agent.sock").display().to_string()])
            .output()
            .unwrap()
            .status
            .success()
    };
    while qemu_alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!qemu_alive(), "QEMU outlived the killed CLI");
    // The next run removes what the killed one left.
    let o = b.run(&[], &["true"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    b.assert_no_boxes_left();
}

#[test]
fn both_root_image_formats_boot() {
    let b = TestHome::new();
    for format in ["erofs", "ext4"] {
        let mut c = b.cmd();
        c.env("A3S_BOX_ROOTFS_FORMAT", format)
            .args(["run", "--rm", "--cpus", "1", "--memory", "256m", "--rootfs"])
            .arg(common::rootfs())
            .args(["--", "sh", "-c", "grep ' /a3s/lower ' /proc/mounts >/dev/null || awk '$2==\"/\"{print $3}' /proc/mounts; cat /etc/issue"]);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{format}: {}", stderr(&o));
        assert!(
            stdout(&o).contains("a3s-box test rootfs"),
            "{format}: {}",
            stdout(&o)
        );
    }
}

#[test]
fn a_guest_that_never_becomes_ready_times_out_with_the_console() {
    let b = TestHome::new();
    // An init that prints and then hangs: the guest never says hello.
    let dir = b.home.path().join("hang");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("init.c"),
        "#include <stdio.h>\n#include <unistd.h>\nint main(void){puts(\"stuck-init-here\");fflush(stdout);for(;;)pause();}\n",
    )
    .unwrap();
    let script =
        "gcc -O2 -static -o init init.c && echo init | cpio -o -H newc --quiet > hang.cpio";
    let built = std::process::Command::new("sh")
        .args(["-c", script])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(
        built.success(),
        "building the hanging init needs gcc and cpio (make setup)"
    );
    let start = Instant::now();
    let o = b
        .foreground()
        .env("A3S_BOX_INITRAMFS", dir.join("hang.cpio"))
        .env("A3S_BOX_BOOT_TIMEOUT_SECS", "8")
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    let err = stderr(&o);
    assert!(err.contains("did not become ready within 8s"), "{err}");
    assert!(
        err.contains("stuck-init-here"),
        "console tail missing: {err}"
    );
    assert!(start.elapsed() < Duration::from_secs(40));
    b.assert_no_boxes_left();
}

#[test]
fn loopback_is_up_and_the_network_files_are_there_even_on_a_read_only_root() {
    let b = TestHome::new();
    // No network: the box's own name is on loopback.
    let o = b.run(
        &["--read-only", "--hostname", "h1", "--network", "none"],
        &[
            "sh",
            "-c",
            "httpd -p 127.0.0.1:8080 -h /etc && wget -qO- http://127.0.0.1:8080/hostname; \
             tail -1 /etc/hosts; (echo x >/etc/hosts) 2>&1; grep -c ' /etc/host[names]* .* ro,' /proc/mounts",
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.starts_with("h1\n127.0.0.1\th1\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(
        out.ends_with("\n2\n"),
        "hostname and hosts are read-only mounts: {out}"
    );
}
