//! `a3s-box info`: what this host will run boxes with.

use std::path::{Path, PathBuf};
use std::process::Command;

use a3s_box_core::Result;
use serde::Serialize;

use crate::config::EngineConfig;
use crate::vmm::{accel, AccelChoice, AccelDecision};

/// Facts about the host and the boot assets.
#[derive(Debug, Serialize)]
pub struct Info {
    /// a3s-box version.
    pub version: String,
    /// State home.
    pub home: PathBuf,
    /// Accelerator that `--accel auto` (or the given choice) picks, and why.
    pub accelerator: AccelDecision,
    /// Guest kernel file.
    pub kernel: PathBuf,
    /// Whether the user supplied it.
    pub kernel_is_custom: bool,
    /// Kernel version string, when it can be read from the file.
    pub kernel_version: Option<String>,
    /// Kernel command line boxes boot with on this accelerator (QEMU adds
    /// the device list).
    pub kernel_args: String,
    /// QEMU's `-cpu` on this accelerator.
    pub cpu: String,
    /// initramfs file.
    pub initramfs: PathBuf,
    /// Whether kernel and initramfs exist.
    pub assets_present: bool,
    /// QEMU binary.
    pub qemu: PathBuf,
    /// `qemu --version`, first line.
    pub qemu_version: Option<String>,
    /// How boxes are networked here, and why.
    pub network: crate::network::dataplane::mode::NetworkMode,
}

/// The kernel release of a kernel image: a bzImage names it through its
/// setup header; an uncompressed vmlinux holds the "Linux version …" banner.
fn kernel_version(path: &Path) -> Option<String> {
    let data = std::fs::read(path).ok()?;
    let word = |bytes: &[u8]| {
        let end = bytes.iter().position(|&b| b == b' ' || b == 0)?;
        Some(String::from_utf8_lossy(&bytes[..end]).into_owned())
    };
    if data.get(0x202..0x206) == Some(b"HdrS") {
        let offset = u16::from_le_bytes([*data.get(0x20e)?, *data.get(0x20f)?]) as usize + 0x200;
        return word(data.get(offset..)?);
    }
    let needle = b"Linux version ";
    let start = data.windows(needle.len()).position(|w| w == needle)?;
    word(&data[start + needle.len()..])
}

fn qemu_version(qemu: &Path) -> Option<String> {
    let out = Command::new(qemu).arg("--version").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string)
}

/// Gather [`Info`].
pub fn info(
    config: &EngineConfig,
    kernel_flag: Option<&Path>,
    choice: AccelChoice,
) -> Result<Info> {
    let (kernel, kernel_is_custom) = config.kernel_for(kernel_flag);
    let initramfs = config.initramfs_path();
    let qemu = config
        .launcher()
        .locate("QEMU", &config.qemu, crate::vmm::qemu::provider::QEMU_HINT)
        .unwrap_or_else(|_| config.qemu.clone());
    let accelerator = accel::decide(choice, &accel::HostKvm::probe())?;
    Ok(Info {
        kernel_args: crate::vmm::qemu::cmdline::kernel_args(accelerator.accel),
        cpu: crate::vmm::qemu::cmdline::cpu_model(accelerator.accel).to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        home: config.home.clone(),
        accelerator,
        kernel_version: kernel_version(&kernel),
        assets_present: kernel.is_file() && initramfs.is_file(),
        qemu_version: qemu_version(&qemu),
        network: crate::network::dataplane::mode::detect(config),
        kernel,
        kernel_is_custom,
        initramfs,
        qemu,
    })
}
