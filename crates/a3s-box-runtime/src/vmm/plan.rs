//! What a VM is made of: a [`VmPlan`], pure data a backend turns into its
//! own terms (QEMU arguments: [`crate::vmm::qemu::cmdline`]).
//!
//! The order of [`VmPlan::devices`] is the order the devices are created
//! in, which fixes their virtio-mmio slots (and so the guest's `/dev/vda`,
//! `/dev/vdb`, ...): a plan that must match another one (a template and its
//! clones) must list the same devices in the same order.
//!
//! Rules the devices impose on the machine are checked here
//! ([`VmPlan::validate`]) rather than left to side effects: a vhost-user
//! device (virtio-fs) needs guest memory its daemon can map (a shared
//! memory backend) and modern virtio-mmio. [`VmPlan::fit_devices`] chooses
//! both when the caller did not.

use std::os::fd::RawFd;
use std::path::PathBuf;

use super::Accel;

/// Least guest memory a VM boots with.
pub const MIN_MEMORY_MIB: u32 = 64;
/// Longest virtio-fs tag (the device's config field is 36 bytes).
pub const MAX_FS_TAG_LEN: usize = 36;

/// One VM, ready to hand to a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPlan {
    /// CPUs, memory size, kernel.
    pub machine: Machine,
    /// Where guest memory comes from.
    pub memory: MemoryBackend,
    /// Devices, in creation order.
    pub devices: Vec<Device>,
    /// Start paused, waiting for migration state.
    pub incoming: Option<Incoming>,
    /// The control socket the hypervisor listens on (QMP).
    pub qmp_socket: PathBuf,
    /// Where the guest's serial console goes.
    pub console: Console,
}

/// CPUs, memory size and what boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// Accelerator.
    pub accel: Accel,
    /// Virtual CPUs.
    pub vcpus: u8,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest kernel (PVH `vmlinux` or `bzImage`).
    pub kernel: PathBuf,
    /// initramfs holding guest-init.
    pub initramfs: PathBuf,
    /// The whole kernel command line.
    pub kernel_cmdline: String,
    /// virtio-mmio transport version.
    pub virtio: VirtioMmio,
}

/// The virtio-mmio transport devices offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VirtioMmio {
    /// Legacy (virtio 0.9) transport: QEMU's default for microvm.
    #[default]
    Legacy,
    /// Modern (virtio 1.0) transport: needed by vhost-user daemons.
    Modern,
}

/// Where guest memory comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MemoryBackend {
    /// Private anonymous memory.
    #[default]
    Anonymous,
    /// A memfd shared with vhost-user daemons.
    MemfdShared,
    /// A file: `shared` (MAP_SHARED) for a template whose RAM stays in the
    /// file, private (MAP_PRIVATE, copy-on-write) for its clones, which
    /// must never write the file.
    File {
        /// The RAM file.
        path: PathBuf,
        /// Map it shared.
        shared: bool,
    },
}

impl MemoryBackend {
    /// Whether another process (a vhost-user daemon) can map guest memory.
    pub fn is_shared(&self) -> bool {
        matches!(
            self,
            MemoryBackend::MemfdShared | MemoryBackend::File { shared: true, .. }
        )
    }
}

/// Where the serial console goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Console {
    /// Nowhere.
    Null,
    /// Appended to a file.
    File(PathBuf),
}

/// Start the VM paused, taking its state from a migration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Wait for the migration to be started over QMP (`migrate-incoming`),
    /// so capabilities such as `x-ignore-shared` can be set first.
    Defer,
    /// Read the state from this descriptor (inherited by the hypervisor).
    Fd(RawFd),
}

/// A device of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device {
    /// A virtio-blk disk backed by a raw image.
    Block(BlockDevice),
    /// The virtio-serial port guest-init speaks the guest protocol on; the
    /// hypervisor listens on `socket`.
    AgentPort {
        /// Host end of the port.
        socket: PathBuf,
    },
    /// A virtio-fs share served by a vhost-user daemon on `socket`.
    VirtioFs {
        /// The tag the guest mounts it by.
        tag: String,
        /// The daemon's vhost-user socket.
        socket: PathBuf,
    },
    /// A virtio-net interface.
    Net(NetDevice),
    /// A virtio-rng entropy source.
    Rng,
}

impl Device {
    /// Whether a vhost-user daemon implements the device.
    pub fn is_vhost_user(&self) -> bool {
        matches!(self, Device::VirtioFs { .. })
    }
}

