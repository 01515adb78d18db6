//! Running a box in the foreground: boot, stream its output, return its code.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use a3s_box_core::guest::message::{
    BootSpec, GuestMessage, HostMessage, Message, ProcessSpec, RootSpec,
};
use a3s_box_core::guest::{Frame, StdStream, PROTOCOL_VERSION};
use a3s_box_core::{BoxError, Entrypoint, InstanceSpec, Result, VmHandler};
use nix::fcntl::{Flock, FlockArg};
use tokio::signal::unix::{signal, SignalKind};

use super::{log_tail, new_box_id};
use crate::guest::{self, FrameReader, FrameWriter};
use crate::home::{Assets, Home};
use crate::rootfs;
use crate::vmm::qemu::{QemuConfig, QemuProvider};
use crate::vmm::{accel, AccelChoice};

/// The main process always has this id on the wire.
const MAIN_PROCESS: u32 = 1;
/// Time for QEMU to create its socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time from QEMU start to the guest's hello. Generous: software emulation
/// on a loaded host can be many times slower than KVM.
const DEFAULT_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Time for the guest to power off after the host says so.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// Console lines shown when the VM fails.
const CONSOLE_TAIL_LINES: usize = 25;

/// What to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Root filesystem directory on the host (never modified).
    pub rootfs_dir: PathBuf,
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
    /// Accelerator choice.
    pub accel: AccelChoice,
    /// Hostname (default: the short id).
    pub hostname: Option<String>,
    /// Print guest-init's progress on the console log.
    pub debug: bool,
}

fn vm_error(message: impl Into<String>, console: &Path) -> BoxError {
    let tail = log_tail(console, CONSOLE_TAIL_LINES);
    BoxError::Vmm {
        message: message.into(),
        console_tail: (!tail.trim().is_empty()).then_some(tail),
    }
}

/// A box directory owned by this process: locked while the run lasts and
/// removed when it ends, however it ends. If this process is killed, the
/// lock dies with it and the next run removes the directory.
struct BoxDir {
    path: PathBuf,
    _lock: Flock<File>,
}

const LOCK_FILE: &str = "lock";
/// A directory without a lock file younger than this may be one another run
/// is creating right now.
const UNLOCKED_GRACE: Duration = Duration::from_secs(30);

impl BoxDir {
    fn create(path: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&path)
            .map_err(|e| BoxError::io(format!("create {}", path.display()), e))?;
        let file = File::create(path.join(LOCK_FILE))
            .map_err(|e| BoxError::io(format!("create lock in {}", path.display()), e))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock)
            .map_err(|(_, e)| BoxError::io(format!("lock {}", path.display()), e.into()))?;
        Ok(BoxDir { path, _lock: lock })
    }
}

