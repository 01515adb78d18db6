//! The sandbox actor: one task that alone owns a sandbox — its VM (the
//! [`VmHandler`] its [`SandboxVmm`] booted), the hypervisor's control and
//! events, the guest session, the container table and the client router —
//! and is the only writer of the state of the sandbox and its containers
//! (their `state.json`, the events log) while it runs.
//!
//! Everything reaches it as a message on one channel: requests of clients
//! (through [`Handle`]), frames from the guest (read by a task of their
//! own), the hypervisor's events, the end of a boot, timers. It handles
//! them one at a time, so there is no lock anywhere and every state change
//! is made in one place. A standalone box is a sandbox with one container
//! whose VM lives as long as that container's main process; a pod is a
//! sandbox whose VM lives until the pod stops, with containers joining and
//! leaving it.
//!
//! - `boot`: starting a VM and speaking to its guest until `Hello`;
//! - `guest`: frames from the guest;
//! - `requests`: what clients ask;
//! - `lifecycle`: starts, exits, restart policy, `--rm`, the end;
//! - `network`: `network connect`/`disconnect` of the box;
//! - `stop`: stop signal, SIGKILL, the VM.

mod boot;
mod guest;
mod lifecycle;
mod network;
mod requests;
mod stop;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::guest::Frame;
use a3s_box_core::spec::SandboxSpec;
use a3s_box_core::{BoxError, Result, VmHandler};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use super::container::{Container, ContainerSetup};
use super::router::{ClientTx, Router, MAIN_PROCESS};
use super::rpc::{Reply, Request, SandboxEvent};
use super::vmm::{SandboxVmm, VmControl, VmEvent};
use crate::config::EngineConfig;
use crate::guest::FrameWriter;
use crate::state::events::EventLog;
use crate::state::BoxStore;

/// Exit code recorded when the VM is killed (as for SIGKILL in Docker).
pub const EXIT_KILLED: i32 = 128 + 9;

/// A client connection, as the actor tells its holds apart.
pub(crate) type ConnId = u64;

/// What a request comes back with.
#[derive(Debug)]
pub enum Outcome {
    /// The reply line.
    Reply(Reply),
    /// `exec`/`attach` accepted: the client is numbered this on the
    /// channel; its frames flow on the sender it gave.
    Session(u32),
    /// `events` accepted: they follow on this receiver.
    Events(UnboundedReceiver<SandboxEvent>),
    /// Refused or failed.
    Error(BoxError),
}

/// Where a sandbox's state is written (none for a foreground run, which
/// stores nothing).
#[derive(Debug, Clone)]
pub struct Records {
    /// The boxes.
    pub store: BoxStore,
    /// The events log.
    pub events: EventLog,
    /// The pods.
    pub pods: super::pods::PodStore,
}

/// What kind of sandbox the actor runs.
#[derive(Debug)]
pub enum Kind {
    /// A box: one container; its VM lives as long as its main process.
    Standalone(Box<ContainerSetup>),
    /// A pod: its VM lives until the pod stops; containers join and leave.
    Pod(Box<PodSetup>),
}

/// A pod's sandbox.
#[derive(Debug, Clone)]
pub struct PodSetup {
    /// Its name.
    pub name: String,
    /// Its VM: resources, hostname, network.
    pub sandbox: SandboxSpec,
    /// The root directory of its VM's (unused) root disk.
    pub root_dir: PathBuf,
}

