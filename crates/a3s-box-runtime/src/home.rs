//! Where things live: the state home (`A3S_HOME`) and the boot assets.

use std::path::{Path, PathBuf};

use a3s_box_core::{BoxError, Result};

use crate::vmm::qemu::provider::QEMU_HINT;

/// Environment variable naming the state home.
pub const ENV_HOME: &str = "A3S_HOME";
/// Environment variable naming a guest kernel to boot instead of ours.
pub const ENV_KERNEL: &str = "A3S_BOX_KERNEL";
/// Environment variable naming the initramfs holding guest-init.
pub const ENV_INITRAMFS: &str = "A3S_BOX_INITRAMFS";
/// Environment variable naming the directory of boot assets.
pub const ENV_ASSETS: &str = "A3S_BOX_ASSETS";
/// Environment variable naming the QEMU binary.
pub const ENV_QEMU: &str = "A3S_BOX_QEMU";

const QEMU_BINARY: &str = "qemu-system-x86_64";
const SYSTEM_ASSETS: &str = "/usr/local/share/a3s-box";

/// The state home: one directory per box under `boxes/`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$A3S_HOME`, else `~/.a3s`.
    pub fn from_env() -> Result<Self> {
        if let Some(dir) = std::env::var_os(ENV_HOME).filter(|v| !v.is_empty()) {
            return Ok(Home { root: dir.into() });
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or_else(|| BoxError::Invalid("neither A3S_HOME nor HOME is set".into()))?;
        Ok(Home {
            root: Path::new(&home).join(".a3s"),
        })
    }

    /// A home at an explicit directory.
    pub fn at(root: impl Into<PathBuf>) -> Self {
        Home { root: root.into() }
    }

    /// The home directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory holding one directory per box.
    pub fn boxes_dir(&self) -> PathBuf {
        self.root.join("boxes")
    }

    /// Read-only root images built from `--rootfs` directories.
    pub fn rootfs_cache_dir(&self) -> PathBuf {
        self.root.join("cache/rootfs")
    }

    /// Formatted templates of boxes' writable layers, one per size.
    pub fn layer_cache_dir(&self) -> PathBuf {
        self.root.join("cache/layers")
    }
}

/// Files needed to boot a VM.
#[derive(Debug, Clone)]
pub struct Assets {
    /// Guest kernel.
    pub kernel: PathBuf,
    /// Whether the kernel came from the user (flag or environment).
    pub kernel_is_custom: bool,
    /// initramfs with guest-init.
    pub initramfs: PathBuf,
    /// QEMU binary (resolved through PATH when found there; the launcher
    /// reports it missing when it is needed).
    pub qemu: PathBuf,
}

fn assets_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV_ASSETS).filter(|v| !v.is_empty()) {
        return dir.into();
    }
    // Installed beside the binary: <prefix>/bin/a3s-box → <prefix>/share/a3s-box;
    // in a build tree target/release/a3s-box → target/share/a3s-box.
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent().and_then(Path::parent) {
            let candidate = dir.join("share/a3s-box");
            if candidate.is_dir() {
                return candidate;
            }
        }
    }
    PathBuf::from(SYSTEM_ASSETS)
}

impl Assets {
    /// Locate the assets: `kernel_flag`, then `A3S_BOX_KERNEL`, then the
    /// assets directory (`A3S_BOX_ASSETS`, `<exe>/../../share/a3s-box`, or
    /// /usr/local/share/a3s-box). Nothing is checked for existence here; the
    /// provider reports a missing file when it is needed.
    pub fn locate(kernel_flag: Option<&Path>) -> Self {
        let dir = assets_dir();
        let env_kernel = std::env::var_os(ENV_KERNEL).filter(|v| !v.is_empty());
        let (kernel, kernel_is_custom) = match (kernel_flag, env_kernel) {
            (Some(k), _) => (k.to_path_buf(), true),
            (None, Some(k)) => (PathBuf::from(k), true),
            (None, None) => (dir.join("vmlinux"), false),
        };
        let initramfs = std::env::var_os(ENV_INITRAMFS)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("initramfs.cpio"));
        let qemu = std::env::var_os(ENV_QEMU)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                crate::launch::locate("QEMU", Path::new(QEMU_BINARY), QEMU_HINT)
                    .unwrap_or_else(|_| PathBuf::from(QEMU_BINARY))
            });
        Assets {
            kernel,
            kernel_is_custom,
            initramfs,
            qemu,
        }
    }
}
