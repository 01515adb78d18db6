//! A fake hypervisor and a scripted guest, for testing the sandbox actor
//! (and the engine over it) in-process in milliseconds.
//!
//! [`FakeVmm::boot`] listens on the agent socket, as QEMU does, and a task
//! plays guest-init on it with the real protocol: `Hello`, containers
//! (`Boot.container`, `CreateContainer`, `RemoveContainer`), processes
//! (`Start`, `Exec`), signals, stdin, `Shutdown`. A process's program is
//! its command, read as steps:
//!
//! | step | does |
//! |---|---|
//! | `echo:TEXT` / `err:TEXT` | writes `TEXT\n` to stdout / stderr |
//! | `sleep:MS` | waits (signals still arrive) |
//! | `exit:N` | exits with N |
//! | `hang` | waits for a signal |
//! | `ignore-term` | SIGTERM does nothing from now on |
//! | `cat` | copies stdin to stdout until it ends |
//! | `crash` | the VM dies (its process exits with an error) |
//! | `missing` | (first step) cannot start: `SpawnFailed` 127 |
//!
//! Running out of steps exits 0. A signal ends a process with 128+N
//! (SIGKILL always). Pausing the VM freezes every process between steps.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use a3s_box_core::guest::message::{BootSpec, GuestMessage, HostMessage, Message, ProcessSpec};
use a3s_box_core::guest::{Frame, StdStream, PROTOCOL_VERSION};
use a3s_box_core::{BoxError, Result, VmHandler, VmMetrics};
use async_trait::async_trait;
use tokio::net::UnixListener;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Notify};

use super::vmm::{BootedVm, SandboxVmm, VmControl, VmEvent, VmRequest};
use crate::guest::{split, FrameReader};
use crate::storage::plan::VmStorage;

/// How a fake VM behaves beyond its processes' scripts.
#[derive(Debug, Clone, Default)]
pub struct FakeBehaviour {
    /// Time before the guest says hello.
    pub boot_delay: Duration,
    /// The VM fails to start.
    pub fail_boot: bool,
    /// The VM has a writable layer disk (so the host asks for a clean
    /// shutdown), and its guest takes this long to sync and power off after
    /// `Shutdown`.
    pub disk_power_off: Option<Duration>,
}

/// The fake hypervisor.
#[derive(Debug, Default)]
pub struct FakeVmm {
    behaviour: Mutex<FakeBehaviour>,
    boots: AtomicU32,
    /// The last VM booted.
    last: Mutex<Option<Arc<FakeVm>>>,
}

/// One fake VM, as tests see it.
#[derive(Debug)]
pub struct FakeVm {
    pid: u32,
    running: AtomicBool,
    killed: Notify,
    paused: watch::Sender<bool>,
    crashed: AtomicBool,
}

impl FakeVm {
    /// Kill it (as SIGKILL to QEMU would).
    pub fn kill(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        self.killed.notify_waiters();
        self.killed.notify_one();
    }

    /// Whether it runs.
    pub fn running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Whether its vCPUs are stopped.
    pub fn is_paused(&self) -> bool {
        *self.paused.borrow()
    }
}

impl FakeVmm {
    /// A fake hypervisor behaving as `behaviour` says.
    pub fn new(behaviour: FakeBehaviour) -> Arc<Self> {
        Arc::new(FakeVmm {
            behaviour: Mutex::new(behaviour),
            ..FakeVmm::default()
        })
    }

    /// Change how the next VMs behave.
    pub fn set(&self, behaviour: FakeBehaviour) {
        *self.behaviour.lock().unwrap_or_else(|p| p.into_inner()) = behaviour;
    }

    /// VMs booted so far.
    pub fn boots(&self) -> u32 {
        self.boots.load(Ordering::SeqCst)
    }

