//! Booting one VM for a box and driving the guest protocol until the
//! workload ends. Used by foreground runs (output to our stdout/stderr) and
//! by the per-box shim (output to the box log).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{
    BootSpec, ContainerSpec, DiskSpec, ProcessSpec, RootImage, RootSpec, StorageSpec, WindowSize,
};
use a3s_box_core::guest::{Frame, StdStream};
use a3s_box_core::{BoxError, Entrypoint, InstanceSpec, Result, VmHandler, VmmProvider};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

use super::drive::Session;
use super::log_tail;
use super::mux::{ClientTx, MAIN_PROCESS};
use crate::config::EngineConfig;
use crate::guest;
use crate::rootfs;
use crate::storage::layer::LAYER_FSTYPE;
use crate::storage::plan::{plan as plan_storage, WRITABLE_SERIAL};
use crate::storage::{virtiofs, StorageOptions};
use crate::vmm::accel;
use crate::vmm::qemu::provider::fs_socket;
use crate::vmm::qemu::{QemuConfig, QemuProvider};

/// Time for QEMU to create its socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for the guest to power off after the host says so.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Console lines shown when the VM fails.
const CONSOLE_TAIL_LINES: usize = 25;
/// How long a broken guest channel waits for the VM process to be reaped
/// (see [`channel_lost`]).
const EXIT_SETTLE: Duration = Duration::from_millis(500);
/// Exit code recorded when the VM is killed (as for SIGKILL in Docker).
pub const EXIT_KILLED: i32 = 128 + 9;

/// What to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOptions {
    /// Root filesystem directory on the host (never modified).
    pub rootfs_dir: PathBuf,
    /// The image reference the root came from, when it came from one.
    #[serde(default)]
    pub image: Option<String>,
    /// Program and arguments.
    pub command: Vec<String>,
    /// Environment.
    pub env: Vec<(String, String)>,
    /// Working directory in the box.
    pub workdir: Option<String>,
    /// User spec.
    pub user: Option<String>,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Kernel given on the command line.
    pub kernel: Option<PathBuf>,
    /// Accelerator choice: auto, kvm or tcg.
    pub accel: String,
    /// Hostname (default: the short id).
    pub hostname: Option<String>,
    /// Print guest-init's progress on the console log.
    pub debug: bool,
    /// Keep the main process's stdin open for attached clients (`-i`).
    #[serde(default)]
    pub stdin: bool,
    /// Give the main process a pseudo-terminal (`-t`).
    #[serde(default)]
    pub tty: bool,
    /// Writable layer, read-only root and mounts.
    #[serde(default)]
    pub storage: StorageOptions,
    /// Run guest-init's built-in helper named by the command instead of a
    /// program of the box (the storage helpers of a stopped box); never stored.
    #[serde(skip)]
    pub builtin: bool,
    /// The box's name and networks (`None`: loopback only).
    #[serde(default)]
    pub network: Option<(Option<String>, a3s_box_core::spec::NetworkSpec)>,
}

/// Where the workload's output goes.
pub trait OutputSink {
    /// Bytes the workload wrote on `stream`.
    fn write(&mut self, stream: StdStream, bytes: &[u8]);
}

/// What the supervisor and the box's clients may ask of a running box.
#[derive(Debug)]
pub enum Control {
    /// Deliver a signal to the workload.
    Signal(i32),
    /// Kill the VM now.
    Kill,
    /// Start `spec` in the box as `process`; its frames go to `tx`.
    Exec {
        /// Host-chosen process id (unique per box, never [`MAIN_PROCESS`]).
        process: u32,
        /// What to run.
        spec: ProcessSpec,
        /// The client's frames.
        tx: ClientTx,
        /// Keep the process when the client goes.
        detach: bool,
    },
    /// Attach client `client` to the main process.
    Attach {
        /// Client id (from the same counter as exec process ids).
        client: u32,
        /// The client's frames.
        tx: ClientTx,
        /// Whether it writes the main process's stdin.
        stdin: bool,
        /// Send the recent output of the main process first.
        replay: bool,
    },
    /// A frame from client `id`.
    Input {
        /// The exec process or attached client id.
        id: u32,
        /// The frame.
        frame: Frame,
    },
    /// Client `id` went away.
    Gone(u32),
}

