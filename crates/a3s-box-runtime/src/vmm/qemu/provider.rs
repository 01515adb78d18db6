//! [`VmmProvider`] for QEMU.

use a3s_box_core::{BoxError, InstanceSpec, Result, VmHandler, VmmProvider};
use async_trait::async_trait;

use super::cmdline::{self, QemuConfig};
use super::process::{self, QemuHandler};

/// Starts VMs with QEMU's `microvm` machine.
#[derive(Debug, Clone)]
pub struct QemuProvider {
    config: QemuConfig,
    die_with_parent: bool,
}

impl QemuProvider {
    /// A provider with the given machine settings. With `die_with_parent`,
    /// each QEMU is killed when the process that started it dies (used by
    /// foreground runs that have no shim).
    pub fn new(config: QemuConfig, die_with_parent: bool) -> Self {
        QemuProvider {
            config,
            die_with_parent,
        }
    }

    /// Machine settings.
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// Start QEMU for `spec`. QEMU's own messages go to `qemu.log` beside the
    /// exec socket.
    pub fn launch(&self, spec: &InstanceSpec) -> Result<QemuHandler> {
        let args = cmdline::build(&self.config, spec)?;
        let log = spec.exec_socket_path.with_file_name("qemu.log");
        for (what, path) in [
            ("guest kernel", &self.config.kernel),
            ("guest initramfs", &self.config.initramfs),
        ] {
            if !path.is_file() {
                return Err(BoxError::MissingAsset {
                    what,
                    path: path.clone(),
                    hint: "run `make setup`, or pass --kernel / set A3S_BOX_KERNEL",
                });
            }
        }
        let child = process::spawn(&args, &log, self.die_with_parent)?;
        Ok(QemuHandler::new(child))
    }
}

#[async_trait]
impl VmmProvider for QemuProvider {
    async fn start(&self, spec: &InstanceSpec) -> Result<Box<dyn VmHandler>> {
        Ok(Box::new(self.launch(spec)?))
    }
}
