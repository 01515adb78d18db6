//! Box storage through the real binary and real VMs: the writable layer
//! (persistence, size cap, read-only root, cost of creating boxes), tmpfs,
//! bind mounts and named volumes; new volumes filled from the image and the
//! layer's space given back (`storage/fill.rs`); bind mounts of directories
//! and single files (`storage/binds.rs`).

#![allow(clippy::unwrap_used)]

#[path = "storage/binds.rs"]
mod binds;
mod common;
#[path = "storage/fill.rs"]
mod fill;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{rootfs, stderr, stdout, TestHome};

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    stdout(o)
}

/// `create --name NAME` a small box with `extra` flags.
fn create(b: &TestHome, name: &str, extra: &[&str], command: &[&str]) {
    let mut c = b.cmd();
    c.args(["create", "--name", name, "--cpus", "1", "--memory", "128m"])
        .args(extra)
        .arg("--rootfs")
        .arg(rootfs())
        .arg("--")
        .args(command);
    ok(&c.output().unwrap());
}

/// Bytes allocated on disk under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let m = entry.metadata().unwrap();
        total += m.blocks() * 512;
        if m.is_dir() {
            total += du(&entry.path());
        }
    }
    total
}

#[test]
fn changes_persist_across_start_and_restart_and_rm_removes_them() {
    let b = TestHome::new();
    let counter = &[
        "sh",
        "-c",
        "echo run >> /etc/runs; rm -f /bin/vi; wc -l < /etc/runs; ls /bin/vi 2>&1 | grep -c 'No such'",
    ];
    create(&b, "keep", &[], counter);
    for expected in ["1\n1\n", "2\n1\n"] {
        assert_eq!(ok(&b.cli(&["start", "-a", "keep"])), expected);
    }
    // A detached box stopped by `stop` (its workload ignores SIGTERM, so it
    // is SIGKILLed) keeps what it wrote.
    let id = b.run_detached(
        &["--name", "svc"],
        &[
            "sh",
            "-c",
            // /late is written once, after the sync: only a clean power-off
            // keeps it. (Rewriting it on every start would race the exec below.)
            "echo $$ >> /pids; sync; [ -e /late ] || echo written > /late; sleep 600",
        ],
    );
    b.wait_for(&id, 60, |v| v["State"]["Status"] == "running");
    std::thread::sleep(std::time::Duration::from_millis(500));
    ok(&b.cli(&["restart", "-t", "1", "svc"]));
    let show =
        "i=0; until [ $(wc -l < /pids) -ge 2 ] || [ $i -ge 300 ]; do sleep 0.1; i=$((i+1)); done; \
                wc -l < /pids; cat /late";
    let out = ok(&b.cli(&["exec", "svc", "sh", "-c", show]));
    assert_eq!(out, "2\nwritten\n");
    let dir = b.home.path().join("boxes").join(&id[..12]);
    assert!(dir.join("rw.img").is_file());
    ok(&b.cli(&["rm", "-f", "svc"]));
    assert!(!dir.exists(), "rm removes the writable layer");
}

#[test]
fn twenty_creates_copy_nothing_and_the_size_cap_gives_enospc() {
    let b = TestHome::new();
    // Warm the template and root image caches, then measure 20 creates.
    create(&b, "warm", &[], &["true"]);
    let boxes = b.home.path().join("boxes");
    let before = du(&boxes);
    for i in 0..20 {
        create(&b, &format!("b{i}"), &[], &["true"]);
    }
    let added = du(&boxes) - before;
    assert!(added < 20 << 20, "20 creates added {added} bytes");
    eprintln!("20 creates added {} KiB on disk", added / 1024);

    create(
        &b,
        "cap",
        &["--storage-opt", "size=32m"],
        &[
            "sh",
            "-c",
            "dd if=/dev/zero of=/big bs=1M count=64 2>&1 | grep -o 'No space left'; rm /big; echo fine > /after; cat /after",
        ],
    );
    assert_eq!(ok(&b.cli(&["start", "-a", "cap"])), "No space left\nfine\n");
    // The layer is still usable after filling up.
    assert_eq!(ok(&b.cli(&["start", "-a", "cap"])), "No space left\nfine\n");
}

