//! `a3s-box info` and `version` through the real binary.

mod common;

use common::{stderr, stdout, TestHome};

#[test]
fn info_names_the_accelerator_and_why() {
    let b = TestHome::new();
    let o = b.cmd().args(["info", "--format", "json"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let accel = v["accelerator"]["accel"].as_str().unwrap();
    assert!(accel == "kvm" || accel == "tcg");
    assert!(!v["accelerator"]["reason"].as_str().unwrap().is_empty());
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        assert_eq!(accel, "tcg", "PVM cannot run our guest");
    }
    assert!(v["kernel_version"].as_str().unwrap().starts_with("6.12"));
    assert!(v["qemu_version"].as_str().unwrap().contains("QEMU"));

    let o = b.cmd().args(["info", "--accel", "tcg"]).output().unwrap();
    assert!(
        stdout(&o).contains("forced by --accel tcg"),
        "{}",
        stdout(&o)
    );
    let o = b.cmd().args(["info", "--accel", "warp"]).output().unwrap();
    assert_eq!(o.status.code(), Some(125));
    assert!(stderr(&o).contains("unknown accelerator"));
    let o = b
        .cmd()
        .env("A3S_BOX_KERNEL", "/custom/vmlinux")
        .arg("info")
        .output()
        .unwrap();
    assert!(
        stdout(&o).contains("/custom/vmlinux (user-supplied)"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn version_prints() {
    let b = TestHome::new();
    let o = b.cmd().arg("version").output().unwrap();
    assert!(stdout(&o).starts_with("a3s-box 0."));
    let o = b.cmd().arg("--version").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
}