/// Everything an actor starts from.
pub struct Setup {
    /// The sandbox's id (the box's or the pod's).
    pub id: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The engine's settings.
    pub engine: Arc<EngineConfig>,
    /// The hypervisor.
    pub vmm: Arc<dyn SandboxVmm>,
    /// Where state goes; `None` stores nothing.
    pub records: Option<Records>,
    /// The sandbox.
    pub kind: Kind,
    /// A starter will ask for the start report: the actor does not end
    /// before it did (bounded).
    pub report_expected: bool,
    /// Connect the hypervisor's control (pause, resume, events).
    pub control: bool,
    /// End the sandbox if its directory disappears.
    pub watch_dir: bool,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A message to the actor.
pub(crate) enum Msg {
    /// A client's request; `client` carries the frames of `exec`/`attach`.
    Request {
        conn: ConnId,
        request: Request,
        client: Option<ClientTx>,
        reply: oneshot::Sender<Outcome>,
    },
    /// A frame from exec or attached client `id`.
    Input { id: u32, frame: Frame },
    /// Client `id` went away.
    Gone { id: u32 },
    /// Connection `conn` closed: its holds are released.
    Closed { conn: ConnId },
    /// A boot ended.
    Booted {
        gen: u64,
        result: Result<Box<Running>>,
    },
    /// A frame from the guest of VM `gen`, or why its channel broke.
    Guest {
        gen: u64,
        frame: std::result::Result<Frame, String>,
    },
    /// The guest channel of VM `gen` ended.
    GuestEnd { gen: u64 },
    /// The VM `gen` is gone (its process reaped, its daemons stopped).
    VmDown { gen: u64, error: Option<BoxError> },
    /// An event of the hypervisor of VM `gen`.
    Vm { gen: u64, event: VmEvent },
    /// A timer went off.
    Timer(Timer),
}

/// Things the actor does later.
#[derive(Debug, Clone)]
pub(crate) enum Timer {
    /// SIGKILL the container's main process (its stop's grace is over).
    StopKill { container: String, stop_gen: u64 },
    /// The container did not end after SIGKILL: take it down harder.
    StopForce { container: String, stop_gen: u64 },
    /// Start the container again (restart policy).
    Restart { container: String },
    /// See whether the sandbox's directory still exists.
    WatchDir,
    /// Stop waiting for holds and the starter.
    HoldsOver,
    /// Remove the `--rm` box of a pod container.
    Remove { container: String },
}

/// The VM while it runs.
pub(crate) struct Running {
    pub handler: Box<dyn VmHandler>,
    pub writer: FrameWriter,
    pub console: PathBuf,
    pub control: Option<Arc<dyn VmControl>>,
    /// Lives as long as the VM (its daemons, its networks): dropped after it.
    pub companions: Box<dyn crate::sandbox::vmm::Companions>,
    /// The guest must sync and power off (a writable disk, host shares).
    pub clean_shutdown: bool,
    /// The storage the VM was given (a pod's containers share it).
    pub storage: crate::storage::plan::VmStorage,
    /// The accelerator it runs with and why.
    pub accelerator: Option<String>,
}

/// The VM of the sandbox.
pub(crate) enum Vm {
    /// None.
    Down,
    /// Being booted by a task of its own.
    Booting {
        gen: u64,
        task: tokio::task::JoinHandle<()>,
    },
    /// Up.
    Up { gen: u64, running: Box<Running> },
    /// Shut down, waiting for its process to end.
    Retiring { gen: u64 },
}

/// A way in to a running actor: what the server and in-process callers use.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: UnboundedSender<Msg>,
    conns: Arc<AtomicU64>,
}

/// One client's connection to the actor. Dropping it releases its holds.
#[derive(Debug)]
pub struct Connection {
    tx: UnboundedSender<Msg>,
    id: ConnId,
}

impl Handle {
    /// A new connection.
    pub fn connect(&self) -> Connection {
        Connection {
            tx: self.tx.clone(),
            id: self.conns.fetch_add(1, Ordering::Relaxed),
        }
    }
}

impl Connection {
    /// Ask `request`; `client` carries the frames of an `exec`/`attach`.
    pub async fn request(&self, request: Request, client: Option<ClientTx>) -> Outcome {
        let (reply, rx) = oneshot::channel();
        let msg = Msg::Request {
            conn: self.id,
            request,
            client,
            reply,
        };
        if self.tx.send(msg).is_err() {
            return Outcome::Error(gone());
        }
        rx.await.unwrap_or_else(|_| Outcome::Error(gone()))
    }

    /// A frame from client `id` (of an `exec`/`attach` of this connection).
    pub fn input(&self, id: u32, frame: Frame) -> bool {
        self.tx.send(Msg::Input { id, frame }).is_ok()
    }

    /// Client `id` went away.
    pub fn gone(&self, id: u32) {
        let _ = self.tx.send(Msg::Gone { id });
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Closed { conn: self.id });
    }
}

fn gone() -> BoxError {
    BoxError::NotRunning("the sandbox's supervisor has ended".into())
}

