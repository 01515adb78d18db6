//! One VM, two containers, driven through the guest protocol by hand (the
//! host-side sandbox actor is not written yet): the first container comes
//! with `Boot` from the root disk, the second joins with `CreateContainer`,
//! its image an EROFS file on a read-only virtio-fs share and its writable
//! layer a directory on the sandbox's disk. Checks what each container sees
//! (hostname, /etc files, PID 1, files), that they share loopback, that
//! limits hold, and that stopping or removing one leaves the other and the
//! sandbox running.
//!
//! Needs the boot assets (`make kernel initramfs rootfs`) and the virtio-fs
//! daemon (`cargo build -p a3s-box-fs`).
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use a3s_box_core::config::ResourceLimits;
use a3s_box_core::guest::message::{
    BootSpec, ContainerSpec, DiskSpec, DnsConfig, GuestMessage, HostEntry, HostMessage, Message,
    NetworkConfig, ProcessSpec, RootImage, RootSpec, StorageSpec,
};
use a3s_box_core::guest::{Frame, PROTOCOL_VERSION};
use a3s_box_core::{FsMount, InstanceSpec, VmHandler};
use a3s_box_runtime::guest::{self, seed, FrameReader, FrameWriter};
use a3s_box_runtime::launch::Launcher;
use a3s_box_runtime::rootfs::{build_image, cached_image, RootfsFormat};
use a3s_box_runtime::storage::layer;
use a3s_box_runtime::storage::plan::{writable_disk, WRITABLE_SERIAL};
use a3s_box_runtime::storage::virtiofs;
use a3s_box_runtime::vmm::accel::{self, AccelChoice, HostKvm};
use a3s_box_runtime::vmm::qemu::provider::fs_socket;
use a3s_box_runtime::vmm::qemu::{QemuConfig, QemuHandler, QemuProvider};

/// How long any one answer of the guest may take (software emulation on a
/// busy machine is slow).
const WAIT: Duration = Duration::from_secs(120);
const IMAGE_TAG: &str = "a3s-images";

/// `target/<profile>` of this test binary (`target/<profile>/deps/sandbox-*`).
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

fn share() -> PathBuf {
    profile_dir().parent().unwrap().join("share/a3s-box")
}

/// A running VM and the host end of its agent port.
struct Vm {
    qemu: QemuHandler,
    reader: FrameReader,
    writer: FrameWriter,
    /// Control messages read while waiting for another.
    pending: VecDeque<GuestMessage>,
    /// Output of each process.
    output: HashMap<u32, Vec<u8>>,
    console: PathBuf,
    _daemons: virtiofs::Daemons,
    _dir: tempfile::TempDir,
}