/// A virtio-blk disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// Unique id among the VM's disks.
    pub id: String,
    /// The raw image.
    pub path: PathBuf,
    /// The guest cannot write it.
    pub read_only: bool,
    /// Serial the guest finds it by (`/sys/block/vdX/serial`).
    pub serial: String,
    /// Pass the guest's discards to the image (punching holes).
    pub discard: bool,
}

/// A virtio-net interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDevice {
    /// Unique id among the VM's interfaces.
    pub id: String,
    /// The guest's MAC address.
    pub mac: [u8; 6],
    /// What carries its frames on the host.
    pub backend: NetBackend,
}

/// The host side of a network interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetBackend {
    /// A stream socket (passt's unix socket).
    Stream {
        /// The socket.
        socket: PathBuf,
    },
    /// An open TAP device, inherited as `fd`; opened with `IFF_VNET_HDR`
    /// (virtio-net headers), which QEMU detects on the descriptor.
    TapFd {
        /// Its descriptor number in the hypervisor.
        fd: RawFd,
    },
}

/// A plan that cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// No vCPU.
    #[error("a VM needs at least 1 vCPU")]
    NoVcpu,
    /// Too little memory.
    #[error("{0} MiB of memory is too little for a VM: use at least 64m")]
    TooLittleMemory(u32),
    /// A vhost-user device with memory its daemon cannot map.
    #[error("{device} needs shared guest memory (memfd or a shared file), not {memory}")]
    NeedsSharedMemory {
        /// The device.
        device: String,
        /// The memory backend given.
        memory: &'static str,
    },
    /// A vhost-user device on the legacy transport.
    #[error("{0} needs modern virtio-mmio")]
    NeedsModernVirtio(String),
    /// Two devices with one id.
    #[error("device id {0:?} is used twice")]
    DuplicateId(String),
    /// A value QEMU cannot take.
    #[error("{what} {value:?} {rule}")]
    BadValue {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
        /// What it must be.
        rule: &'static str,
    },
}

impl From<PlanError> for a3s_box_core::BoxError {
    fn from(e: PlanError) -> Self {
        a3s_box_core::BoxError::Invalid(e.to_string())
    }
}

impl VmPlan {
    /// Whether a device needs a vhost-user daemon.
    pub fn has_vhost_user(&self) -> bool {
        self.devices.iter().any(Device::is_vhost_user)
    }

    /// Give vhost-user devices what they need: modern virtio-mmio, and a
    /// shared memory backend (a memfd) when the memory is private
    /// anonymous. A backend chosen explicitly (a file) is left alone for
    /// [`VmPlan::validate`] to judge.
    pub fn fit_devices(&mut self) {
        if self.has_vhost_user() {
            self.machine.virtio = VirtioMmio::Modern;
            if self.memory == MemoryBackend::Anonymous {
                self.memory = MemoryBackend::MemfdShared;
            }
        }
    }

    /// Check the plan's own rules (see the module documentation).
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.machine.vcpus == 0 {
            return Err(PlanError::NoVcpu);
        }
        if self.machine.memory_mib < MIN_MEMORY_MIB {
            return Err(PlanError::TooLittleMemory(self.machine.memory_mib));
        }
        let mut ids = Vec::new();
        for device in &self.devices {
            match device {
                Device::Block(b) => {
                    ids.push(&b.id);
                    option_value("disk serial", &b.serial, 20)?;
                }
                Device::Net(n) => ids.push(&n.id),
                Device::VirtioFs { tag, .. } => {
                    option_value("virtio-fs tag", tag, MAX_FS_TAG_LEN)?;
                    let name = format!("virtio-fs share {tag}");
                    if !self.memory.is_shared() {
                        return Err(PlanError::NeedsSharedMemory {
                            device: name,
                            memory: match self.memory {
                                MemoryBackend::File { .. } => "a private file mapping",
                                _ => "private anonymous memory",
                            },
                        });
                    }
                    if self.machine.virtio != VirtioMmio::Modern {
                        return Err(PlanError::NeedsModernVirtio(name));
                    }
                }
                Device::AgentPort { .. } | Device::Rng => {}
            }
        }
        for id in &ids {
            option_value("device id", id, 32)?;
        }
        ids.sort();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(PlanError::DuplicateId(w[0].clone()));
        }
        if let Some(Incoming::Fd(fd)) = self.incoming {
            if fd < 3 {
                return Err(PlanError::BadValue {
                    what: "incoming descriptor",
                    value: fd.to_string(),
                    rule: "must be 3 or more",
                });
            }
        }
        Ok(())
    }
}

