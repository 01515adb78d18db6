//! [`VmmProvider`] for QEMU: an [`InstanceSpec`] plus a [`QemuConfig`]
//! become a [`VmPlan`], checked against the host, started through the
//! [`Launcher`].

use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use a3s_box_core::{BoxError, InstanceSpec, Result, VmHandler, VmmProvider};
use async_trait::async_trait;

use super::cmdline::{self, kernel_args};
use super::process::{QemuHandler, QemuLog};
use crate::launch::Launcher;
use crate::vmm::host::HostResources;
use crate::vmm::plan::{
    BlockDevice, Console, Device, Incoming, Machine, MemoryBackend, NetBackend, NetDevice,
    VirtioMmio, VmPlan,
};
use crate::vmm::{kernel, Accel};

/// What to do when QEMU is missing or cannot run.
pub const QEMU_HINT: &str = "install qemu-system-x86 (make setup) or set A3S_BOX_QEMU";
const KERNEL_HINT: &str = "run `make setup`, or pass --kernel / set A3S_BOX_KERNEL";
const INITRAMFS_HINT: &str = "run `make setup`, or set A3S_BOX_INITRAMFS";
/// File name of the QMP socket in a box directory.
pub const QMP_SOCKET: &str = "qmp.sock";
/// File name of QEMU's own output in a box directory.
pub const QEMU_LOG: &str = "qemu.log";
/// virtio-blk serial of the root filesystem's disk.
pub const ROOT_SERIAL: &str = "a3s-root";
/// Id of the network interface the contract's `network` becomes.
const NET_ID: &str = "net0";

/// What QEMU needs beyond the [`InstanceSpec`]: the binary, the boot
/// assets, the accelerator, and the devices and machine settings the
/// contract has no field for.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// The `qemu-system-x86_64` binary.
    pub binary: PathBuf,
    /// Guest kernel (PVH `vmlinux` or `bzImage`).
    pub kernel: PathBuf,
    /// initramfs holding guest-init.
    pub initramfs: PathBuf,
    /// Accelerator.
    pub accel: Accel,
    /// Extra kernel arguments (for example `a3s.debug`).
    pub extra_kernel_args: Vec<String>,
    /// Devices after the contract's root disk, rng and agent port and
    /// before its shares and network (the box's writable layer disk).
    pub extra_devices: Vec<Device>,
    /// Memory backend; `None`: private anonymous memory, or a shared memfd
    /// when a device needs it.
    pub memory: Option<MemoryBackend>,
    /// Start paused for an incoming migration.
    pub incoming: Option<Incoming>,
    /// Descriptors QEMU inherits (a TAP device, migration state), each
    /// duplicated for every start.
    pub pass_fds: Vec<PassFd>,
}

impl QemuConfig {
    /// A configuration with no extras.
    pub fn new(binary: PathBuf, kernel: PathBuf, initramfs: PathBuf, accel: Accel) -> Self {
        QemuConfig {
            binary,
            kernel,
            initramfs,
            accel,
            extra_kernel_args: Vec::new(),
            extra_devices: Vec::new(),
            memory: None,
            incoming: None,
            pass_fds: Vec::new(),
        }
    }
}

/// A descriptor QEMU inherits as `target` (which the plan refers to, as in
/// [`NetBackend::TapFd`] or [`Incoming::Fd`]).
#[derive(Debug, Clone)]
pub struct PassFd {
    /// Ours.
    pub fd: Arc<OwnedFd>,
    /// Its number in QEMU.
    pub target: RawFd,
}

/// The vhost-user socket of the `index`th virtio-fs share: beside the exec
/// socket. Whoever serves the shares listens there.
pub fn fs_socket(spec: &InstanceSpec, index: usize) -> PathBuf {
    spec.exec_socket_path
        .with_file_name(format!("fs{index}.sock"))
}

/// QEMU's QMP socket: beside the exec socket.
pub fn qmp_socket(spec: &InstanceSpec) -> PathBuf {
    spec.exec_socket_path.with_file_name(QMP_SOCKET)
}

/// Starts VMs with QEMU's `microvm` machine. Each QEMU dies with the thread
/// that started it.
#[derive(Debug, Clone)]
pub struct QemuProvider {
    config: QemuConfig,
    launcher: Launcher,
}

impl QemuProvider {
    /// A provider with the given settings, starting QEMU with `launcher`.
    pub fn new(config: QemuConfig, launcher: Launcher) -> Self {
        QemuProvider { config, launcher }
    }

    /// Its settings.
    pub fn config(&self) -> &QemuConfig {
        &self.config
    }