impl Drop for BoxDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Remove box directories left by runs that were killed (their lock is free).
fn remove_abandoned_boxes(boxes: &Path) {
    let Ok(entries) = std::fs::read_dir(boxes) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let abandoned = match File::open(dir.join(LOCK_FILE)) {
            Ok(file) => Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok(),
            Err(_) => entry
                .metadata()
                .and_then(|m| m.modified())
                .map(|t| t.elapsed().unwrap_or_default() > UNLOCKED_GRACE)
                .unwrap_or(false),
        };
        if abandoned {
            tracing::debug!(dir = %dir.display(), "removing abandoned box");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// Boot a VM for `opts`, stream the workload's stdout/stderr to ours, and
/// return its exit code (126/127 when it could not be started). Errors of
/// a3s-box itself come back as `Err`. The box leaves nothing behind.
pub async fn run_foreground(home: &Home, opts: RunOptions) -> Result<i32> {
    let (executable, args) = opts
        .command
        .split_first()
        .ok_or_else(|| BoxError::Config("no command given: add -- CMD [ARGS...]".into()))?;
    let assets = Assets::locate(opts.kernel.as_deref());
    let decision = accel::decide(opts.accel, &accel::HostKvm::probe())?;
    tracing::debug!(accel = %decision.accel, reason = %decision.reason, "accelerator");

    let id = new_box_id().map_err(|e| BoxError::io("generate box id", e))?;
    remove_abandoned_boxes(&home.boxes_dir());
    let dir = home.boxes_dir().join(&id[..12]);
    let _box_dir = BoxDir::create(dir.clone())?;

    let format: rootfs::RootfsFormat = match std::env::var("A3S_BOX_ROOTFS_FORMAT") {
        Ok(v) if !v.is_empty() => v.parse()?,
        _ => rootfs::RootfsFormat::default(),
    };
    let image = rootfs::cached_image(&home.rootfs_cache_dir(), &opts.rootfs_dir, format)?;
    let socket = dir.join("agent.sock");
    if socket.as_os_str().len() > 100 {
        return Err(BoxError::Config(format!(
            "state path {} is too long for a unix socket: set A3S_HOME to a shorter directory",
            socket.display()
        )));
    }
    let console = dir.join("console.log");
    let spec = InstanceSpec {
        box_id: id.clone(),
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
        ..InstanceSpec::default()
    };
    let provider = QemuProvider::new(
        QemuConfig {
            binary: assets.qemu,
            kernel: assets.kernel,
            initramfs: assets.initramfs,
            accel: decision.accel,
            extra_kernel_args: if opts.debug {
                vec!["a3s.debug".into()]
            } else {
                vec![]
            },
        },
        true,
    );
    tracing::debug!("rootfs image ready");
    let mut vm = provider.launch(&spec)?;
    tracing::debug!(pid = vm.pid(), "QEMU started");
    let qemu_log = dir.join("qemu.log");
    let connected = guest::connect(&socket, CONNECT_TIMEOUT, || vm.is_running()).await;
    let (mut reader, mut writer) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            let _ = vm.stop(libc::SIGKILL, 0);
            let qemu_says = log_tail(&qemu_log, 5);
            return Err(if qemu_says.is_empty() {
                e
            } else {
                BoxError::Vmm {
                    message: format!("QEMU failed to start: {qemu_says}"),
                    console_tail: None,
                }
            });
        }
    };

    let hostname = opts
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let boot = BootSpec {
        hostname,
        root: RootSpec {
            device: "/dev/vda".into(),
            fstype: format.fstype().into(),
        },
        main: ProcessSpec {
            process: MAIN_PROCESS,
            executable: spec.entrypoint.executable.clone(),
            args: spec.entrypoint.args.clone(),
            env: spec.entrypoint.env.clone(),
            workdir: spec.workdir.clone(),
            user: spec.user.clone(),
            stdin: false,
        },
    };
    let boot_timeout = std::env::var("A3S_BOX_BOOT_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BOOT_TIMEOUT);
    let session = Session {
        reader: &mut reader,
        writer: &mut writer,
        console: &console,
    };
    let outcome = session.drive(boot, boot_timeout).await;
    // Whatever happened, the VM must go: politely first, then by force.
    let grace = if outcome.is_ok() {
        SHUTDOWN_TIMEOUT
    } else {
        Duration::ZERO
    };
    let deadline = Instant::now() + grace;
    while vm.is_running() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    if vm.is_running() {
        vm.stop(libc::SIGKILL, 0)?;
    }
    tracing::debug!("VM gone");
    if opts.debug {
        eprintln!("--- VM console ---\n{}", log_tail(&console, usize::MAX));
    }
    outcome
}

struct Session<'a> {
    reader: &'a mut FrameReader,
    writer: &'a mut FrameWriter,
    console: &'a Path,
}