#[test]
fn read_only_root_with_tmpfs_and_a_missing_workdir() {
    let b = TestHome::new();
    let o = b.run(
        &["--read-only", "--tmpfs", "/scratch:size=1m,mode=700", "-w", "/new/dir"],
        &[
            "sh",
            "-c",
            "pwd; touch /x 2>&1; stat -c %a /scratch; dd if=/dev/zero of=/scratch/f bs=1k count=2048 2>&1 | grep -o 'No space left'; grep ' /scratch ' /proc/mounts",
        ],
    );
    let out = ok(&o);
    assert!(out.starts_with("/new/dir\n"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("700\nNo space left\n"), "{out}");
    assert!(
        out.contains("tmpfs /scratch tmpfs rw,nosuid,nodev,noexec"),
        "{out}"
    );
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

#[test]
fn a_named_volume_is_shared_by_two_boxes_and_outlives_them() {
    let b = TestHome::new();
    let a = b.run_detached(&["-v", "shared:/v"], &["sleep", "600"]);
    let c = b.run_detached(&["-v", "shared:/w", "-v", "/anon"], &["sleep", "600"]);
    for id in [&a, &c] {
        b.wait_for(id, 60, |v| v["State"]["Status"] == "running");
    }
    ok(&b.cli(&["exec", &a, "sh", "-c", "echo one > /v/f"]));
    assert_eq!(ok(&b.cli(&["exec", &c, "cat", "/w/f"])), "one\n");
    ok(&b.cli(&["exec", &c, "sh", "-c", "echo two >> /w/f"]));
    // Another guest trusts what it knew of the file for at most 0.1 s.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(ok(&b.cli(&["exec", &a, "cat", "/v/f"])), "one\ntwo\n");

    let ls = ok(&b.cli(&["volume", "ls", "-q"]));
    assert_eq!(ls.lines().count(), 2, "{ls}");
    let anon = ls.lines().find(|l| *l != "shared").unwrap().to_string();
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(&b.cli(&["volume", "inspect", "shared"]))).unwrap();
    assert_eq!(inspect[0]["UsedBy"].as_array().unwrap().len(), 2);
    let o = b.cli(&["volume", "rm", "shared"]);
    assert_eq!(o.status.code(), Some(125), "in use: {}", stderr(&o));

    ok(&b.cli(&["rm", "-f", &a]));
    ok(&b.cli(&["rm", "-f", "-v", &c]));
    let ls = ok(&b.cli(&["volume", "ls", "-q"]));
    assert_eq!(ls, "shared\n", "rm -v removes the anonymous volume only");
    assert!(!ls.contains(&anon));
    let d = b.run(&["-v", "shared:/again"], &["cat", "/again/f"]);
    assert_eq!(ok(&d), "one\ntwo\n");
    ok(&b.cli(&["volume", "rm", "shared"]));
    assert_eq!(ok(&b.cli(&["volume", "ls", "-q"])), "");
}

#[test]
fn diff_and_export_work_on_stopped_and_running_boxes() {
    let b = TestHome::new();
    create(
        &b,
        "d",
        &[],
        &[
            "sh",
            "-c",
            "echo n > /etc/new; rm /bin/vi; mkdir -p /opt/x; echo y > /opt/x/y; [ -n \"$KEEP\" ] && sleep 600; true",
        ],
    );
    assert_eq!(
        ok(&b.cli(&["diff", "d"])),
        "",
        "a created box has no changes"
    );
    ok(&b.cli(&["start", "-a", "d"]));
    let expected = "C /bin\nD /bin/vi\nC /etc\nA /etc/new\nA /opt\nA /opt/x\nA /opt/x/y\n";
    assert_eq!(ok(&b.cli(&["diff", "d"])), expected, "stopped box");
    let tar = b.home.path().join("d.tar");
    ok(&b.cli(&["export", "-o", tar.to_str().unwrap(), "d"]));
    let listing = stdout(
        &std::process::Command::new("tar")
            .arg("tvf")
            .arg(&tar)
            .output()
            .unwrap(),
    );
    assert!(
        listing.contains(" opt/x/y\n") && listing.contains(" bin/busybox\n"),
        "{listing}"
    );
    assert!(!listing.contains(" bin/vi\n"), "{listing}");

    let id = b.run_detached(
        &[
            "-e",
            "KEEP=1",
            "-v",
            &format!("{}:/data", b.home.path().display()),
        ],
        &["sh", "-c", "echo r > /running; sleep 600"],
    );
    b.wait_for(&id, 60, |v| v["State"]["Status"] == "running");
    // "running" is said once the main process starts; its first write
    // follows a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let diff = loop {
        let diff = ok(&b.cli(&["diff", &id]));
        if diff.contains("A /running\n") || std::time::Instant::now() > deadline {
            break diff;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(diff.contains("A /running\n"), "{diff}");
    // To stdout, read by tar from a pipe.
    let sh = format!("{} export {id} | tar tf -", common::bin().display());
    let o = std::process::Command::new("sh")
        .args(["-c", &sh])
        .env("A3S_HOME", b.home.path())
        .output()
        .unwrap();
    let names = ok(&o);
    assert!(names.lines().any(|n| n == "running"), "{names}");
    assert!(
        !names.lines().any(|n| n.starts_with("data/")),
        "mounts are not exported"
    );
    ok(&b.cli(&["rm", "-f", &id]));
}

#[test]
fn import_then_commit_make_images_that_run() {
    let b = TestHome::new();
    let tar = b.home.path().join("root.tar");
    let made = std::process::Command::new("tar")
        .arg("-C")
        .arg(rootfs())
        .arg("-cf")
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(made.success());
    let id = ok(&b.cli(&[
        "import",
        "-c",
        "CMD [\"echo\", \"base\"]",
        tar.to_str().unwrap(),
        "base:1",
    ]));
    assert!(id.starts_with("sha256:"), "{id}");
    let o = b
        .cmd()
        .args(["run", "--rm", "--cpus", "1", "--memory", "128m", "base:1"])
        .output()
        .unwrap();
    assert_eq!(ok(&o), "base\n");

    let o = b
        .cmd()
        .args([
            "create", "--name", "c", "--cpus", "1", "--memory", "128m", "base:1",
        ])
        .args(["sh", "-c", "echo hello > /etc/motd; rm /bin/vi"])
        .output()
        .unwrap();
    ok(&o);
    ok(&b.cli(&["start", "-a", "c"]));
    ok(&b.cli(&[
        "commit",
        "-m",
        "motd",
        "-a",
        "tester",
        "-c",
        "CMD [\"cat\", \"/etc/motd\"]",
        "-c",
        "ENV GREETING=hi",
        "-c",
        "WORKDIR /etc",
        "c",
        "next:1",
    ]));
    let history = ok(&b.cli(&["history", "next:1"]));
    assert!(
        history.contains("motd") && history.lines().count() == 3,
        "{history}"
    );
    let run = |cmd: &[&str]| {
        let o = b
            .cmd()
            .args(["run", "--rm", "--cpus", "1", "--memory", "128m", "next:1"])
            .args(cmd)
            .output()
            .unwrap();
        ok(&o)
    };
    assert_eq!(run(&[]), "hello\n");
    assert_eq!(
        run(&[
            "sh",
            "-c",
            "pwd; echo $GREETING; ls /bin/vi 2>&1 | grep -c 'No such'"
        ]),
        "/etc\nhi\n1\n"
    );
    let df = ok(&b.cli(&["system", "df"]));
    assert!(
        df.contains("Images") && df.contains("Boxes") && df.contains("Local Volumes"),
        "{df}"
    );
}
