//! Building the QEMU command line: a pure function of the spec and config.

use std::path::{Path, PathBuf};

use a3s_box_core::{guest::AGENT_PORT_NAME, BoxError, InstanceSpec};

use crate::vmm::Accel;

/// Kernel command line every box boots with.
///
/// `panic=-1 reboot=t` plus QEMU's `-no-reboot` turn a guest panic or
/// power-off into a QEMU exit. `tsc=reliable no_timer_check` skip clock
/// checks that take long under emulation; `8250.nr_uarts=1` probes one port.
pub const BASE_KERNEL_ARGS: &str = "console=ttyS0 quiet panic=-1 reboot=t tsc=reliable \
     no_timer_check 8250.nr_uarts=1 random.trust_cpu=on";

/// Extra kernel arguments under software emulation. TCG offers no
/// TSC-deadline timer, so the kernel would spend ~250 ms calibrating the
/// local APIC timer against the PIT; without the APIC timer it ticks from the
/// PIT (broadcast to other vCPUs) and boots that much sooner. Under KVM the
/// TSC-deadline timer skips calibration and stays the better clock event.
pub const TCG_KERNEL_ARGS: &str = "noapictimer";

/// The kernel command line for `accel`.
pub fn kernel_args(accel: Accel) -> String {
    match accel {
        Accel::Kvm => BASE_KERNEL_ARGS.to_string(),
        Accel::Tcg => format!("{BASE_KERNEL_ARGS} {TCG_KERNEL_ARGS}"),
    }
}

/// Machine-level settings that are not part of the VMM contract.
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
    /// The box's writable layer: a raw ext4 image attached read-write as a
    /// second virtio-blk disk with serial [`WRITABLE_SERIAL`].
    pub writable_disk: Option<PathBuf>,
}

/// virtio-blk serial of the writable layer's disk (the guest finds it by it).
pub const WRITABLE_SERIAL: &str = "a3s-rw";

/// The vhost-user socket of the `index`th virtio-fs share: beside the exec socket.
pub fn fs_socket(spec: &InstanceSpec, index: usize) -> PathBuf {
    spec.exec_socket_path
        .with_file_name(format!("fs{index}.sock"))
}

/// A QEMU invocation: program and arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuArgs {
    /// Program to run.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
}

fn path_arg(what: &str, path: &Path) -> Result<String, BoxError> {
    let text = path
        .to_str()
        .ok_or_else(|| BoxError::Config(format!("{what} path {path:?} is not valid UTF-8")))?;
    // QEMU option values are comma-separated; a comma inside a path must be doubled.
    Ok(text.replace(',', ",,"))
}

/// QEMU's QMP socket: beside the exec socket.
pub fn qmp_socket(spec: &InstanceSpec) -> PathBuf {
    spec.exec_socket_path.with_file_name(QMP_SOCKET)
}

/// File name of the QMP socket in a box directory.
pub const QMP_SOCKET: &str = "qmp.sock";