impl Session<'_> {
    async fn send(&mut self, msg: HostMessage) -> Result<()> {
        self.writer
            .send(&Frame::Control(Message::Host(msg)))
            .await
            .map_err(|e| vm_error(format!("lost the guest channel: {e}"), self.console))
    }

    async fn next(&mut self) -> Result<Frame> {
        match self.reader.next().await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(vm_error(
                "the VM stopped before the workload finished",
                self.console,
            )),
            Err(e) => Err(vm_error(
                format!("bad frame from the guest: {e}"),
                self.console,
            )),
        }
    }

    async fn drive(mut self, boot: BootSpec, boot_timeout: Duration) -> Result<i32> {
        // The boot spec goes out at once, before the guest's hello: it waits
        // in the channel and guest-init reads it right after saying hello,
        // which saves a round trip. The hello is still checked before any
        // output is trusted.
        self.send(HostMessage::Boot(boot)).await?;
        let hello = tokio::time::timeout(boot_timeout, self.next())
            .await
            .map_err(|_| {
                vm_error(
                    format!(
                        "the VM did not become ready within {}s",
                        boot_timeout.as_secs()
                    ),
                    self.console,
                )
            })??;
        match hello {
            Frame::Control(Message::Guest(GuestMessage::Hello { version, kernel })) => {
                if version != PROTOCOL_VERSION {
                    return Err(BoxError::Guest(format!(
                        "guest-init speaks protocol {version}, this a3s-box speaks {PROTOCOL_VERSION}: rebuild the initramfs (make setup)"
                    )));
                }
                tracing::debug!(%kernel, "guest ready");
            }
            other => return Err(BoxError::Guest(format!("expected hello, got {other:?}"))),
        }

        let mut signals = forward_signals()?;
        let mut stdout = std::io::stdout();
        let mut stderr = std::io::stderr();
        loop {
            let frame = tokio::select! {
                frame = self.next() => frame?,
                Some(sig) = signals.recv() => {
                    self.send(HostMessage::Signal { process: MAIN_PROCESS, signal: sig }).await?;
                    continue;
                }
            };
            match frame {
                Frame::Data {
                    process: MAIN_PROCESS,
                    stream,
                    bytes,
                } => {
                    let out: &mut dyn Write = match stream {
                        StdStream::Stderr => &mut stderr,
                        _ => &mut stdout,
                    };
                    // A closed stdout (e.g. `| head`) must not stop the box
                    // from finishing; drop the bytes as Docker does.
                    let _ = out.write_all(&bytes).and_then(|_| out.flush());
                    let len = bytes.len() as u32;
                    self.writer
                        .send(&Frame::Credit {
                            process: MAIN_PROCESS,
                            stream,
                            bytes: len,
                        })
                        .await
                        .map_err(|e| {
                            vm_error(format!("lost the guest channel: {e}"), self.console)
                        })?;
                }
                Frame::Eof { .. } | Frame::Credit { .. } | Frame::Data { .. } => {}
                Frame::Control(Message::Guest(msg)) => match msg {
                    GuestMessage::Started { pid, .. } => tracing::debug!(pid, "workload started"),
                    GuestMessage::SpawnFailed {
                        exit_code, reason, ..
                    } => {
                        let _ = writeln!(stderr, "a3s-box: {reason}");
                        self.send(HostMessage::Shutdown).await?;
                        return Ok(exit_code);
                    }
                    GuestMessage::Exited { exit_code, .. } => {
                        tracing::debug!(exit_code, "workload exited");
                        self.send(HostMessage::Shutdown).await?;
                        return Ok(exit_code);
                    }
                    GuestMessage::Fatal { reason } => {
                        return Err(vm_error(
                            format!("guest-init failed: {reason}"),
                            self.console,
                        ));
                    }
                    GuestMessage::Hello { .. } => {
                        return Err(BoxError::Guest("unexpected second hello".into()));
                    }
                },
                Frame::Control(Message::Host(_)) => {
                    return Err(BoxError::Guest("guest sent a host message".into()));
                }
            }
        }
    }
}

/// Forward the signals `docker run` forwards (INT, TERM, HUP, QUIT) to the
/// workload: each arrives on the returned channel as its number.
fn forward_signals() -> Result<tokio::sync::mpsc::UnboundedReceiver<i32>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    for (num, kind) in [
        (libc::SIGINT, SignalKind::interrupt()),
        (libc::SIGTERM, SignalKind::terminate()),
        (libc::SIGHUP, SignalKind::hangup()),
        (libc::SIGQUIT, SignalKind::quit()),
    ] {
        let mut stream = signal(kind).map_err(|e| BoxError::io("install signal handler", e))?;
        let tx = tx.clone();
        tokio::spawn(async move { while stream.recv().await.is_some() && tx.send(num).is_ok() {} });
    }
    Ok(rx)
}
