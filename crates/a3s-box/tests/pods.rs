//! Pods through the real binary: two containers in one VM, each with its
//! own root filesystem and PID namespace, reaching each other on
//! 127.0.0.1; exec, logs, stop and rm per container; `pod rm -f` ends the
//! VM and leaves no process.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{ok, stderr, stdout, TestHome};

fn pid_alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// `run -d --pod p --name NAME`: a container that says it started, keeps
/// a file of its own and serves `from-NAME` on TCP `port` (busybox nc).
fn run_in_pod(b: &TestHome, name: &str, port: u16) -> String {
    let script = format!(
        "echo started-{name}; echo {name}-root > /only-{name}; \
         while :; do echo from-{name} | nc -l -p {port}; done"
    );
    let o = b
        .cmd()
        .args(["run", "-d", "--pod", "p", "--name", name, "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    ok(&o).trim().to_string()
}

fn exec(b: &TestHome, name: &str, script: &str) -> std::process::Output {
    b.cli(&["exec", name, "sh", "-c", script])
}

/// Ask the listener on `port` until it answers (it may not listen yet).
fn fetch(b: &TestHome, from: &str, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = exec(b, from, &format!("nc 127.0.0.1 {port} </dev/null"));
        let out = stdout(&o);
        if !out.trim().is_empty() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_containers_share_a_vm_and_its_loopback_but_not_their_roots_or_pids() {
    let b = TestHome::new();
    let o = b.cli(&[
        "pod", "create", "--name", "p", "--cpus", "1", "--memory", "256m",
    ]);
    let pod_id = ok(&o).trim().to_string();
    assert_eq!(pod_id.len(), 64, "{pod_id}");
    let a = run_in_pod(&b, "a", 7001);
    let bb = run_in_pod(&b, "b", 7002);

    // One VM: both containers report the pod's QEMU.
    let vm = b.inspect("a")["State"]["Pid"].as_u64().unwrap();
    assert!(vm > 0 && pid_alive(vm));
    assert_eq!(b.inspect("b")["State"]["Pid"].as_u64(), Some(vm));
    assert_eq!(b.inspect("a")["Pod"], pod_id.as_str());
    let pod: serde_json::Value =
        serde_json::from_str(&ok(&b.cli(&["pod", "inspect", "p"]))).unwrap();
    assert_eq!(pod[0]["A3s"]["VmPid"].as_u64(), Some(vm));
    assert_eq!(pod[0]["NumContainers"], 2);
    assert_eq!(pod[0]["State"], "Running");

    // Each its own root filesystem.
    let o = exec(&b, "a", "cat /only-a; ls /only-b 2>&1");
    assert!(stdout(&o).starts_with("a-root\n"), "{}", stdout(&o));
    assert!(stdout(&o).contains("No such file"), "{}", stdout(&o));
    let o = exec(&b, "b", "cat /only-b; ls /only-a 2>&1");
    assert!(stdout(&o).starts_with("b-root\n"), "{}", stdout(&o));
    assert!(stdout(&o).contains("No such file"), "{}", stdout(&o));

    // Each its own PID namespace: PID 1 is its own main process, and the
    // other's processes are not there.
    let o = exec(&b, "a", "tr '\\0' ' ' < /proc/1/cmdline; echo; ps -o args");
    let out = stdout(&o);
    assert!(out.lines().next().unwrap().contains("7001"), "{out}");
    assert!(!out.contains("7002"), "{out}");
    let o = exec(&b, "b", "ps -o args");
    assert!(stdout(&o).contains("7002") && !stdout(&o).contains("7001"));

    // One loopback: each reaches the other's listener on 127.0.0.1.
    assert_eq!(fetch(&b, "a", 7002), "from-b\n");
    assert_eq!(fetch(&b, "b", 7001), "from-a\n");

    // Logs per container; ps shows the pod.
    assert_eq!(stdout(&b.cli(&["logs", "a"])), "started-a\n");
    assert_eq!(stdout(&b.cli(&["logs", "b"])), "started-b\n");
    let ps = stdout(&b.cli(&["pod", "ps"]));
    assert!(ps.contains("POD") && ps.matches(" p ").count() >= 2, "{ps}");
    let mut ids: Vec<String> = stdout(&b.cli(&["ps", "-q", "--no-trunc", "--filter", "pod=p"]))
        .lines()
        .map(String::from)
        .collect();
    ids.sort();
    let mut want = vec![a.clone(), bb.clone()];
    want.sort();
    assert_eq!(ids, want);
    let ls: serde_json::Value =
        serde_json::from_str(&ok(&b.cli(&["pod", "ls", "--format", "json"]))).unwrap();
    assert_eq!(ls[0]["Name"], "p");
    assert_eq!(ls[0]["NumberOfContainers"], 2);

    // Stop and remove one: the other and the VM go on.
    let o = b.cli(&["stop", "-t", "1", "a"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(b.inspect("a")["State"]["Status"], "exited");
    assert_eq!(b.inspect("b")["State"]["Status"], "running");
    let o = b.cli(&["rm", "b"]);
    assert_eq!(o.status.code(), Some(125), "a running container needs -f");
    ok(&b.cli(&["rm", "a"]));
    // By id: the bare name "a" could be a prefix of the other id.
    assert!(b.cli(&["inspect", &a]).status.code() == Some(125));
    assert_eq!(stdout(&exec(&b, "b", "echo still")), "still\n");
    assert!(pid_alive(vm));

    // pod rm -f: the VM and every container go, no process is left.
    let o = b.cli(&["pod", "rm", "-f", "p"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&b.cli(&["ps", "-aq"])).trim().is_empty());
    assert!(stdout(&b.cli(&["pod", "ls", "-q"])).trim().is_empty());
    let deadline = Instant::now() + Duration::from_secs(10);
    while pid_alive(vm) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!pid_alive(vm), "the pod's QEMU survived pod rm -f");
    b.assert_no_process_left(0);
    b.assert_no_boxes_left();
}

#[test]
fn a_pod_boots_at_its_first_container_and_restarts_with_pod_start() {
    let b = TestHome::new();
    ok(&b.cli(&[
        "pod", "create", "--name", "p", "--cpus", "1", "--memory", "256m",
    ]));
    // What a running VM cannot take is refused at create, naming why.
    let o = b
        .cmd()
        .args(["create", "--pod", "p", "-v", "/tmp:/data", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "true"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("virtio-fs"), "{}", stderr(&o));
    // A container created in a stopped pod; `start` boots the pod.
    ok(&b
        .cmd()
        .args(["create", "--pod", "p", "--name", "c", "--rootfs"])
        .arg(common::rootfs())
        .args([
            "--",
            "sh",
            "-c",
            "test -e /made || echo hi > /made; exec sleep 600",
        ])
        .output()
        .unwrap());
    assert_eq!(b.inspect("c")["State"]["Status"], "created");
    ok(&b.cli(&["start", "c"]));
    assert_eq!(b.inspect("c")["State"]["Status"], "running");
    // Its layer lives on the pod's disk and survives the pod's restart.
    ok(&b.cli(&["pod", "stop", "-t", "1", "p"]));
    assert_eq!(b.inspect("c")["State"]["Status"], "exited");
    ok(&b.cli(&["pod", "start", "p"]));
    assert_eq!(b.inspect("c")["State"]["Status"], "running");
    assert_eq!(stdout(&exec(&b, "c", "cat /made")), "hi\n");
    // A failing command in a pod is 127 as anywhere.
    let o = b
        .cmd()
        .args(["run", "-d", "--pod", "p", "--rootfs"])
        .arg(common::rootfs())
        .args(["--", "no-such-program"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = b.cli(&["pod", "rm", "p"]);
    assert_eq!(o.status.code(), Some(125), "a running pod needs -f");
    ok(&b.cli(&["pod", "rm", "-f", "p"]));
    b.assert_no_boxes_left();
}
