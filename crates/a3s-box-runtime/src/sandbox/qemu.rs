//! [`SandboxVmm`] with QEMU: the root image, the storage plan, the
//! virtio-fs daemons, QEMU itself through the seed's [`VmmProvider`]
//! (every process through the engine's [`crate::launch::Launcher`]), and
//! one QMP connection for pause, resume and the VM's events.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::{BoxError, FsMount, InstanceSpec, Result, VmmProvider};
use async_trait::async_trait;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use tokio::sync::OnceCell;

use super::vmm::{BootedVm, Companions, SandboxVmm, VmControl, VmEvent, VmRequest};
use crate::config::EngineConfig;
use crate::network::dataplane::{BoxIdentity, PreparedNetwork};
use crate::rootfs;
use crate::storage::plan::plan as plan_storage;
use crate::storage::virtiofs;
use crate::vmm::accel;
use crate::vmm::qemu::provider::{fs_socket, qmp_socket};
use crate::vmm::qemu::qmp::{EventKind, Qmp};
use crate::vmm::qemu::{QemuConfig, QemuProvider};

/// How long QEMU gets to create its QMP socket.
const QMP_WAIT: Duration = Duration::from_secs(10);
const QMP_RETRY: Duration = Duration::from_millis(5);
/// Longest unix socket path.
const MAX_SOCKET_PATH: usize = 100;
/// virtio-mmio transports of `microvm` without ACPI (QEMU's limit).
const VIRTIO_TRANSPORTS: usize = 8;
/// Devices every VM has: the root disk, the RNG, the agent's serial port.
const FIXED_DEVICES: usize = 3;

/// QEMU for sandboxes, configured by the engine's settings.
#[derive(Debug, Clone)]
pub struct QemuVmm {
    engine: Arc<EngineConfig>,
}

impl QemuVmm {
    /// QEMU as `engine` says where it and the boot assets are.
    pub fn new(engine: Arc<EngineConfig>) -> Self {
        QemuVmm { engine }
    }
}

#[async_trait]
impl SandboxVmm for QemuVmm {
    async fn boot(&self, req: &VmRequest) -> Result<BootedVm> {
        let engine = &self.engine;
        let home = engine.home_dir();
        let launcher = engine.launcher();
        let (kernel, _) = engine.kernel_for(req.kernel.as_deref());
        let decision = accel::decide(req.accel.parse()?, &accel::HostKvm::probe())?;
        tracing::debug!(accel = %decision.accel, reason = %decision.reason, "accelerator");
        let mut config = QemuConfig::new(
            engine.qemu.clone(),
            kernel,
            engine.initramfs_path(),
            decision.accel,
        );
        if req.debug {
            config.extra_kernel_args.push("a3s.debug".into());
        }
        // What would make QEMU fail at once is said before any work is done.
        QemuProvider::new(config.clone(), launcher.clone()).preflight(req.vcpus, req.memory_mib)?;

        let format = engine.rootfs_format;
        let image = rootfs::cached_image(&home.rootfs_cache_dir(), &req.root_dir, format)?;
        let socket = req.dir.join("agent.sock");
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(BoxError::Invalid(format!(
                "state path {} is too long for a unix socket: set A3S_HOME to a shorter directory",
                socket.display()
            )));
        }
        let console = req.dir.join("console.log");
        let storage = plan_storage(&home, &req.dir, &req.storage)?;
        // Spares take what the VM's transports leave after its disks,
        // shares and NICs.
        let used = FIXED_DEVICES
            + storage.devices.len()
            + storage.fs_mounts.len()
            + usize::from(req.image_share.is_some())
            + crate::network::dataplane::nic_count(req.network.as_ref());
        let spare_nics = req
            .spare_nics
            .min(u8::try_from(VIRTIO_TRANSPORTS.saturating_sub(used)).unwrap_or(u8::MAX));
        if spare_nics < req.spare_nics {
            tracing::debug!(
                spare_nics,
                used,
                "fewer spare NICs: the VM's devices are full"
            );
        }
        // Networks and published ports before anything is started: a port
        // in use fails here, with nothing made.
        let who = BoxIdentity {
            id: &req.id,
            name: req.name.as_deref(),
            dir: &req.dir,
            spare_nics,
        };
        let mut network = PreparedNetwork::prepare(engine, who, req.network.as_ref()).await?;
        let mut fs_mounts = storage.fs_mounts.clone();
        if let Some(tag) = &req.image_share {
            let cache = home.rootfs_cache_dir();
            std::fs::create_dir_all(&cache)
                .map_err(|e| BoxError::io(format!("create {}", cache.display()), e))?;
            fs_mounts.push(FsMount {
                tag: tag.clone(),
                host_path: cache,
                read_only: true,
            });
        }
        let spec = InstanceSpec {
            box_id: req.id.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            rootfs_path: image,
            exec_socket_path: socket.clone(),
            console_output: Some(console.clone()),
            fs_mounts,
            network: network.instance(),
            port_map: network.port_map(),
            ..InstanceSpec::default()
        };
        config.extra_devices = storage.devices.clone();
        let (nics, tap_fds) = network.qemu();
        config.extra_devices.extend(nics);
        config.pass_fds.extend(tap_fds);
        let provider: Box<dyn VmmProvider> = Box::new(QemuProvider::new(config, launcher.clone()));
        let shares: Vec<_> = spec
            .fs_mounts
            .iter()
            .enumerate()
            .map(|(i, m)| virtiofs::Share {
                mount: m.clone(),
                socket: fs_socket(&spec, i),
                seal_after_fill: storage.seal_after_fill.contains(&m.tag),
            })
            .collect();
        // Held until the VM is gone; the daemons die with it.
        let daemons = virtiofs::start(
            &launcher,
            &engine.virtiofsd,
            &shares,
            &req.dir.join("virtiofsd.log"),
        )?;
        let vm = provider.start(&spec).await?;
        daemons.watch(vm.pid());
        tracing::debug!(pid = vm.pid(), "QEMU started");
        if let Err(e) = network.start(vm.pid()) {
            let mut vm = vm;
            let _ = vm.stop(libc::SIGKILL, 0);
            return Err(e);
        }
        let (control, events) = match req.control {
            true => {
                let (tx, rx) = unbounded_channel();
                let control = QmpControl::connect(qmp_socket(&spec), tx);
                (Some(control as Arc<dyn VmControl>), Some(rx))
            }
            false => (None, None),
        };
        Ok(BootedVm {
            handler: vm,
            agent_socket: socket,
            console,
            root_fstype: format.fstype().into(),
            storage,
            control,
            events,
            network: network.guest(),
            companions: Box::new(VmCompanions {
                _daemons: daemons,
                network,
            }),
            accelerator: Some(format!("{}: {}", decision.accel, decision.reason)),
        })
    }

    fn shared_image(&self, root_dir: &Path) -> Result<(String, String)> {
        let format = self.engine.rootfs_format;
        let cache = self.engine.home_dir().rootfs_cache_dir();
        let image = rootfs::cached_image(&cache, root_dir, format)?;
        let name = image.strip_prefix(&cache).map_err(|_| {
            BoxError::Invalid(format!("{} is not in the image cache", image.display()))
        })?;
        Ok((name.to_string_lossy().into_owned(), format.fstype().into()))
    }
}