/// The supervisor's side of one VM run.
pub struct RunIo<'a> {
    /// Receives output.
    pub sink: &'a mut dyn OutputSink,
    /// Requests from the supervisor.
    pub controls: UnboundedReceiver<Control>,
    /// Called once with (guest pid, QEMU pid) when the workload runs.
    pub on_started: &'a mut dyn FnMut(u32, u32),
}

impl std::fmt::Debug for RunIo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RunIo")
    }
}

pub(super) fn vm_error(message: impl Into<String>, console: &Path) -> BoxError {
    let tail = log_tail(console, CONSOLE_TAIL_LINES);
    BoxError::Vmm {
        message: message.into(),
        console_tail: (!tail.trim().is_empty()).then_some(tail),
    }
}

/// The error for a VM process that is gone: the hypervisor's own reason
/// when it failed, else the guest ended (powered off or panicked: the
/// console tail says which).
fn vm_gone(vm: &dyn VmHandler, console: &Path) -> BoxError {
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
pub(super) async fn channel_lost(vm: &dyn VmHandler, what: String, console: &Path) -> BoxError {
    let deadline = Instant::now() + EXIT_SETTLE;
    while vm.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    match vm.is_running() {
        true => vm_error(what, console),
        false => vm_gone(vm, console),
    }
}

/// Boot a VM for box `id` (files in `dir`), run `opts`' command, and return
/// its exit code (126/127 when it could not start, [`EXIT_KILLED`] when the
/// VM was killed). Errors of a3s-box itself come back as `Err`.
pub async fn run_vm(
    engine: &EngineConfig,
    id: &str,
    dir: &Path,
    opts: &RunOptions,
    io: RunIo<'_>,
) -> Result<i32> {
    let (executable, args) = opts
        .command
        .split_first()
        .ok_or_else(|| BoxError::Invalid("no command given: add -- CMD [ARGS...]".into()))?;
    let home = &engine.home_dir();
    let launcher = engine.launcher();
    let (kernel, _) = engine.kernel_for(opts.kernel.as_deref());
    let decision = accel::decide(opts.accel.parse()?, &accel::HostKvm::probe())?;
    tracing::debug!(accel = %decision.accel, reason = %decision.reason, "accelerator");
    let mut config = QemuConfig::new(
        engine.qemu.clone(),
        kernel,
        engine.initramfs_path(),
        decision.accel,
    );
    if opts.debug {
        config.extra_kernel_args.push("a3s.debug".into());
    }
    // What would make QEMU fail at once is said before any work is done.
    QemuProvider::new(config.clone(), launcher.clone()).preflight(opts.vcpus, opts.memory_mib)?;

    let format = engine.rootfs_format;
    let image = rootfs::cached_image(&home.rootfs_cache_dir(), &opts.rootfs_dir, format)?;
    let socket = dir.join("agent.sock");
    if socket.as_os_str().len() > 100 {
        return Err(BoxError::Invalid(format!(
            "state path {} is too long for a unix socket: set A3S_HOME to a shorter directory",
            socket.display()
        )));
    }
    let console = dir.join("console.log");
    let storage = plan_storage(home, dir, &opts.storage)?;
    // Networks (and published ports) before anything is started.
    let who = crate::network::dataplane::BoxIdentity {
        id,
        name: opts.network.as_ref().and_then(|(n, _)| n.as_deref()),
        dir,
    };
    let mut network = crate::network::dataplane::PreparedNetwork::prepare(
        engine,
        who,
        opts.network
            .as_ref()
            .filter(|_| !opts.builtin)
            .map(|(_, s)| s),
    )
    .await?;
    let spec = InstanceSpec {
        box_id: id.to_string(),
        vcpus: opts.vcpus,
        memory_mib: opts.memory_mib,
        rootfs_path: image,
        exec_socket_path: socket.clone(),
        console_output: Some(console.clone()),
        entrypoint: Entrypoint {
            executable: executable.clone(),
            args: args.to_vec(),
            env: opts.env.clone(),
        },
        workdir: opts.workdir.clone().unwrap_or_else(|| "/".into()),
        user: opts.user.clone(),
        fs_mounts: storage.fs_mounts.clone(),
        network: network.instance(),
        port_map: network.port_map(),
        ..InstanceSpec::default()
    };
    config.extra_devices = storage.devices.clone();
    let (nics, tap_fds) = network.qemu();
    config.extra_devices.extend(nics);
    config.pass_fds.extend(tap_fds);
    let provider: Box<dyn VmmProvider> = Box::new(QemuProvider::new(config, launcher.clone()));
    tracing::debug!("rootfs image ready");
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
        &dir.join("virtiofsd.log"),
    )?;
    let mut vm = provider.start(&spec).await?;
    daemons.watch(vm.pid());
    network.start(vm.pid())?;
    tracing::debug!(pid = vm.pid(), "QEMU started");
    let connected = guest::connect(&socket, CONNECT_TIMEOUT, || vm.is_running()).await;
    let (reader, mut writer) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            // The connection is retried while QEMU runs: a QEMU that died
            // is the reason, not the missing socket.
            let err = match vm.is_running() {
                true => e,
                false => vm_gone(&*vm, &console),
            };
            let _ = vm.stop(libc::SIGKILL, 0);
            return Err(err);
        }
    };

    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let boot = BootSpec {
        sandbox: id.to_string(),
        clock: Some(guest::seed::wall_clock()),
        entropy: guest::seed::fresh_entropy()?,
        network: network.guest().map(Box::new),
        container: Some(Box::new(ContainerSpec {
            id: id.to_string(),
            hostname,
            root: RootSpec {
                image: RootImage::Device {
                    path: "/dev/vda".into(),
                },
                fstype: format.fstype().into(),
            },
            storage: Some(Box::new(StorageSpec {
                writable: storage.has_writable_disk().then(|| DiskSpec {
                    serial: WRITABLE_SERIAL.into(),
                    fstype: LAYER_FSTYPE.into(),
                }),
                writable_dir: None,
                tmpfs_upper_bytes: storage.tmpfs_upper_bytes,
                read_only: storage.read_only,
                mounts: storage.mounts.clone(),
            })),
            limits: None,
            workdir: None,
        })),
        main: Some(Box::new(ProcessSpec {
            process: MAIN_PROCESS,
            container: None,
            executable: spec.entrypoint.executable.clone(),
            args: spec.entrypoint.args.clone(),
            env: spec.entrypoint.env.clone(),
            workdir: spec.workdir.clone(),
            user: spec.user.clone(),
            stdin: opts.stdin,
            terminal: opts.tty.then(WindowSize::default),
            builtin: opts.builtin,
        })),
    };
    let boot_timeout = engine.boot_timeout;
    let session = Session {
        frames: super::drive::read_frames(reader),
        writer: &mut writer,
        console: &console,
        vm: &mut *vm,
        main_credit: Default::default(),
    };
    let outcome = network.outcome(session.drive(boot, boot_timeout, io).await);
    // Whatever happened, the VM must go. Once the workload has exited and its
    // output has arrived, a VM whose only writable storage is its own RAM
    // (read-only root, tmpfs upper) holds nothing worth flushing: it is
    // stopped at once. With a writable disk or host shares, guest-init is
    // given time to sync and power off cleanly first.
    let grace = match outcome {
        Ok(_) if storage.needs_clean_shutdown() => SHUTDOWN_TIMEOUT,
        _ => Duration::ZERO,
    };
    let deadline = Instant::now() + grace;
    while vm.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if vm.is_running() {
        vm.stop(libc::SIGKILL, 0)?;
    }
    drop(daemons);
    drop(network);
    tracing::debug!("VM gone");
    if opts.debug {
        eprintln!("--- VM console ---\n{}", log_tail(&console, usize::MAX));
    }
    outcome
}
