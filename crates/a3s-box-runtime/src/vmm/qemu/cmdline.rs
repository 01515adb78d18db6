//! The QEMU command line of a [`VmPlan`]: a pure function, snapshot-tested.
//!
//! The argument order is: machine and accelerator, memory, the kernel, the
//! devices in plan order (which sets their virtio-mmio slots), QMP, then an
//! incoming migration.

use std::path::{Path, PathBuf};

use a3s_box_core::guest::AGENT_PORT_NAME;

use crate::vmm::plan::{
    BlockDevice, Console, Device, Incoming, MemoryBackend, NetBackend, NetDevice, PlanError,
    VirtioMmio, VmPlan,
};
use crate::vmm::Accel;

/// Kernel command line every box boots with.
///
/// `panic=-1 reboot=t` plus QEMU's `-no-reboot` turn a guest panic or
/// power-off into a QEMU exit. `tsc=reliable no_timer_check` skip clock
/// checks that take long under emulation; `8250.nr_uarts=1` probes one port.
pub const BASE_KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1 reboot=t tsc=reliable \
     no_timer_check 8250.nr_uarts=1 random.trust_cpu=on";

/// Extra kernel arguments under software emulation.
///
/// - `noapictimer`: TCG offers no TSC-deadline timer, so the kernel would
///   spend ~250 ms calibrating the local APIC timer against the PIT; without
///   the APIC timer it ticks from the PIT (broadcast to other vCPUs) and
///   boots that much sooner. Under KVM the TSC-deadline timer skips
///   calibration and stays the better clock event.
/// - `noreplace-smp`: with one vCPU the kernel would rewrite every `lock`
///   prefix of its text for a uniprocessor, one `text_poke` (a page-table
///   switch and a TLB flush, each a full softmmu TLB flush under TCG) per
///   site: ~90 ms of a TCG boot. The prefixes cost nothing worth that.
pub const TCG_KERNEL_ARGS: &str = "noapictimer noreplace-smp";

/// The CPU under TCG: everything QEMU emulates but the "enhanced" and "fast
/// short" `rep movsb`/`rep stosb` (ERMS, FSRM). QEMU's TCG runs each
/// iteration of a rep string instruction as a translated block of its own,
/// so with them the guest kernel clears every page a byte per block and
/// glibc copies large buffers the same way; without them both take their
/// loops: fork and exec ~6 % sooner (docs/design.md). KVM passes the host's.
pub const TCG_CPU: &str = "max,-erms,-fsrm";

/// The microvm machine: no option ROMs, one ISA serial port for the
/// console, no ACPI (QEMU then lists the virtio-mmio devices on the kernel
/// command line itself).
const MACHINE: &str = "microvm,x-option-roms=off,isa-serial=on,acpi=off";
/// Id of the memory backend object.
const MEMORY_ID: &str = "mem";

/// The kernel command line for `accel`.
pub fn kernel_args(accel: Accel) -> String {
    match accel {
        Accel::Kvm => BASE_KERNEL_ARGS.to_string(),
        Accel::Tcg => format!("{BASE_KERNEL_ARGS} {TCG_KERNEL_ARGS}"),
    }
}

/// QEMU's `-cpu` for `accel`.
pub fn cpu_model(accel: Accel) -> &'static str {
    match accel {
        Accel::Kvm => "host",
        Accel::Tcg => TCG_CPU,
    }
}

/// A QEMU invocation: program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuArgs {
    /// Program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

