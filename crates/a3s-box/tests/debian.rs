//! A real distribution image: Debian 12 with python3 (scripts/build-debian-image.sh),
//! pushed to a loopback registry, pulled and booted by the real binary.

#![allow(clippy::unwrap_used)]

mod common;
mod registry;

use common::{stderr, stdout, TestHome};
use registry::{push_debian, start_registry};

#[test]
fn python_runs_in_debian() {
    let reg = start_registry(false);
    push_debian(&reg, "test/debian:12");
    let image = format!("{}/test/debian:12", reg.addr);
    let b = TestHome::new();
    let o = b
        .cmd()
        .env("DOCKER_CONFIG", b.home.path())
        .args(["run", "--rm", "--cpus", "1", "--memory", "512m"])
        .arg(&image)
        .args(["python3", "-c", "print(1+1)"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "2\n");
}
