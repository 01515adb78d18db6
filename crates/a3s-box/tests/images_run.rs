//! `run IMAGE` end to end: pulled from a loopback registry, unpacked once,
//! booted in a real VM, with the image's config applied as Docker does.

#![allow(clippy::unwrap_used)]

mod common;
mod registry;

use common::{stderr, stdout, TestHome};
use registry::{fixtures, push, start_registry};

#[test]
fn an_image_runs_with_its_config_and_its_files_intact() {
    let reg = start_registry(false);
    push(&reg, "layers", "fixtures/layers:1", None);
    let image = format!("{}/fixtures/layers:1", reg.addr);
    let b = TestHome::new();
    let run = |extra: &[&str], cmd: &[&str]| {
        let mut c = b.cmd();
        c.env("DOCKER_CONFIG", b.home.path())
            .args(["run", "--rm", "--cpus", "1", "--memory", "256m"])
            .args(extra)
            .arg(&image)
            .args(cmd);
        c.output().unwrap()
    };

    // The image's Entrypoint + Cmd, pulled on first use.
    let o = run(&[], &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "hello\n");

    // Trailing args replace Cmd (the entrypoint /bin/sh stays); Env and WorkingDir apply.
    let script = "pwd; echo $FOO; \
        test -e /etc/deleted.txt && echo whiteout-failed; cat /etc/kept.txt; \
        ls /data; stat -c %a /usr/bin/suid-tool; \
        [ $(stat -c %i /misc/hard-a) = $(stat -c %i /misc/hard-b) ] && echo hardlinked; \
        sha256sum /misc/big.bin | cut -d' ' -f1; \
        cat '/misc/日本語 ☃/ファイル name with spaces.txt'";
    let o = run(&[], &["-c", script]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let big = std::fs::read_to_string(fixtures().join("big.sha256")).unwrap();
    let expected = format!(
        "/data\nbar\nkept\nnew-file\n4755\nhardlinked\n{}\nunicode\n",
        big.trim()
    );
    assert_eq!(stdout(&o), expected);

    // -e overrides the image's Env, -w its WorkingDir, --entrypoint its Entrypoint.
    let o = run(
        &[
            "-e",
            "FOO=baz",
            "-w",
            "/etc",
            "--entrypoint",
            "/bin/busybox",
        ],
        &["sh", "-c", "pwd; echo $FOO"],
    );
    assert_eq!(stdout(&o), "/etc\nbaz\n", "{}", stderr(&o));

    // The second run found everything in place: one unpacked root.
    let roots = std::fs::read_dir(b.home.path().join("images/rootfs"))
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert_eq!(roots, 1);
    // --pull never with a missing image fails clearly.
    let mut c = b.cmd();
    c.args(["run", "--rm", "--pull", "never"])
        .arg(format!("{}/fixtures/absent:1", reg.addr));
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(!stderr(&o).is_empty());
}

#[test]
fn an_index_runs_its_host_platform_and_a_zstd_layer_is_read() {
    let reg = start_registry(false);
    push(&reg, "multiarch", "fixtures/multi:1", None);
    push(&reg, "zstd", "fixtures/zstd:1", None);
    let b = TestHome::new();
    for (image, cmd, want) in [
        ("fixtures/multi:1", "/arch", "amd64\n"),
        ("fixtures/zstd:1", "/zstd-dir/hello.txt", "from zstd\n"),
    ] {
        let mut c = b.cmd();
        c.env("DOCKER_CONFIG", b.home.path())
            .args(["run", "--rm", "--cpus", "1", "--memory", "256m"])
            .arg(format!("{}/{image}", reg.addr))
            .args(["cat", cmd]);
        let o = c.output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{image}: {}", stderr(&o));
        assert_eq!(stdout(&o), want, "{image}");
    }
}