    /// Check, before anything is started, what would make QEMU fail at
    /// once: QEMU itself, the kernel and initramfs, and whether the host
    /// can give `vcpus` CPUs and `memory_mib` MiB.
    pub fn preflight(&self, vcpus: u8, memory_mib: u32) -> Result<()> {
        self.launcher
            .locate("QEMU", &self.config.binary, QEMU_HINT)?;
        kernel::check(&self.config.kernel, KERNEL_HINT)?;
        if !self.config.initramfs.is_file() {
            return Err(BoxError::MissingAsset {
                what: "guest initramfs",
                path: self.config.initramfs.clone(),
                hint: INITRAMFS_HINT,
            });
        }
        HostResources::probe().check(vcpus, memory_mib)
    }

    /// The plan that runs `spec`: root disk, rng, agent port, the
    /// configuration's extra devices, the virtio-fs shares, the network.
    pub fn plan(&self, spec: &InstanceSpec) -> Result<VmPlan> {
        if spec.tee_config.is_some() {
            return Err(BoxError::Invalid(
                "the QEMU backend does not run confidential (TEE) VMs".into(),
            ));
        }
        let c = &self.config;
        let mut devices = vec![
            Device::Block(BlockDevice {
                id: "root".into(),
                path: spec.rootfs_path.clone(),
                read_only: true,
                serial: ROOT_SERIAL.into(),
                discard: false,
            }),
            Device::Rng,
            Device::AgentPort {
                socket: spec.exec_socket_path.clone(),
            },
        ];
        devices.extend(c.extra_devices.iter().cloned());
        devices.extend(
            spec.fs_mounts
                .iter()
                .enumerate()
                .map(|(i, share)| Device::VirtioFs {
                    tag: share.tag.clone(),
                    socket: fs_socket(spec, i),
                }),
        );
        // A contract network whose NIC the config already has (a TAP handed
        // over as a descriptor, no passt socket) adds no second one.
        let has_nic = |mac: [u8; 6]| {
            c.extra_devices
                .iter()
                .any(|d| matches!(d, Device::Net(n) if n.mac == mac))
        };
        if let Some(net) = spec
            .network
            .as_ref()
            .filter(|n| !(n.passt_socket_path.as_os_str().is_empty() && has_nic(n.mac_address)))
        {
            devices.push(Device::Net(NetDevice {
                id: NET_ID.into(),
                mac: net.mac_address,
                backend: NetBackend::Stream {
                    socket: net.passt_socket_path.clone(),
                },
            }));
        }
        let mut kernel_cmdline = kernel_args(c.accel);
        for extra in &c.extra_kernel_args {
            kernel_cmdline.push(' ');
            kernel_cmdline.push_str(extra);
        }
        let mut plan = VmPlan {
            machine: Machine {
                accel: c.accel,
                vcpus: spec.vcpus,
                memory_mib: spec.memory_mib,
                kernel: c.kernel.clone(),
                initramfs: c.initramfs.clone(),
                kernel_cmdline,
                virtio: VirtioMmio::Legacy,
            },
            memory: c.memory.clone().unwrap_or_default(),
            devices,
            incoming: c.incoming,
            qmp_socket: qmp_socket(spec),
            console: match &spec.console_output {
                Some(path) => Console::File(path.clone()),
                None => Console::Null,
            },
        };
        plan.fit_devices();
        plan.validate()?;
        Ok(plan)
    }

    /// Check, plan and start QEMU for `spec`. QEMU's own output is appended
    /// to `qemu.log` beside the exec socket, one section per start.
    pub fn launch(&self, spec: &InstanceSpec) -> Result<QemuHandler> {
        self.preflight(spec.vcpus, spec.memory_mib)?;
        check_root(&spec.rootfs_path)?;
        let plan = self.plan(spec)?;
        let args = cmdline::build(&self.config.binary, &plan)?;
        tracing::debug!(command = %args.to_shell(), "starting QEMU");
        let log = QemuLog::begin(&spec.exec_socket_path.with_file_name(QEMU_LOG), &args)?;
        let fds = self
            .config
            .pass_fds
            .iter()
            .map(|p| {
                p.fd.try_clone()
                    .map(|fd| (fd, p.target))
                    .map_err(|e| BoxError::io("duplicate a descriptor for QEMU", e))
            })
            .collect::<Result<Vec<_>>>()?;
        QemuHandler::spawn(&self.launcher, &args, log, fds)
    }
}

fn check_root(path: &Path) -> Result<()> {
    if path.is_dir() {
        return Err(BoxError::Invalid(format!(
            "root filesystem {} is a directory: the QEMU backend boots block images",
            path.display()
        )));
    }
    if !path.is_file() {
        return Err(BoxError::MissingAsset {
            what: "root filesystem image",
            path: path.to_path_buf(),
            hint: "the QEMU backend boots a block image: build one from the root directory first",
        });
    }
    Ok(())
}