impl Vm {
    /// Boot a VM whose root disk is the busybox root filesystem, with a
    /// writable disk and a read-only share holding `images`.
    async fn boot(images: &Path) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("a3s-sbx")
            .tempdir()
            .unwrap();
        let rootfs = share().join("rootfs-busybox");
        assert!(
            rootfs.join("bin/busybox").exists(),
            "{} missing: run make kernel initramfs rootfs",
            rootfs.display()
        );
        let daemon = profile_dir().join("a3s-box-fs");
        assert!(
            daemon.exists(),
            "{} missing: cargo build -p a3s-box-fs",
            daemon.display()
        );
        let image = cached_image(&dir.path().join("cache"), &rootfs, RootfsFormat::Erofs).unwrap();
        let disk = layer::create(&dir.path().join("cache"), dir.path(), 256 << 20).unwrap();
        let socket = dir.path().join("agent.sock");
        let console = dir.path().join("console.log");
        let spec = InstanceSpec {
            box_id: "sandbox-test".into(),
            vcpus: 1,
            memory_mib: 256,
            rootfs_path: image,
            exec_socket_path: socket.clone(),
            console_output: Some(console.clone()),
            fs_mounts: vec![FsMount {
                tag: IMAGE_TAG.into(),
                host_path: images.to_path_buf(),
                read_only: true,
            }],
            ..InstanceSpec::default()
        };
        let decision = accel::decide(AccelChoice::Auto, &HostKvm::probe()).unwrap();
        let mut config = QemuConfig::new(
            "/usr/bin/qemu-system-x86_64".into(),
            share().join("vmlinux"),
            share().join("initramfs.cpio"),
            decision.accel,
        );
        config.extra_kernel_args.push("a3s.debug".into());
        config.extra_devices.push(writable_disk(disk));
        let provider = QemuProvider::new(config, Launcher::new());
        let shares = vec![virtiofs::Share {
            mount: spec.fs_mounts[0].clone(),
            socket: fs_socket(&spec, 0),
            seal_after_fill: false,
        }];
        let daemons = virtiofs::start(
            &Launcher::new(),
            &daemon,
            &shares,
            &dir.path().join("virtiofsd.log"),
        )
        .unwrap();
        let qemu = provider.launch(&spec).unwrap();
        daemons.watch(qemu.pid());
        let (reader, writer) = guest::connect(&socket, Duration::from_secs(10), || true)
            .await
            .unwrap();
        Vm {
            qemu,
            reader,
            writer,
            pending: VecDeque::new(),
            output: HashMap::new(),
            console,
            _daemons: daemons,
            _dir: dir,
        }
    }

    async fn send(&mut self, msg: HostMessage) {
        self.writer
            .send(&Frame::Control(Message::Host(msg)))
            .await
            .unwrap();
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    /// The next control message `want` accepts; others wait in `pending`.
    async fn expect(&mut self, what: &str, want: impl Fn(&GuestMessage) -> bool) -> GuestMessage {
        if let Some(i) = self.pending.iter().position(&want) {
            return self.pending.remove(i).unwrap();
        }
        loop {
            let frame = tokio::time::timeout(WAIT, self.reader.next()).await;
            let frame = match frame {
                Ok(Ok(Some(frame))) => frame,
                other => panic!("waiting for {what}: {other:?}\n{}", self.console()),
            };
            match frame {
                Frame::Control(Message::Guest(msg)) if want(&msg) => return msg,
                Frame::Control(Message::Guest(GuestMessage::Fatal { reason })) => {
                    panic!("guest-init failed: {reason}\n{}", self.console())
                }
                Frame::Control(Message::Guest(msg)) => self.pending.push_back(msg),
                Frame::Data { process, bytes, .. } => {
                    self.output.entry(process).or_default().extend(bytes)
                }
                _ => {}
            }
        }
    }

    /// Start `spec` (`Exec`, or `Start` for a main process); its guest pid.
    async fn spawn(&mut self, spec: ProcessSpec, main: bool) -> Result<u32, String> {
        let process = spec.process;
        self.send(if main {
            HostMessage::Start(spec)
        } else {
            HostMessage::Exec(spec)
        })
        .await;
        let started = |m: &GuestMessage| {
            matches!(m, GuestMessage::Started { process: p, .. }
                | GuestMessage::SpawnFailed { process: p, .. } if *p == process)
        };
        match self.expect("a started process", started).await {
            GuestMessage::Started { pid, .. } => Ok(pid),
            GuestMessage::SpawnFailed { reason, .. } => Err(reason),
            _ => unreachable!(),
        }
    }

    /// Wait for `process` to exit: its code and output.
    async fn exited(&mut self, process: u32) -> (i32, String) {
        let exited = |m: &GuestMessage| matches!(m, GuestMessage::Exited { process: p, .. } if *p == process);
        let GuestMessage::Exited { exit_code, .. } = self.expect("an exit", exited).await else {
            unreachable!()
        };
        let out = self.output.remove(&process).unwrap_or_default();
        (exit_code, String::from_utf8_lossy(&out).into_owned())
    }

    /// Run `script` in `container` to its end: its code and output.
    async fn sh(&mut self, process: u32, container: &str, script: &str) -> (i32, String) {
        let spec = sh(process, container, script);
        match self.spawn(spec, false).await {
            Ok(_) => self.exited(process).await,
            Err(reason) => panic!("exec in {container} failed: {reason}"),
        }
    }

    async fn container_answer(&mut self, id: &str) -> Result<(), String> {
        let about = |m: &GuestMessage| match m {
            GuestMessage::ContainerCreated { container }
            | GuestMessage::ContainerRemoved { container }
            | GuestMessage::ContainerFailed { container, .. } => container == id,
            _ => false,
        };
        match self.expect("a container answer", about).await {
            GuestMessage::ContainerFailed { reason, .. } => Err(reason),
            _ => Ok(()),
        }
    }
}

