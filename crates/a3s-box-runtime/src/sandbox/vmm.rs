//! What the sandbox actor needs of a hypervisor: boot a VM whose agent
//! port it then connects to, pause and resume it, tell its events, build
//! the images containers joining it mount. [`super::qemu::QemuVmm`] does it
//! with QEMU (through the seed's [`a3s_box_core::VmmProvider`]);
//! `super::fake` does it in-process for tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::NetworkConfig;
use a3s_box_core::{BoxError, Result, VmHandler};
use async_trait::async_trait;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::storage::plan::VmStorage;
use crate::storage::StorageOptions;

/// Console lines shown when the VM fails.
const CONSOLE_TAIL_LINES: usize = 25;
/// How long a broken guest channel waits for the VM process to be reaped
/// (see [`channel_lost`]).
const EXIT_SETTLE: Duration = Duration::from_millis(500);

/// The VM a sandbox asks for.
#[derive(Debug, Clone)]
pub struct VmRequest {
    /// The sandbox's id (a box's or a pod's).
    pub id: String,
    /// Its directory: sockets, console log, the writable layer's disk.
    pub dir: PathBuf,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// A kernel to boot instead of the engine's.
    pub kernel: Option<PathBuf>,
    /// `auto`, `kvm` or `tcg`.
    pub accel: String,
    /// guest-init logs its progress on the console.
    pub debug: bool,
    /// The directory whose image is the VM's root disk (`/dev/vda`).
    pub root_dir: PathBuf,
    /// The storage the VM carries: the writable layer's disk (the box's
    /// or the pod's), shares for bind mounts and volumes.
    pub storage: StorageOptions,
    /// Serve the root image cache read-only under this tag (pods: the
    /// images of containers that join a running VM).
    pub image_share: Option<String>,
    /// Connect the hypervisor's control channel (pause, resume, events).
    pub control: bool,
    /// The box's name on its networks (`None`: known by its short id).
    pub name: Option<String>,
    /// Its networks (`None`: loopback only).
    pub network: Option<a3s_box_core::spec::NetworkSpec>,
    /// Spare NICs to boot with (`network connect` while it runs).
    pub spare_nics: u8,
}

/// A started VM, before anyone spoke to its guest.
pub struct BootedVm {
    /// The VM process.
    pub handler: Box<dyn VmHandler>,
    /// Where its agent port listens.
    pub agent_socket: PathBuf,
    /// Its console log.
    pub console: PathBuf,
    /// Filesystem type of the root disk's image.
    pub root_fstype: String,
    /// The storage it was given, as the guest must be told.
    pub storage: VmStorage,
    /// Pause and resume, when asked for.
    pub control: Option<std::sync::Arc<dyn VmControl>>,
    /// The hypervisor's events, when asked for.
    pub events: Option<UnboundedReceiver<VmEvent>>,
    /// The guest's network configuration (`None`: loopback only).
    pub network: Option<NetworkConfig>,
    /// What lives as long as the VM (its virtio-fs daemons, its networks).
    pub companions: Box<dyn Companions>,
    /// The accelerator it runs with and why.
    pub accelerator: Option<String>,
}

impl std::fmt::Debug for BootedVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootedVm")
            .field("pid", &self.handler.pid())
            .field("agent_socket", &self.agent_socket)
            .finish_non_exhaustive()
    }
}

/// An asynchronous event of the hypervisor (QMP's `STOP`, `RESUME`, …).
#[derive(Debug, Clone, PartialEq)]
pub struct VmEvent {
    /// Its name.
    pub name: String,
    /// Its data.
    pub data: serde_json::Value,
}

/// What lives as long as a VM and is dropped after it: its virtio-fs
/// daemons, its network attachments. A companion that ended the VM (a
/// network helper that died kills it) says why.
pub trait Companions: Send + Sync {
    /// Why the VM was ended from outside, if it was.
    fn failure(&self) -> Option<BoxError> {
        None
    }

    /// The VM's networks, which `network connect`/`disconnect` change
    /// while it runs (`None`: a VMM without a network data plane).
    fn network(&mut self) -> Option<&mut crate::network::dataplane::PreparedNetwork> {
        None
    }
}

impl Companions for () {}

/// The hypervisor's control of a running VM.
#[async_trait]
pub trait VmControl: Send + Sync {
    /// Stop the vCPUs.
    async fn pause(&self) -> Result<()>;
    /// Run them again.
    async fn resume(&self) -> Result<()>;
}

/// A hypervisor as the sandbox actor uses it.
#[async_trait]
pub trait SandboxVmm: Send + Sync {
    /// Start the VM `req` describes. Its guest waits for the host on the
    /// agent socket.
    async fn boot(&self, req: &VmRequest) -> Result<BootedVm>;

    /// The image of the root directory `root_dir` in the image share (its
    /// path relative to the share) and its filesystem type, built on first
    /// use, for a container joining a running VM.
    fn shared_image(&self, root_dir: &Path) -> Result<(String, String)>;
}

/// The last lines of a log file (empty if it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    crate::manager::log_tail(path, lines)
}

/// An error of the VM, with its console's last lines.
pub(crate) fn vm_error(message: impl Into<String>, console: &Path) -> BoxError {
    let tail = log_tail(console, CONSOLE_TAIL_LINES);
    BoxError::Vmm {
        message: message.into(),
        console_tail: (!tail.trim().is_empty()).then_some(tail),
    }
}

/// The error for a VM process that is gone: the hypervisor's own reason
/// when it failed, else the guest ended (powered off or panicked: the
/// console tail says which).
pub(crate) fn vm_gone(vm: &dyn VmHandler, console: &Path) -> BoxError {
    vm_error(
        vm.exit_reason()
            .unwrap_or_else(|| "the VM stopped before the workload finished".into()),
        console,
    )
}

/// The error for a guest channel that broke (`what` says how). A VM
/// process that died is the cause, not the transport: QEMU closes its
/// sockets as it exits, a moment before its exit can be seen, so it is
/// given [`EXIT_SETTLE`] to be reaped before the channel is blamed.
pub(crate) async fn channel_lost(vm: &dyn VmHandler, what: String, console: &Path) -> BoxError {
    let deadline = Instant::now() + EXIT_SETTLE;
    while vm.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    match vm.is_running() {
        true => vm_error(what, console),
        false => vm_gone(vm, console),
    }
}
