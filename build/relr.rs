// Shared by the build scripts of the host binaries (`include!`d): link them
// with packed relative relocations (DT_RELR) when this toolchain and C
// library support it.
//
// A position-independent executable carries one relocation per pointer in
// its data (about 26,000 in `a3s-box`), which the dynamic loader applies at
// every start. Packed, the table shrinks from ~600 KiB to ~8 KiB and each
// CLI command starts ~0.3 ms sooner (docs/design.md), while the binaries stay
// position-independent (ASLR). The probe links and runs a small program whose
// only pointer needs a relocation, so an old linker or a C library without
// DT_RELR support (glibc < 2.36) simply keeps the classic table.

use std::path::PathBuf;
use std::process::Command;

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../../build/relr.rs");
    if packed_relocations_work() {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

fn packed_relocations_work() -> bool {
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    if env("CARGO_CFG_TARGET_OS") != "linux"
        || env("CARGO_CFG_TARGET_ENV") != "gnu"
        || env("TARGET") != env("HOST")
    {
        return false;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr_probe.c");
    let program = out.join("relr_probe");
    let probe = "static int target = 7;\nint *pointer = &target;\n\
                 int main(void) { return *pointer == 7 ? 0 : 1; }\n";
    if std::fs::write(&source, probe).is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .args(["-fPIE", "-pie", FLAG, "-o"])
        .arg(&program)
        .arg(&source)
        .output()
        .is_ok_and(|o| o.status.success() && o.stderr.is_empty());
    linked && Command::new(&program).status().is_ok_and(|s| s.success())
}