fn sh(process: u32, container: &str, script: &str) -> ProcessSpec {
    ProcessSpec {
        process,
        container: Some(container.into()),
        executable: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Vec::new(),
        workdir: "/".into(),
        user: None,
        stdin: false,
        terminal: None,
        builtin: false,
    }
}

fn container(id: &str, image: RootImage, writable_dir: Option<&str>) -> ContainerSpec {
    ContainerSpec {
        id: id.into(),
        hostname: id.into(),
        root: RootSpec {
            image,
            fstype: "erofs".into(),
        },
        storage: Some(Box::new(StorageSpec {
            writable: Some(DiskSpec {
                serial: WRITABLE_SERIAL.into(),
                fstype: "ext4".into(),
            }),
            writable_dir: writable_dir.map(String::from),
            ..StorageSpec::default()
        })),
        limits: None,
        workdir: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_containers_share_a_vm_and_its_loopback_but_nothing_else() {
    let images = tempfile::tempdir().unwrap();
    build_image(
        &share().join("rootfs-busybox"),
        &images.path().join("busybox.erofs"),
        RootfsFormat::Erofs,
    )
    .unwrap();
    let mut vm = Vm::boot(images.path()).await;

    // The one-container fast path: Boot carries the first container and its
    // main process, a web server on loopback.
    let network = NetworkConfig {
        extra_hosts: vec![HostEntry {
            name: "db.test".into(),
            address: "10.9.8.7".parse().unwrap(),
        }],
        dns: Some(DnsConfig {
            nameservers: vec!["10.0.2.3".parse().unwrap()],
            search: vec!["test".into()],
            options: Vec::new(),
        }),
        ..NetworkConfig::default()
    };
    let mut web = sh(
        1,
        "web",
        "echo hello from web > /index.html && exec httpd -f -p 127.0.0.1:8080 -h /",
    );
    web.container = None;
    vm.send(HostMessage::Boot(BootSpec {
        sandbox: "sandbox-test".into(),
        clock: Some(seed::wall_clock()),
        entropy: seed::fresh_entropy().unwrap(),
        network: Some(Box::new(network)),
        container: Some(Box::new(container(
            "web",
            RootImage::Device {
                path: "/dev/vda".into(),
            },
            None,
        ))),
        main: Some(Box::new(web)),
    }))
    .await;
    let hello = vm
        .expect("hello", |m| matches!(m, GuestMessage::Hello { .. }))
        .await;
    assert!(matches!(
        hello,
        GuestMessage::Hello {
            version: PROTOCOL_VERSION,
            ..
        }
    ));
    vm.container_answer("web").await.unwrap();
    vm.expect("web started", |m| {
        matches!(m, GuestMessage::Started { process: 1, .. })
    })
    .await;

    // A second container joins: image from the share, layer on the disk,
    // at most 12 processes.
    let mut api = container(
        "api",
        RootImage::SharedFile {
            tag: IMAGE_TAG.into(),
            path: "busybox.erofs".into(),
        },
        Some("containers/api"),
    );
    api.limits = Some(Box::new(ResourceLimits {
        pids_limit: Some(12),
        ulimits: vec!["nofile=100:200".into()],
        ..ResourceLimits::default()
    }));
    vm.send(HostMessage::CreateContainer(api.clone())).await;
    vm.container_answer("api").await.unwrap();
    vm.send(HostMessage::CreateContainer(api)).await;
    let again = vm.container_answer("api").await.unwrap_err();
    assert_eq!(again, "container api already exists");
    let refused = vm.spawn(sh(2, "api", "true"), false).await.unwrap_err();
    assert_eq!(
        refused,
        "container api is not running: it has not been started"
    );
    vm.spawn(sh(3, "api", "echo api > /mine; exec sleep 600"), true)
        .await
        .unwrap();

    // Loopback is shared: api reaches web's server.
    let (code, out) = vm
        .sh(4, "api", "wget -qO- http://127.0.0.1:8080/index.html")
        .await;
    assert_eq!((code, out.as_str()), (0, "hello from web\n"));

    // Everything else is each container's own.
    let (code, out) = vm
        .sh(
            5,
            "web",
            "hostname; cat /etc/hostname; tail -2 /etc/hosts; tr '\\0' ' ' < /proc/1/cmdline; echo; ls /mine 2>&1",
        )
        .await;
    assert_eq!(code, 1, "{out}");
    let out = out.replace('\t', " ");
    assert!(
        out.starts_with(
            "web\nweb\n10.9.8.7 db.test\n127.0.0.1 web\nhttpd -f -p 127.0.0.1:8080 -h / \n"
        ),
        "{out}"
    );
    assert!(out.contains("/mine: No such file or directory"), "{out}");
    let (code, out) = vm
        .sh(
            6,
            "api",
            "hostname; tr '\\0' ' ' < /proc/1/cmdline; echo; cat /mine; ls /index.html 2>&1; ulimit -n",
        )
        .await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("api\nsleep 600 \napi\n") && out.contains("/index.html: No such file"),
        "{out}"
    );
    assert!(out.ends_with("100\n"), "ulimit: {out}");
    // The sandbox's DNS settings, in a file that is not the image's.
    let (code, out) = vm
        .sh(
            13,
            "api",
            "cat /etc/resolv.conf; grep -c resolv.conf /proc/mounts",
        )
        .await;
    assert_eq!(
        (code, out.as_str()),
        (0, "nameserver 10.0.2.3\nsearch test\n1\n")
    );

    // The pids limit of api holds; web has none.
    // The sleeps' output is not the exec's: its Exited does not wait for them.
    let forks = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15; do sleep 20 </dev/null >/dev/null 2>&1 & done 2>&1; kill $(jobs -p) 2>/dev/null; true";
    let (_, out) = vm.sh(7, "api", forks).await;
    assert!(out.contains("can't fork"), "{out}");
    let (_, out) = vm.sh(8, "web", forks).await;
    assert!(!out.contains("can't fork"), "{out}");

    // Removing api kills its processes and leaves web running.
    vm.send(HostMessage::RemoveContainer {
        container: "api".into(),
        discard: false,
    })
    .await;
    assert_eq!(vm.exited(3).await.0, 137);
    vm.container_answer("api").await.unwrap();
    let gone = vm.spawn(sh(9, "api", "true"), false).await.unwrap_err();
    assert_eq!(gone, "no such container: api");

    // Its layer stays on the disk: created again, it finds /mine.
    vm.send(HostMessage::CreateContainer(container(
        "api",
        RootImage::SharedFile {
            tag: IMAGE_TAG.into(),
            path: "busybox.erofs".into(),
        },
        Some("containers/api"),
    )))
    .await;
    vm.container_answer("api").await.unwrap();
    vm.spawn(sh(10, "api", "cat /mine"), true).await.unwrap();
    assert_eq!(vm.exited(10).await, (0, "api\n".into()));

    // web's main process ends: exec is refused, the sandbox stays, and a
    // new Start restarts web.
    vm.send(HostMessage::Signal {
        process: 1,
        signal: libc::SIGKILL,
    })
    .await;
    assert_eq!(vm.exited(1).await.0, 137);
    let refused = vm.spawn(sh(11, "web", "true"), false).await.unwrap_err();
    assert_eq!(
        refused,
        "container web is not running: its main process has exited"
    );
    vm.spawn(sh(12, "web", "cat /index.html"), true)
        .await
        .unwrap();
    assert_eq!(vm.exited(12).await, (0, "hello from web\n".into()));

    vm.send(HostMessage::Shutdown).await;
    let code = tokio::task::spawn_blocking(move || {
        let code = vm.qemu.wait_timeout(Duration::from_secs(60));
        if code.is_none() {
            let _ = vm.qemu.stop(libc::SIGKILL, 0);
        }
        code
    })
    .await
    .unwrap();
    assert!(code.is_some(), "the VM powers off on Shutdown");
}