impl QemuArgs {
    /// The command as a shell would take it (for logs).
    pub fn to_shell(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .map(|a| {
                if !a.is_empty()
                    && a.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_./:,=@".contains(&b))
                {
                    a
                } else {
                    format!("'{}'", a.replace('\'', r"'\''"))
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// A path as a QEMU option value: UTF-8, commas doubled.
fn path_arg(what: &'static str, path: &Path) -> Result<String, PlanError> {
    let text = path.to_str().ok_or_else(|| PlanError::BadValue {
        what,
        value: path.display().to_string(),
        rule: "must be valid UTF-8",
    })?;
    // QEMU option values are comma-separated; a comma inside a path must be doubled.
    Ok(text.replace(',', ",,"))
}

/// The QEMU arguments that run `plan` (validated first).
pub fn build(program: &Path, plan: &VmPlan) -> Result<QemuArgs, PlanError> {
    plan.validate()?;
    let m = &plan.machine;
    let accel = match m.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let cpu = cpu_model(m.accel);
    let mut args: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
    let machine = match plan.memory {
        MemoryBackend::Anonymous => MACHINE.to_string(),
        _ => format!("{MACHINE},memory-backend={MEMORY_ID}"),
    };
    push(&["-M", &machine, "-accel", accel, "-cpu", cpu]);
    push(&["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"]);
    if m.virtio == VirtioMmio::Modern {
        push(&["-global", "virtio-mmio.force-legacy=false"]);
    }
    push(&["-m", &format!("{}M", m.memory_mib)]);
    if let Some(object) = memory_object(&plan.memory, m.memory_mib)? {
        push(&["-object", &object]);
    }
    let console = match &plan.console {
        Console::File(path) => format!("file:{}", path_arg("console", path)?),
        Console::Null => "null".into(),
    };
    push(&["-smp", &m.vcpus.to_string(), "-serial", &console]);
    push(&["-kernel", &path_arg("kernel", &m.kernel)?]);
    push(&["-initrd", &path_arg("initramfs", &m.initramfs)?]);
    push(&["-append", &m.kernel_cmdline]);
    let mut shares = 0;
    for device in &plan.devices {
        match device {
            Device::Block(disk) => block(disk, &mut push)?,
            Device::Rng => push(&["-device", "virtio-rng-device"]),
            Device::AgentPort { socket } => push(&[
                "-device",
                "virtio-serial-device,max_ports=2",
                "-chardev",
                &format!(
                    "socket,id=agent,path={},server=on,wait=off",
                    path_arg("agent socket", socket)?
                ),
                "-device",
                &format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
            ]),
            Device::VirtioFs { tag, socket } => {
                let id = format!("fs{shares}");
                shares += 1;
                push(&[
                    "-chardev",
                    &format!(
                        "socket,id={id},path={}",
                        path_arg("virtio-fs socket", socket)?
                    ),
                    "-device",
                    &format!("vhost-user-fs-device,chardev={id},tag={tag}"),
                ]);
            }
            Device::Net(net) => network(net, &mut push)?,
        }
    }
    push(&[
        "-qmp",
        &format!(
            "unix:{},server=on,wait=off",
            path_arg("QMP socket", &plan.qmp_socket)?
        ),
    ]);
    match plan.incoming {
        Some(Incoming::Defer) => push(&["-incoming", "defer"]),
        Some(Incoming::Fd(fd)) => push(&["-incoming", &format!("fd:{fd}")]),
        None => {}
    }
    Ok(QemuArgs {
        program: program.to_path_buf(),
        args,
    })
}

fn memory_object(memory: &MemoryBackend, mib: u32) -> Result<Option<String>, PlanError> {
    Ok(match memory {
        MemoryBackend::Anonymous => None,
        MemoryBackend::MemfdShared => Some(format!(
            "memory-backend-memfd,id={MEMORY_ID},size={mib}M,share=on"
        )),
        MemoryBackend::File { path, shared } => Some(format!(
            "memory-backend-file,id={MEMORY_ID},size={mib}M,mem-path={},share={}",
            path_arg("memory file", path)?,
            if *shared { "on" } else { "off" }
        )),
    })
}

fn block(disk: &BlockDevice, push: &mut impl FnMut(&[&str])) -> Result<(), PlanError> {
    let mut drive = format!(
        "id={},file={},format=raw,if=none",
        disk.id,
        path_arg("disk image", &disk.path)?
    );
    if disk.read_only {
        drive.push_str(",readonly=on");
    }
    if disk.discard {
        drive.push_str(",discard=unmap");
    }
    push(&[
        "-drive",
        &drive,
        "-device",
        &format!("virtio-blk-device,drive={},serial={}", disk.id, disk.serial),
    ]);
    Ok(())
}

fn network(net: &NetDevice, push: &mut impl FnMut(&[&str])) -> Result<(), PlanError> {
    let netdev = match &net.backend {
        NetBackend::Stream { socket } => format!(
            "stream,id={},server=off,addr.type=unix,addr.path={}",
            net.id,
            path_arg("network socket", socket)?
        ),
        // QEMU reads the vnet header setting from the open device itself
        // (and refuses `vnet_hdr=` next to `fd=`).
        NetBackend::TapFd { fd } => format!("tap,id={},fd={fd}", net.id),
    };
    let mac = net
        .mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    push(&[
        "-netdev",
        &netdev,
        "-device",
        &format!("virtio-net-device,netdev={},mac={mac}", net.id),
    ]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::plan::tests::minimal;

    const QEMU: &str = "/usr/bin/qemu-system-x86_64";

    fn line(plan: &VmPlan) -> String {
        build(Path::new(QEMU), plan).unwrap().args.join(" ")
    }

    /// Today's foreground box (no writable layer, no shares): the command
    /// line is exactly what it was before plans existed.
    #[test]
    fn minimal_plan_snapshot() {
        let mut plan = minimal();
        plan.machine.kernel_cmdline = format!("{BASE_KERNEL_ARGS} {TCG_KERNEL_ARGS} a3s.debug");
        plan.console = Console::File("/boxes/b/console.log".into());
        if let Device::Block(root) = &mut plan.devices[0] {
            root.path = "/boxes/b/root,fs.img".into();
        }
        let q = build(Path::new(QEMU), &plan).unwrap();
        assert_eq!(q.program, PathBuf::from(QEMU));
        let expected = format!(
            "-M microvm,x-option-roms=off,isa-serial=on,acpi=off -accel tcg -cpu max,-erms,-fsrm \
             -nodefaults -no-user-config -nographic -no-reboot -m 256M -smp 1 \
             -serial file:/boxes/b/console.log -kernel /k/vmlinux -initrd /k/initramfs.cpio \
             -append {BASE_KERNEL_ARGS} {TCG_KERNEL_ARGS} a3s.debug \
             -drive id=root,file=/boxes/b/root,,fs.img,format=raw,if=none,readonly=on \
             -device virtio-blk-device,drive=root,serial=a3s-root -device virtio-rng-device \
             -device virtio-serial-device,max_ports=2 \
             -chardev socket,id=agent,path=/boxes/b/agent.sock,server=on,wait=off \
             -device virtserialport,chardev=agent,name=a3s.agent \
             -qmp unix:/boxes/b/qmp.sock,server=on,wait=off"
        );
        assert_eq!(q.args.join(" "), expected);
    }

    #[test]
    fn kvm_uses_the_host_cpu() {
        let mut plan = minimal();
        plan.machine.accel = Accel::Kvm;
        assert!(line(&plan).starts_with(
            "-M microvm,x-option-roms=off,isa-serial=on,acpi=off -accel kvm -cpu host "
        ));
        assert!(line(&plan).contains(" -serial null "));
    }

    #[test]
    fn writable_disk_and_shares_snapshot() {
        let mut plan = minimal();
        plan.devices.push(Device::Block(BlockDevice {
            id: "rw".into(),
            path: "/boxes/b/rw.img".into(),
            read_only: false,
            serial: "a3s-rw".into(),
            discard: true,
        }));
        for (i, tag) in ["a3s-fs0", "a3s-fs1"].into_iter().enumerate() {
            plan.devices.push(Device::VirtioFs {
                tag: tag.into(),
                socket: format!("/boxes/b/fs{i}.sock").into(),
            });
        }
        assert!(build(Path::new(QEMU), &plan).is_err(), "not fitted");
        plan.fit_devices();
        assert_eq!(
            line(&plan),
            "-M microvm,x-option-roms=off,isa-serial=on,acpi=off,memory-backend=mem \
             -accel tcg -cpu max,-erms,-fsrm -nodefaults -no-user-config -nographic -no-reboot \
             -global virtio-mmio.force-legacy=false \
             -m 256M -object memory-backend-memfd,id=mem,size=256M,share=on \
             -smp 1 -serial null -kernel /k/vmlinux -initrd /k/initramfs.cpio \
             -append console=ttyS0 \
             -drive id=root,file=/boxes/b/root.img,format=raw,if=none,readonly=on \
             -device virtio-blk-device,drive=root,serial=a3s-root -device virtio-rng-device \
             -device virtio-serial-device,max_ports=2 \
             -chardev socket,id=agent,path=/boxes/b/agent.sock,server=on,wait=off \
             -device virtserialport,chardev=agent,name=a3s.agent \
             -drive id=rw,file=/boxes/b/rw.img,format=raw,if=none,discard=unmap \
             -device virtio-blk-device,drive=rw,serial=a3s-rw \
             -chardev socket,id=fs0,path=/boxes/b/fs0.sock \
             -device vhost-user-fs-device,chardev=fs0,tag=a3s-fs0 \
             -chardev socket,id=fs1,path=/boxes/b/fs1.sock \
             -device vhost-user-fs-device,chardev=fs1,tag=a3s-fs1 \
             -qmp unix:/boxes/b/qmp.sock,server=on,wait=off"
        );
    }

    #[test]
    fn network_devices_snapshot() {
        let mut plan = minimal();
        plan.devices.push(Device::Net(NetDevice {
            id: "net0".into(),
            mac: [0x02, 0xa3, 0x5b, 0, 0x10, 0xff],
            backend: NetBackend::Stream {
                socket: "/boxes/b/passt.sock".into(),
            },
        }));
        plan.devices.push(Device::Net(NetDevice {
            id: "net1".into(),
            mac: [0x02, 0, 0, 0, 0, 1],
            backend: NetBackend::TapFd { fd: 5 },
        }));
        assert!(line(&plan).ends_with(
            "-device virtserialport,chardev=agent,name=a3s.agent \
             -netdev stream,id=net0,server=off,addr.type=unix,addr.path=/boxes/b/passt.sock \
             -device virtio-net-device,netdev=net0,mac=02:a3:5b:00:10:ff \
             -netdev tap,id=net1,fd=5 \
             -device virtio-net-device,netdev=net1,mac=02:00:00:00:00:01 \
             -qmp unix:/boxes/b/qmp.sock,server=on,wait=off"
        ));
    }

    #[test]
    fn file_memory_and_incoming_snapshot() {
        let mut plan = minimal();
        plan.memory = MemoryBackend::File {
            path: "/templates/t/ram".into(),
            shared: false,
        };
        plan.incoming = Some(Incoming::Defer);
        let l = line(&plan);
        assert!(l.starts_with(
            "-M microvm,x-option-roms=off,isa-serial=on,acpi=off,memory-backend=mem \
             -accel tcg -cpu max,-erms,-fsrm -nodefaults -no-user-config -nographic -no-reboot \
             -m 256M -object memory-backend-file,id=mem,size=256M,mem-path=/templates/t/ram,share=off \
             -smp 1 "
        ), "{l}");
        assert!(l.ends_with("-qmp unix:/boxes/b/qmp.sock,server=on,wait=off -incoming defer"));
        plan.memory = MemoryBackend::File {
            path: "/templates/t/ram".into(),
            shared: true,
        };
        plan.incoming = Some(Incoming::Fd(7));
        let l = line(&plan);
        assert!(l.contains("mem-path=/templates/t/ram,share=on -smp"), "{l}");
        assert!(l.ends_with(" -incoming fd:7"), "{l}");
    }

    #[test]
    fn shell_form_quotes_what_needs_it() {
        let q = QemuArgs {
            program: "/usr/bin/qemu".into(),
            args: vec!["-append".into(), "a b".into(), "it's".into(), "".into()],
        };
        assert_eq!(q.to_shell(), r"/usr/bin/qemu -append 'a b' 'it'\''s' ''");
    }
}