/// A name that goes into a comma-separated option list unquoted.
fn option_value(what: &'static str, value: &str, max: usize) -> Result<(), PlanError> {
    if value.is_empty() || value.len() > max || value.contains([',', '=', ' ']) {
        let rule = match what {
            "virtio-fs tag" => "must be 1 to 36 characters without commas",
            _ => "must be short, without commas, '=' or spaces",
        };
        return Err(PlanError::BadValue {
            what,
            value: value.into(),
            rule,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid plan: root disk, rng, agent port.
    pub(crate) fn minimal() -> VmPlan {
        VmPlan {
            machine: Machine {
                accel: Accel::Tcg,
                vcpus: 1,
                memory_mib: 256,
                kernel: "/k/vmlinux".into(),
                initramfs: "/k/initramfs.cpio".into(),
                kernel_cmdline: "console=ttyS0".into(),
                virtio: VirtioMmio::Legacy,
            },
            memory: MemoryBackend::Anonymous,
            devices: vec![
                Device::Block(BlockDevice {
                    id: "root".into(),
                    path: "/boxes/b/root.img".into(),
                    read_only: true,
                    serial: "a3s-root".into(),
                    discard: false,
                }),
                Device::Rng,
                Device::AgentPort {
                    socket: "/boxes/b/agent.sock".into(),
                },
            ],
            incoming: None,
            qmp_socket: "/boxes/b/qmp.sock".into(),
            console: Console::Null,
        }
    }

    fn share(tag: &str) -> Device {
        Device::VirtioFs {
            tag: tag.into(),
            socket: "/boxes/b/fs0.sock".into(),
        }
    }

    #[test]
    fn vhost_user_devices_get_shared_memory_and_modern_virtio() {
        let mut plan = minimal();
        plan.validate().unwrap();
        plan.fit_devices();
        assert_eq!(plan, minimal(), "nothing to fit without vhost-user");
        plan.devices.push(share("a3s-fs0"));
        assert!(matches!(
            plan.validate(),
            Err(PlanError::NeedsSharedMemory { .. })
        ));
        plan.fit_devices();
        assert_eq!(plan.memory, MemoryBackend::MemfdShared);
        assert_eq!(plan.machine.virtio, VirtioMmio::Modern);
        plan.validate().unwrap();

        // A clone's private RAM file is kept, and refused.
        let private = MemoryBackend::File {
            path: "/t/ram".into(),
            shared: false,
        };
        plan.memory = private.clone();
        plan.fit_devices();
        assert_eq!(plan.memory, private);
        let err = plan.validate().unwrap_err();
        assert!(err.to_string().contains("a private file mapping"), "{err}");
        plan.memory = MemoryBackend::File {
            path: "/t/ram".into(),
            shared: true,
        };
        plan.validate().unwrap();
        plan.machine.virtio = VirtioMmio::Legacy;
        assert!(matches!(
            plan.validate(),
            Err(PlanError::NeedsModernVirtio(_))
        ));
    }

    #[test]
    fn impossible_sizes_and_names_are_refused() {
        let mut plan = minimal();
        plan.machine.vcpus = 0;
        assert_eq!(plan.validate(), Err(PlanError::NoVcpu));
        let mut plan = minimal();
        plan.machine.memory_mib = 16;
        assert!(plan.validate().unwrap_err().to_string().contains("64m"));

        let mut plan = minimal();
        plan.memory = MemoryBackend::MemfdShared;
        plan.machine.virtio = VirtioMmio::Modern;
        plan.devices.push(share("a,b"));
        let err = plan.validate().unwrap_err();
        assert!(err.to_string().contains("1 to 36 characters"), "{err}");
        plan.devices.pop();
        plan.devices.push(share(&"x".repeat(37)));
        assert!(plan.validate().is_err());

        let mut plan = minimal();
        plan.devices.push(plan.devices[0].clone());
        assert_eq!(plan.validate(), Err(PlanError::DuplicateId("root".into())));

        let mut plan = minimal();
        plan.incoming = Some(Incoming::Fd(1));
        assert!(plan.validate().is_err());
        plan.incoming = Some(Incoming::Fd(3));
        plan.validate().unwrap();
    }
}