#[async_trait]
impl VmmProvider for QemuProvider {
    async fn start(&self, spec: &InstanceSpec) -> Result<Box<dyn VmHandler>> {
        Ok(Box::new(self.launch(spec)?))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use a3s_box_core::{FsMount, NetworkInstanceConfig};

    use super::*;

    fn provider() -> QemuProvider {
        let mut config = QemuConfig::new(
            "/usr/bin/qemu-system-x86_64".into(),
            "/k/vmlinux".into(),
            "/k/initramfs.cpio".into(),
            Accel::Tcg,
        );
        config.extra_kernel_args = vec!["a3s.debug".into()];
        QemuProvider::new(config, Launcher::new())
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            box_id: "b".into(),
            vcpus: 1,
            memory_mib: 256,
            rootfs_path: "/boxes/b/root.img".into(),
            exec_socket_path: "/boxes/b/agent.sock".into(),
            console_output: Some("/boxes/b/console.log".into()),
            ..InstanceSpec::default()
        }
    }

    #[test]
    fn the_contract_becomes_root_disk_rng_agent_port_and_console() {
        let plan = provider().plan(&spec()).unwrap();
        assert_eq!(plan.devices.len(), 3);
        assert!(
            matches!(&plan.devices[0], Device::Block(b) if b.read_only && b.serial == "a3s-root")
        );
        assert_eq!(plan.devices[1], Device::Rng);
        assert_eq!(plan.memory, MemoryBackend::Anonymous);
        assert_eq!(plan.console, Console::File("/boxes/b/console.log".into()));
        assert_eq!(plan.qmp_socket, PathBuf::from("/boxes/b/qmp.sock"));
        assert!(plan
            .machine
            .kernel_cmdline
            .ends_with("noapictimer noreplace-smp a3s.debug"));
    }

    #[test]
    fn extra_devices_shares_and_network_follow_in_order() {
        let mut p = provider();
        p.config.extra_devices.push(Device::Block(BlockDevice {
            id: "rw".into(),
            path: "/boxes/b/rw.img".into(),
            read_only: false,
            serial: "a3s-rw".into(),
            discard: true,
        }));
        let mut s = spec();
        s.fs_mounts = vec![FsMount {
            tag: "a3s-fs0".into(),
            host_path: "/data".into(),
            read_only: false,
        }];
        s.network = Some(NetworkInstanceConfig {
            passt_socket_path: "/boxes/b/passt.sock".into(),
            ip_address: Ipv4Addr::new(10, 0, 2, 15),
            gateway: Ipv4Addr::new(10, 0, 2, 2),
            prefix_len: 24,
            mac_address: [2, 0, 0, 0, 0, 1],
            dns_servers: vec![],
        });
        let plan = p.plan(&s).unwrap();
        let kinds: Vec<_> = plan
            .devices
            .iter()
            .map(|d| match d {
                Device::Block(b) => b.id.clone(),
                Device::Rng => "rng".into(),
                Device::AgentPort { .. } => "agent".into(),
                Device::VirtioFs { socket, .. } => socket.display().to_string(),
                Device::Net(n) => n.id.clone(),
            })
            .collect();
        assert_eq!(
            kinds,
            ["root", "rng", "agent", "rw", "/boxes/b/fs0.sock", "net0"]
        );
        // The share made the planner choose shared memory.
        assert_eq!(plan.memory, MemoryBackend::MemfdShared);
        assert_eq!(plan.machine.virtio, VirtioMmio::Modern);

        // A private RAM file cannot serve a vhost-user share.
        p.config.memory = Some(MemoryBackend::File {
            path: "/t/ram".into(),
            shared: false,
        });
        let err = p.plan(&s).unwrap_err();
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Invalid);
    }

    #[test]
    fn preflight_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = provider().config.clone();
        config.binary = "/nonexistent/qemu".into();
        let err = QemuProvider::new(config.clone(), Launcher::new())
            .preflight(1, 128)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "QEMU not found at /nonexistent/qemu: install qemu-system-x86 (make setup) or set A3S_BOX_QEMU"
        );
        config.binary = "/bin/true".into();
        config.kernel = "/etc/passwd".into();
        let err = QemuProvider::new(config.clone(), Launcher::new())
            .preflight(1, 128)
            .unwrap_err();
        assert!(
            err.to_string().contains("not a Linux kernel image"),
            "{err}"
        );
        let mut bz = vec![0u8; 0x400];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        config.kernel = dir.path().join("bzImage");
        std::fs::write(&config.kernel, bz).unwrap();
        let err = QemuProvider::new(config.clone(), Launcher::new())
            .preflight(1, 128)
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("guest initramfs not found at /k/initramfs.cpio"),
            "{err}"
        );
        config.initramfs = config.kernel.clone();
        QemuProvider::new(config.clone(), Launcher::new())
            .preflight(1, 128)
            .unwrap();
        let err = QemuProvider::new(config, Launcher::new())
            .preflight(1, u32::MAX)
            .unwrap_err();
        assert_eq!(err.kind(), a3s_box_core::ErrorKind::Unavailable);
        assert!(err.to_string().contains("available"), "{err}");
    }
}