    /// The last VM booted.
    pub fn last(&self) -> Option<Arc<FakeVm>> {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl SandboxVmm for FakeVmm {
    async fn boot(&self, req: &VmRequest) -> Result<BootedVm> {
        let behaviour = self
            .behaviour
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let n = self.boots.fetch_add(1, Ordering::SeqCst);
        if behaviour.fail_boot {
            return Err(BoxError::Vmm {
                message: "the fake VM does not start".into(),
                console_tail: None,
            });
        }
        std::fs::create_dir_all(&req.dir).map_err(|e| BoxError::io("create sandbox dir", e))?;
        let socket = req.dir.join("agent.sock");
        let _ = std::fs::remove_file(&socket);
        let listener =
            UnixListener::bind(&socket).map_err(|e| BoxError::io("bind fake agent socket", e))?;
        let (paused, _) = watch::channel(false);
        let vm = Arc::new(FakeVm {
            pid: 4_000_000 + n,
            running: AtomicBool::new(true),
            killed: Notify::new(),
            paused,
            crashed: AtomicBool::new(false),
        });
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(vm.clone());
        let guest_vm = vm.clone();
        let disk = behaviour.disk_power_off.is_some();
        tokio::spawn(async move {
            if let Ok((stream, _)) = listener.accept().await {
                let (reader, writer) = split(stream);
                Guest::new(guest_vm.clone(), behaviour)
                    .run(reader, writer)
                    .await;
            }
            guest_vm.running.store(false, Ordering::SeqCst);
        });
        let (events_tx, events) = unbounded_channel();
        Ok(BootedVm {
            handler: Box::new(FakeHandler { vm: vm.clone() }),
            agent_socket: socket,
            console: req.dir.join("console.log"),
            root_fstype: "erofs".into(),
            storage: VmStorage {
                read_only: req.storage.read_only,
                devices: disk
                    .then(|| crate::storage::plan::writable_disk(req.dir.join("rw.img")))
                    .into_iter()
                    .collect(),
                ..VmStorage::default()
            },
            control: Some(Arc::new(FakeControl {
                vm,
                events: events_tx,
            })),
            events: Some(events),
            network: None,
            companions: Box::new(()),
            accelerator: Some("fake: testing".into()),
        })
    }

    fn shared_image(&self, root_dir: &Path) -> Result<(String, String)> {
        Ok((
            format!("{}.erofs", root_dir.display()).replace('/', "_"),
            "erofs".into(),
        ))
    }
}

struct FakeHandler {
    vm: Arc<FakeVm>,
}

impl VmHandler for FakeHandler {
    fn stop(&mut self, _signal: i32, _timeout_ms: u64) -> Result<()> {
        self.vm.killed.notify_waiters();
        self.vm.killed.notify_one();
        self.vm.running.store(false, Ordering::SeqCst);
        Ok(())
    }

    fn metrics(&self) -> VmMetrics {
        VmMetrics::default()
    }

    fn is_running(&self) -> bool {
        self.vm.running.load(Ordering::SeqCst)
    }

    fn pid(&self) -> u32 {
        self.vm.pid
    }

    fn exit_reason(&self) -> Option<String> {
        (!self.is_running() && self.vm.crashed.load(Ordering::SeqCst))
            .then(|| "the fake VM was killed".into())
    }
}

/// As QEMU's handler: a VM whose handler is dropped is killed.
impl Drop for FakeHandler {
    fn drop(&mut self) {
        let _ = VmHandler::stop(self, libc::SIGKILL, 0);
    }
}

struct FakeControl {
    vm: Arc<FakeVm>,
    events: UnboundedSender<VmEvent>,
}

#[async_trait]
impl VmControl for FakeControl {
    async fn pause(&self) -> Result<()> {
        self.vm.paused.send_replace(true);
        let _ = self.events.send(VmEvent {
            name: "STOP".into(),
            data: serde_json::Value::Null,
        });
        Ok(())
    }

    async fn resume(&self) -> Result<()> {
        self.vm.paused.send_replace(false);
        let _ = self.events.send(VmEvent {
            name: "RESUME".into(),
            data: serde_json::Value::Null,
        });
        Ok(())
    }
}

/// What a process task tells the guest.
enum ProcEvent {
    Exited { process: u32, code: i32 },
    Crash,
}

struct Proc {
    container: String,
    main: bool,
    signals: UnboundedSender<i32>,
    stdin: Option<UnboundedSender<Option<Vec<u8>>>>,
}

/// The scripted guest-init of one fake VM.
struct Guest {
    vm: Arc<FakeVm>,
    behaviour: FakeBehaviour,
    out: Option<UnboundedSender<Frame>>,
    procs: HashMap<u32, Proc>,
    /// Containers and whether their main process runs.
    containers: HashMap<String, bool>,
    first: Option<String>,
    events_tx: UnboundedSender<ProcEvent>,
    events: UnboundedReceiver<ProcEvent>,
}

fn guest(msg: GuestMessage) -> Frame {
    Frame::Control(Message::Guest(msg))
}

impl Guest {
    fn new(vm: Arc<FakeVm>, behaviour: FakeBehaviour) -> Self {
        let (events_tx, events) = unbounded_channel();
        Guest {
            vm,
            behaviour,
            out: None,
            procs: HashMap::new(),
            containers: HashMap::new(),
            first: None,
            events_tx,
            events,
        }
    }

    fn send(&self, frame: Frame) {
        if let Some(out) = &self.out {
            let _ = out.send(frame);
        }
    }

    async fn run(mut self, mut reader: FrameReader, mut writer: crate::guest::FrameWriter) {
        let (out, mut out_rx) = unbounded_channel::<Frame>();
        self.out = Some(out);
        let writing = tokio::spawn(async move {
            while let Some(frame) = out_rx.recv().await {
                if writer.send(&frame).await.is_err() {
                    break;
                }
            }
        });
        let boot = tokio::select! {
            frame = reader.next() => match frame {
                Ok(Some(Frame::Control(Message::Host(HostMessage::Boot(boot))))) => boot,
                _ => return,
            },
            _ = self.vm.killed.notified() => return,
        };
        tokio::time::sleep(self.behaviour.boot_delay).await;
        self.send(guest(GuestMessage::Hello {
            version: PROTOCOL_VERSION,
            kernel: "fake".into(),
        }));
        self.boot(boot);
        loop {
            tokio::select! {
                frame = reader.next() => match frame {
                    Ok(Some(frame)) => {
                        if !self.on_host(frame) {
                            // Sync and power off, unless killed meanwhile.
                            if let Some(delay) = self.behaviour.disk_power_off {
                                tokio::select! {
                                    _ = tokio::time::sleep(delay) => {}
                                    _ = self.vm.killed.notified() => {}
                                }
                            }
                            break;
                        }
                    }
                    _ => break,
                },
                Some(event) = self.events.recv() => match event {
                    ProcEvent::Exited { process, code } => self.exited(process, code),
                    ProcEvent::Crash => {
                        self.vm.crashed.store(true, Ordering::SeqCst);
                        break;
                    }
                },
                _ = self.vm.killed.notified() => break,
            }
        }
        // Power off: the channel closes with the VM.
        self.vm.running.store(false, Ordering::SeqCst);
        self.out = None;
        writing.abort();
    }

    fn boot(&mut self, boot: BootSpec) {
        if let Some(c) = boot.container {
            self.containers.insert(c.id.clone(), false);
            self.first = Some(c.id.clone());
            self.send(guest(GuestMessage::ContainerCreated { container: c.id }));
        }
        if let Some(main) = boot.main {
            self.spawn(*main, true);
        }
    }

    /// A frame from the host; false powers off.
    fn on_host(&mut self, frame: Frame) -> bool {
        match frame {
            Frame::Control(Message::Host(msg)) => match msg {
                HostMessage::Shutdown => return false,
                HostMessage::Start(spec) => self.spawn(spec, true),
                HostMessage::Exec(spec) => self.spawn(spec, false),
                HostMessage::Signal { process, signal } => {
                    if let Some(p) = self.procs.get(&process) {
                        let _ = p.signals.send(signal);
                    }
                }
                HostMessage::CreateContainer(spec) => {
                    if self.containers.contains_key(&spec.id) {
                        self.send(guest(GuestMessage::ContainerFailed {
                            container: spec.id.clone(),
                            op: a3s_box_core::guest::message::ContainerOp::Create,
                            reason: format!("container {} already exists", spec.id),
                        }));
                    } else {
                        self.containers.insert(spec.id.clone(), false);
                        self.send(guest(GuestMessage::ContainerCreated { container: spec.id }));
                    }
                }
                HostMessage::RemoveContainer { container, .. } => {
                    for p in self.procs.values().filter(|p| p.container == container) {
                        let _ = p.signals.send(libc::SIGKILL);
                    }
                    self.containers.remove(&container);
                    self.send(guest(GuestMessage::ContainerRemoved { container }));
                }
                _ => {}
            },
            Frame::Data {
                process,
                stream: StdStream::Stdin,
                bytes,
            } => {
                if let Some(stdin) = self.procs.get(&process).and_then(|p| p.stdin.as_ref()) {
                    let _ = stdin.send(Some(bytes));
                }
            }
            Frame::Eof {
                process,
                stream: StdStream::Stdin,
            } => {
                if let Some(stdin) = self.procs.get(&process).and_then(|p| p.stdin.as_ref()) {
                    let _ = stdin.send(None);
                }
            }
            _ => {}
        }
        true
    }

    fn exited(&mut self, process: u32, code: i32) {
        if let Some(p) = self.procs.remove(&process) {
            if p.main {
                self.containers.insert(p.container, false);
            }
            self.send(guest(GuestMessage::Exited {
                process,
                exit_code: code,
            }));
        }
    }

    fn spawn_failed(&self, process: u32, exit_code: i32, reason: String) {
        self.send(guest(GuestMessage::SpawnFailed {
            process,
            exit_code,
            reason,
        }));
    }

    fn spawn(&mut self, spec: ProcessSpec, main: bool) {
        let process = spec.process;
        let Some(container) = spec.container.clone().or_else(|| self.first.clone()) else {
            return self.spawn_failed(process, 125, "no container".into());
        };
        let Some(&running) = self.containers.get(&container) else {
            return self.spawn_failed(process, 125, format!("no such container: {container}"));
        };
        if main && running {
            return self.spawn_failed(
                process,
                125,
                format!("container {container} is already running"),
            );
        }
        if !main && !running {
            return self.spawn_failed(
                process,
                125,
                format!("container {container} is not running: its main process has exited"),
            );
        }
        let steps = program(&spec);
        if steps.first().map(String::as_str) == Some("missing") {
            return self.spawn_failed(
                process,
                127,
                format!("{}: executable file not found in $PATH", spec.executable),
            );
        }
        if main {
            self.containers.insert(container.clone(), true);
        }
        let (signals, signals_rx) = unbounded_channel();
        let (stdin, stdin_rx) = unbounded_channel();
        self.procs.insert(
            process,
            Proc {
                container,
                main,
                signals,
                stdin: spec.stdin.then_some(stdin),
            },
        );
        self.send(guest(GuestMessage::Started {
            process,
            pid: 100 + process,
        }));
        let Some(out) = self.out.clone() else {
            return;
        };
        let run = Run {
            process,
            out,
            events: self.events_tx.clone(),
            paused: self.vm.paused.subscribe(),
            signals: signals_rx,
            stdin: stdin_rx,
            ignore_term: false,
        };
        tokio::spawn(run.steps(steps));
    }
}

/// The steps of a process's program: its command's words.
fn program(spec: &ProcessSpec) -> Vec<String> {
    if spec.builtin && spec.executable == a3s_box_core::guest::builtin::STATS {
        return vec![r#"echo:{"mem_total_bytes":1000,"mem_available_bytes":400,"pids":3}"#.into()];
    }
    std::iter::once(spec.executable.clone())
        .chain(spec.args.iter().cloned())
        .collect()
}

/// One running process.
struct Run {
    process: u32,
    out: UnboundedSender<Frame>,
    events: UnboundedSender<ProcEvent>,
    paused: watch::Receiver<bool>,
    signals: UnboundedReceiver<i32>,
    stdin: UnboundedReceiver<Option<Vec<u8>>>,
    ignore_term: bool,
}

impl Run {
    fn write(&self, stream: StdStream, text: &str) {
        let _ = self.out.send(Frame::Data {
            process: self.process,
            stream,
            bytes: format!("{text}\n").into_bytes(),
        });
    }

    fn end(&self, code: i32) {
        for stream in [StdStream::Stdout, StdStream::Stderr] {
            let _ = self.out.send(Frame::Eof {
                process: self.process,
                stream,
            });
        }
        let _ = self.events.send(ProcEvent::Exited {
            process: self.process,
            code,
        });
    }

    /// What a signal does: `Some(code)` ends the process.
    fn on_signal(&self, signal: i32) -> Option<i32> {
        match signal {
            libc::SIGKILL => Some(128 + libc::SIGKILL),
            libc::SIGTERM if self.ignore_term => None,
            libc::SIGWINCH | libc::SIGCHLD | libc::SIGCONT => None,
            n => Some(128 + n),
        }
    }

    /// Wait while the VM is paused.
    async fn unpaused(&mut self) {
        while *self.paused.borrow() {
            if self.paused.changed().await.is_err() {
                return;
            }
        }
    }

    /// Wait `d` (or forever), ending early on a signal that ends us.
    async fn wait(&mut self, d: Option<Duration>) -> Option<i32> {
        let sleep = async {
            match d {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => return None,
                signal = self.signals.recv() => match signal {
                    Some(s) => {
                        if let Some(code) = self.on_signal(s) {
                            return Some(code);
                        }
                    }
                    None => return Some(128 + libc::SIGKILL),
                },
            }
        }
    }

    async fn steps(mut self, steps: Vec<String>) {
        for step in steps {
            self.unpaused().await;
            // Signals that arrived meanwhile.
            while let Ok(s) = self.signals.try_recv() {
                if let Some(code) = self.on_signal(s) {
                    return self.end(code);
                }
            }
            let (verb, arg) = step.split_once(':').unwrap_or((step.as_str(), ""));
            match verb {
                "echo" => self.write(StdStream::Stdout, arg),
                "err" => self.write(StdStream::Stderr, arg),
                "sleep" => {
                    let ms = arg.parse().unwrap_or(0);
                    if let Some(code) = self.wait(Some(Duration::from_millis(ms))).await {
                        return self.end(code);
                    }
                }
                "exit" => return self.end(arg.parse().unwrap_or(0)),
                "hang" => {
                    if let Some(code) = self.wait(None).await {
                        return self.end(code);
                    }
                }
                "ignore-term" => self.ignore_term = true,
                "cat" => loop {
                    tokio::select! {
                        chunk = self.stdin.recv() => match chunk {
                            Some(Some(bytes)) => {
                                let _ = self.out.send(Frame::Data {
                                    process: self.process,
                                    stream: StdStream::Stdout,
                                    bytes,
                                });
                            }
                            _ => break,
                        },
                        signal = self.signals.recv() => {
                            if let Some(code) = signal.and_then(|s| self.on_signal(s)) {
                                return self.end(code);
                            }
                        }
                    }
                },
                "crash" => {
                    let _ = self.events.send(ProcEvent::Crash);
                    return;
                }
                _ => {}
            }
        }
        self.end(0)
    }
}
