//! Interactive sessions driven by a real terminal emulator (tmux): `exec -it`,
//! `run -it` and `attach`, with resizes, Ctrl-C, Ctrl-D, the detach keys,
//! and the local terminal restored afterwards.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{bin, rootfs, TestHome};

/// A tmux server of our own running one window.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Run `script` (sh) in a `cols`×`rows` window; the window stays after
    /// it ends so its output can be read.
    fn start(b: &TestHome, script: &str, cols: u16, rows: u16) -> Tmux {
        static SERVERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SERVERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = b.home.path().join(format!("tmux{n}.sock"));
        let wrapped = format!(
            "export A3S_HOME={home}; stty -g > {home}/stty.before; {script}; echo EXIT=$?; \
             stty -g > {home}/stty.after; cmp -s {home}/stty.before {home}/stty.after && echo RESTORED; sleep 600",
            home = b.home.path().display()
        );
        let ok = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .arg(wrapped)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux did not start");
        Tmux { socket }
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "t", "-S", "-200"])
    }

    /// Wait until the screen shows `text` (TCG boots take seconds).
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {text:?}; screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.tmux(&["kill-server"]);
    }
}

fn a3s() -> String {
    bin().display().to_string()
}

#[test]
fn exec_it_resizes_interrupts_and_restores_the_terminal() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], &["sh", "-c", "while :; do sleep 1; done"]);
    let t = Tmux::start(&b, &format!("{} exec -it x sh", a3s()), 100, 30);
    t.wait_for("/ #");
    t.keys(&["stty size; echo term=$TERM; tty", "Enter"]);
    t.wait_for("30 100");
    t.wait_for("term=xterm");
    // The terminal is one of the box's own devpts.
    t.wait_for("/dev/pts/0");
    t.tmux(&["resize-window", "-t", "t", "-x", "120", "-y", "40"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["stty size", "Enter"]);
    t.wait_for("40 120");
    // Ctrl-C reaches the foreground job, not the session.
    t.keys(&["sleep 1000", "Enter"]);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["C-c"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["echo after-sleep-$?", "Enter"]);
    t.wait_for("after-sleep-130");
    t.keys(&["exit 3", "Enter"]);
    let screen = t.wait_for("EXIT=3");
    assert!(t.wait_for("RESTORED").contains("RESTORED"), "{screen}");
    b.cli(&["rm", "-f", "x"]);
}

#[test]
fn run_it_gives_a_shell_that_ends_with_ctrl_d() {
    let b = TestHome::new();
    let script = format!(
        "{} run -it --rm --cpus 1 --memory 128m --rootfs {} -- sh",
        a3s(),
        rootfs().display()
    );
    let t = Tmux::start(&b, &script, 90, 25);
    t.wait_for("/ #");
    t.keys(&["echo hi-$((40+2)); stty size", "Enter"]);
    t.wait_for("hi-42");
    // Ctrl-D ends the shell only once it reads a new line in raw mode: wait
    // for the prompt after the output, not just the output.
    t.wait_for("25 90\n/ #");
    t.keys(&["C-d"]);
    t.wait_for("EXIT=0");
    t.wait_for("RESTORED");
    b.assert_no_boxes_left();
}

#[test]
fn attach_and_detach_with_ctrl_p_ctrl_q() {
    let b = TestHome::new();
    b.run_detached(&["--name", "a", "-i", "-t"], &["sh"]);
    let t = Tmux::start(&b, &format!("{} attach a", a3s()), 100, 30);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["echo attached-$((2+3))", "Enter"]);
    t.wait_for("attached-5");
    t.keys(&["C-p", "C-q"]);
    t.wait_for("EXIT=0");
    t.wait_for("RESTORED");
    let v = b.inspect("a");
    assert_eq!(v["State"]["Status"], "running", "detach stopped the box");
    // Its shell still answers a new attach.
    drop(t);
    let t = Tmux::start(&b, &format!("{} attach a", a3s()), 100, 30);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["exit 6", "Enter"]);
    t.wait_for("EXIT=6");
    b.cli(&["rm", "-f", "a"]);
}

#[test]
fn exec_it_detaches_with_ctrl_p_ctrl_q_and_leaves_the_process() {
    let b = TestHome::new();
    b.run_detached(&["--name", "x"], &["sh", "-c", "while :; do sleep 1; done"]);
    let t = Tmux::start(&b, &format!("{} exec -it x sh", a3s()), 100, 30);
    t.wait_for("/ #");
    t.keys(&["echo $$ > /tmp/shpid; echo saved-pid", "Enter"]);
    t.wait_for("saved-pid");
    t.keys(&["C-p", "C-q"]);
    t.wait_for("EXIT=0");
    t.wait_for("RESTORED");
    let o = b.cli(&[
        "exec",
        "x",
        "sh",
        "-c",
        "kill -0 $(cat /tmp/shpid) && echo alive",
    ]);
    assert_eq!(common::stdout(&o), "alive\n", "{}", common::stderr(&o));
    b.cli(&["rm", "-f", "x"]);
}