/// Timing of the actor.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// First restart back-off (doubling).
    pub(crate) first_backoff: Duration,
    /// Longest back-off.
    pub(crate) max_backoff: Duration,
    /// After SIGKILL, how long before the VM (or the container) is taken down.
    pub(crate) kill_grace: Duration,
    /// How long holds and the starter keep an ending sandbox.
    pub(crate) hold_limit: Duration,
    /// How often the directory is checked.
    pub(crate) dir_watch: Duration,
}

impl Timing {
    /// Short back-offs and grace periods, for tests.
    pub fn fast() -> Self {
        Timing {
            first_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(80),
            kill_grace: Duration::from_millis(200),
            hold_limit: Duration::from_secs(2),
            dir_watch: Duration::from_millis(100),
        }
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            kill_grace: Duration::from_secs(5),
            hold_limit: Duration::from_secs(10),
            dir_watch: Duration::from_secs(2),
        }
    }
}

/// The actor.
pub struct Actor {
    id: String,
    dir: PathBuf,
    engine: Arc<EngineConfig>,
    vmm: Arc<dyn SandboxVmm>,
    records: Option<Records>,
    pod: Option<PodSetup>,
    control: bool,
    watch_dir: bool,
    timing: Timing,
    containers: BTreeMap<String, Container>,
    router: Router,
    vm: Vm,
    gen: u64,
    next_id: u32,
    paused: bool,
    tx: UnboundedSender<Msg>,
    rx: UnboundedReceiver<Msg>,
    conns: Arc<AtomicU64>,
    /// Connections holding a container (its `--rm` removal waits).
    holds: HashMap<ConnId, String>,
    /// The hold limit passed: the actor ends regardless.
    holds_over: bool,
    /// `--rm` containers of a pod waiting for their holds.
    pending_removals: Vec<String>,
    /// The starter has not asked for its report yet.
    report_pending: bool,
    /// The first start's outcome, once known.
    first_start: Option<Outcome>,
    /// `start_report`s waiting for it.
    report_waiters: Vec<oneshot::Sender<Outcome>>,
    subscribers: Vec<UnboundedSender<SandboxEvent>>,
    /// Nothing more runs: the actor ends once holds allow.
    ending: bool,
    /// A stop of the whole sandbox is in progress.
    stopping: Vec<oneshot::Sender<Outcome>>,
    /// Why the sandbox's VM last failed.
    last_error: Option<BoxError>,
    /// Frames for the guest of a VM still booting.
    early: Vec<Frame>,
    /// `network connect`/`disconnect` waiting for the guest, by NIC.
    net_waiters: Vec<(
        a3s_box_core::guest::message::MacAddr,
        oneshot::Sender<Outcome>,
    )>,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("id", &self.id)
            .field("dir", &self.dir)
            .field("containers", &self.containers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Actor {
    /// An actor for `setup`, and a handle to reach it.
    pub fn new(setup: Setup) -> (Actor, Handle) {
        let (tx, rx) = unbounded_channel();
        let conns = Arc::new(AtomicU64::new(1));
        let mut containers = BTreeMap::new();
        let pod = match setup.kind {
            Kind::Standalone(c) => {
                let restarts = setup
                    .records
                    .as_ref()
                    .and_then(|r| r.store.load_dir(&c.dir).ok())
                    .map_or(0, |r| r.state.restart_count);
                containers.insert(c.id.clone(), Container::new(*c, restarts));
                None
            }
            Kind::Pod(p) => Some(*p),
        };
        let handle = Handle {
            tx: tx.clone(),
            conns: conns.clone(),
        };
        let actor = Actor {
            id: setup.id,
            dir: setup.dir,
            engine: setup.engine,
            vmm: setup.vmm,
            records: setup.records,
            pod,
            control: setup.control,
            watch_dir: setup.watch_dir,
            timing: Timing::default(),
            containers,
            router: Router::default(),
            vm: Vm::Down,
            gen: 0,
            next_id: MAIN_PROCESS + 1,
            paused: false,
            tx,
            rx,
            conns,
            holds: HashMap::new(),
            holds_over: false,
            pending_removals: Vec::new(),
            report_pending: setup.report_expected,
            first_start: None,
            report_waiters: Vec::new(),
            subscribers: Vec::new(),
            ending: false,
            stopping: Vec::new(),
            last_error: None,
            early: Vec::new(),
            net_waiters: Vec::new(),
        };
        (actor, handle)
    }

    /// Other timings (tests use [`Timing::fast`]).
    pub fn with_timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// A handle to this actor.
    pub fn handle(&self) -> Handle {
        Handle {
            tx: self.tx.clone(),
            conns: self.conns.clone(),
        }
    }

    fn is_pod(&self) -> bool {
        self.pod.is_some()
    }

    /// Run the sandbox until it is over. A standalone box's outcome is its
    /// container's last exit code, or the error that kept it from running.
    pub async fn run(mut self) -> Result<i32> {
        if self.watch_dir {
            self.after(self.timing.dir_watch, Timer::WatchDir);
        }
        self.begin();
        while let Some(msg) = self.rx.recv().await {
            self.dispatch(msg).await;
            if self.ending && self.may_end() {
                break;
            }
        }
        self.finish()
    }

    /// The first thing the sandbox does: boot.
    fn begin(&mut self) {
        self.mark_started_by_user();
        if self.is_pod() {
            self.record_pod_starting();
        } else if let Some(id) = self.containers.keys().next().cloned() {
            if let Some(c) = self.containers.get_mut(&id) {
                c.phase = super::container::Phase::Starting;
            }
        }
        self.boot();
    }

    async fn dispatch(&mut self, msg: Msg) {
        match msg {
            Msg::Request {
                conn,
                request,
                client,
                reply,
            } => self.on_request(conn, request, client, reply).await,
            Msg::Input { id, frame } => {
                let frames = match self.router.is_exec(id) {
                    true => self.router.on_exec_input(id, frame).into_iter().collect(),
                    false => self
                        .router
                        .on_attached_input(id, frame)
                        .into_iter()
                        .collect(),
                };
                self.send_frames(frames).await;
            }
            Msg::Gone { id } => {
                let frames = self.router.gone(id);
                self.send_frames(frames).await;
            }
            Msg::Closed { conn } => {
                if self.holds.remove(&conn).is_some() && self.is_pod() {
                    self.begin_removals();
                }
            }
            Msg::Booted { gen, result } => self.on_booted(gen, result).await,
            Msg::Guest { gen, frame } if self.is_current(gen) => match frame {
                Ok(frame) => self.on_guest_frame(frame).await,
                Err(e) => {
                    self.on_channel_broken(format!("bad frame from the guest: {e}"))
                        .await
                }
            },
            Msg::GuestEnd { gen } if self.is_current(gen) => {
                self.on_channel_broken("the VM stopped before the workload finished".into())
                    .await
            }
            Msg::VmDown { gen, error } => self.on_vm_down(gen, error).await,
            Msg::Vm { gen, event } if self.is_current(gen) => {
                self.emit(SandboxEvent::Vm {
                    name: event.name,
                    data: event.data,
                });
            }
            Msg::Timer(timer) => self.on_timer(timer).await,
            // Frames and events of a VM that is no longer the current one.
            Msg::Guest { .. } | Msg::GuestEnd { .. } | Msg::Vm { .. } => {}
        }
    }

    fn is_current(&self, gen: u64) -> bool {
        matches!(self.vm, Vm::Up { gen: g, .. } if g == gen)
    }

    /// Do `timer` after `delay`.
    fn after(&self, delay: Duration, timer: Timer) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Msg::Timer(timer));
        });
    }

    /// Tell every subscriber.
    fn emit(&mut self, event: SandboxEvent) {
        self.subscribers.retain(|s| s.send(event.clone()).is_ok());
    }

    /// A new id for a process or a client on the channel.
    fn next_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(MAIN_PROCESS + 1);
        id
    }

    async fn send_frames(&mut self, frames: Vec<Frame>) {
        for frame in frames {
            self.send_frame(&frame).await;
        }
    }

    /// Send a frame to the guest; a broken channel is noticed by the
    /// reader. While the VM boots, frames wait (an attached client's stdin
    /// for a main process that starts with the VM).
    async fn send_frame(&mut self, frame: &Frame) {
        match &mut self.vm {
            Vm::Up { running, .. } => {
                if let Err(e) = running.writer.send(frame).await {
                    tracing::debug!("send to the guest: {e}");
                }
            }
            Vm::Booting { .. } => self.early.push(frame.clone()),
            Vm::Down | Vm::Retiring { .. } => {}
        }
    }
}