/// What a QEMU VM keeps while it runs: its virtio-fs daemons and its
/// network attachments (a helper that died is why the VM ended).
struct VmCompanions {
    _daemons: virtiofs::Daemons,
    network: PreparedNetwork,
}

impl Companions for VmCompanions {
    fn failure(&self) -> Option<BoxError> {
        self.network.failure()
    }

    fn network(&mut self) -> Option<&mut PreparedNetwork> {
        Some(&mut self.network)
    }
}

/// The one QMP connection of a VM (QEMU serves one client at a time):
/// made as soon as QEMU listens, its events forwarded.
struct QmpControl {
    path: PathBuf,
    qmp: OnceCell<Option<Qmp>>,
    events: UnboundedSender<VmEvent>,
}

impl QmpControl {
    fn connect(path: PathBuf, events: UnboundedSender<VmEvent>) -> Arc<Self> {
        let control = Arc::new(QmpControl {
            path,
            qmp: OnceCell::new(),
            events,
        });
        let early = control.clone();
        tokio::spawn(async move {
            let _ = early.session().await;
        });
        control
    }

    async fn session(&self) -> Result<&Qmp> {
        let qmp = self
            .qmp
            .get_or_init(|| async {
                let deadline = tokio::time::Instant::now() + QMP_WAIT;
                loop {
                    match Qmp::connect(&self.path).await {
                        Ok((qmp, mut rx)) => {
                            let tx = self.events.clone();
                            tokio::spawn(async move {
                                while let Some(e) = rx.recv().await {
                                    let event = VmEvent {
                                        name: event_name(&e.kind),
                                        data: e.data,
                                    };
                                    if tx.send(event).is_err() {
                                        break;
                                    }
                                }
                            });
                            return Some(qmp);
                        }
                        Err(e) if tokio::time::Instant::now() < deadline => {
                            tracing::trace!("QMP not ready: {e}");
                            tokio::time::sleep(QMP_RETRY).await;
                        }
                        Err(e) => {
                            tracing::warn!("no QMP connection: {e}");
                            return None;
                        }
                    }
                }
            })
            .await;
        qmp.as_ref().ok_or_else(|| {
            BoxError::Unavailable(format!(
                "the VM's control socket {} cannot be reached",
                self.path.display()
            ))
        })
    }
}

#[async_trait]
impl VmControl for QmpControl {
    async fn pause(&self) -> Result<()> {
        Ok(self.session().await?.pause().await?)
    }

    async fn resume(&self) -> Result<()> {
        Ok(self.session().await?.resume().await?)
    }
}

/// QMP's name of an event.
fn event_name(kind: &EventKind) -> String {
    match kind {
        EventKind::Stop => "STOP".into(),
        EventKind::Resume => "RESUME".into(),
        EventKind::Shutdown => "SHUTDOWN".into(),
        EventKind::Reset => "RESET".into(),
        EventKind::Migration => "MIGRATION".into(),
        EventKind::MigrationPass => "MIGRATION_PASS".into(),
        EventKind::Other(name) => name.clone(),
    }
}