/// Build the QEMU command line that runs `spec`.
///
/// The root filesystem (`spec.rootfs_path`) is attached read-only as the
/// first virtio-blk disk (`/dev/vda` in the guest); the guest protocol runs
/// over a virtio-serial port whose host end is a unix socket QEMU listens on
/// at `spec.exec_socket_path`.
pub fn build(config: &QemuConfig, spec: &InstanceSpec) -> Result<QemuArgs, BoxError> {
    if spec.vcpus == 0 {
        return Err(BoxError::Config("a VM needs at least 1 vCPU".into()));
    }
    if spec.memory_mib < 64 {
        return Err(BoxError::Config(format!(
            "{} MiB of memory is too little for a VM: use at least 64m",
            spec.memory_mib
        )));
    }
    let (accel, cpu) = match config.accel {
        Accel::Kvm => ("kvm", "host"),
        Accel::Tcg => ("tcg", "max"),
    };
    let mut append = kernel_args(config.accel);
    for extra in &config.extra_kernel_args {
        append.push(' ');
        append.push_str(extra);
    }
    let console = match &spec.console_output {
        Some(path) => format!("file:{}", path_arg("console", path)?),
        None => "null".into(),
    };
    // vhost-user devices (virtio-fs) need guest memory the daemon can map.
    let machine = if spec.fs_mounts.is_empty() {
        "microvm,x-option-roms=off,isa-serial=on,acpi=off"
    } else {
        "microvm,x-option-roms=off,isa-serial=on,acpi=off,memory-backend=mem"
    };
    let mut args: Vec<String> = [
        "-M",
        machine,
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "-m".into(),
        format!("{}M", spec.memory_mib),
        "-smp".into(),
        spec.vcpus.to_string(),
        "-serial".into(),
        console,
        "-kernel".into(),
        path_arg("kernel", &config.kernel)?,
        "-initrd".into(),
        path_arg("initramfs", &config.initramfs)?,
        "-append".into(),
        append,
        "-drive".into(),
        format!(
            "id=root,file={},format=raw,if=none,readonly=on",
            path_arg("root filesystem", &spec.rootfs_path)?
        ),
        "-device".into(),
        "virtio-blk-device,drive=root,serial=a3s-root".into(),
        "-device".into(),
        "virtio-rng-device".into(),
        "-device".into(),
        "virtio-serial-device,max_ports=2".into(),
        "-chardev".into(),
        format!(
            "socket,id=agent,path={},server=on,wait=off",
            path_arg("agent socket", &spec.exec_socket_path)?
        ),
        "-device".into(),
        format!("virtserialport,chardev=agent,name={AGENT_PORT_NAME}"),
        "-qmp".into(),
        format!(
            "unix:{},server=on,wait=off",
            path_arg("QMP socket", &qmp_socket(spec))?
        ),
    ]);
    if let Some(disk) = &config.writable_disk {
        args.extend([
            "-drive".into(),
            format!(
                "id=rw,file={},format=raw,if=none,discard=unmap",
                path_arg("writable layer", disk)?
            ),
            "-device".into(),
            format!("virtio-blk-device,drive=rw,serial={WRITABLE_SERIAL}"),
        ]);
    }
    if !spec.fs_mounts.is_empty() {
        // vhost-user daemons speak virtio 1.0 only: modern virtio-mmio.
        args.extend([
            "-global".into(),
            "virtio-mmio.force-legacy=false".into(),
            "-object".into(),
            format!(
                "memory-backend-memfd,id=mem,size={}M,share=on",
                spec.memory_mib
            ),
        ]);
    }
    for (index, share) in spec.fs_mounts.iter().enumerate() {
        if share.tag.is_empty() || share.tag.len() > 36 || share.tag.contains(',') {
            return Err(BoxError::Config(format!(
                "virtio-fs tag {:?} must be 1 to 36 characters without commas",
                share.tag
            )));
        }
        args.extend([
            "-chardev".into(),
            format!(
                "socket,id=fs{index},path={}",
                path_arg("virtio-fs socket", &fs_socket(spec, index))?
            ),
            "-device".into(),
            format!("vhost-user-fs-device,chardev=fs{index},tag={}", share.tag),
        ]);
    }
    Ok(QemuArgs {
        program: config.binary.clone(),
        args,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(accel: Accel) -> QemuConfig {
        QemuConfig {
            binary: "/usr/bin/qemu-system-x86_64".into(),
            kernel: "/k/vmlinux".into(),
            initramfs: "/k/initramfs.cpio".into(),
            accel,
            extra_kernel_args: vec!["a3s.debug".into()],
            writable_disk: None,
        }
    }

    fn spec() -> InstanceSpec {
        InstanceSpec {
            box_id: "b".into(),
            vcpus: 1,
            memory_mib: 256,
            rootfs_path: "/boxes/b/root,fs.img".into(),
            exec_socket_path: "/boxes/b/agent.sock".into(),
            console_output: Some("/boxes/b/console.log".into()),
            ..InstanceSpec::default()
        }
    }

    #[test]
    fn tcg_command_line_snapshot() {
        let q = build(&config(Accel::Tcg), &spec()).unwrap();
        assert_eq!(q.program, PathBuf::from("/usr/bin/qemu-system-x86_64"));
        let expected = format!(
            "-M microvm,x-option-roms=off,isa-serial=on,acpi=off -accel tcg -cpu max \
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
    fn kvm_uses_host_cpu_and_no_console_goes_to_null() {
        let mut s = spec();
        s.console_output = None;
        let q = build(&config(Accel::Kvm), &s).unwrap();
        let line = q.args.join(" ");
        assert!(line.contains("-accel kvm -cpu host"));
        assert!(!line.contains(TCG_KERNEL_ARGS));
        assert!(line.contains("-serial null"));
    }

    #[test]
    fn writable_layer_and_shares_add_a_disk_shared_memory_and_fs_devices() {
        let mut c = config(Accel::Tcg);
        c.writable_disk = Some("/boxes/b/rw.img".into());
        let mut s = spec();
        s.fs_mounts = vec![a3s_box_core::FsMount {
            tag: "a3s-fs0".into(),
            host_path: "/data".into(),
            read_only: false,
        }];
        let line = build(&c, &s).unwrap().args.join(" ");
        assert!(line.contains("acpi=off,memory-backend=mem "), "{line}");
        assert!(line.ends_with(
            "-drive id=rw,file=/boxes/b/rw.img,format=raw,if=none,discard=unmap \
             -device virtio-blk-device,drive=rw,serial=a3s-rw \
             -global virtio-mmio.force-legacy=false \
             -object memory-backend-memfd,id=mem,size=256M,share=on \
             -chardev socket,id=fs0,path=/boxes/b/fs0.sock \
             -device vhost-user-fs-device,chardev=fs0,tag=a3s-fs0"
        ));
        s.fs_mounts[0].tag = "a,b".into();
        assert!(build(&c, &s).is_err());
    }

    #[test]
    fn impossible_sizes_are_refused() {
        let mut s = spec();
        s.vcpus = 0;
        assert!(build(&config(Accel::Tcg), &s).is_err());
        let mut s = spec();
        s.memory_mib = 16;
        assert!(build(&config(Accel::Tcg), &s)
            .unwrap_err()
            .to_string()
            .contains("64m"));
    }
}
