//! [`Engine`]: the one API under every front end.
//!
//! The CLI, the HTTP service, the containerd shim and the Rust SDK all call
//! this: typed requests in, typed results and Docker-shaped views out, an
//! [`a3s_box_core::ErrorKind`] on every error. Front ends only parse their
//! input into these types and render what comes back; nothing a front end
//! does is missing here. Daemonless: the engine runs inside whichever front
//! end calls it; each started box is owned by its supervisor (the shim).
//!
//! Every error says what kind it is, so a front end never matches messages:
//!
//! ```
//! use a3s_box_core::ErrorKind;
//! use a3s_box_runtime::config::EngineConfig;
//! use a3s_box_runtime::manager::views::list::ListOptions;
//! use a3s_box_runtime::manager::Engine;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let home = tempfile::tempdir()?;
//! // A front end builds the config once (flags, environment, config.json);
//! // here, the defaults for a home.
//! let engine = Engine::new(EngineConfig::defaults(home.path().into(), None, None));
//! assert!(engine.list(&ListOptions { all: true, ..Default::default() })?.is_empty());
//! let err = engine.inspect("web").unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::NotFound); // an HTTP front end answers 404
//! assert_eq!(err.to_string(), "no such box: web");
//! # Ok(()) }
//! ```
//!
//! A box's life, as `a3s-box run -d` then `a3s-box wait` drive it (this boots a
//! VM, so it is only compiled here):
//!
//! ```no_run
//! use a3s_box_core::spec::{BoxSpec, ContainerSpec, ProcessSpec, RootSource};
//! use a3s_box_runtime::config::EngineConfig;
//! use a3s_box_runtime::manager::resolve::PullOptions;
//! use a3s_box_runtime::manager::{Engine, RemoveOptions, WaitCondition};
//!
//! # async fn demo() -> a3s_box_core::Result<()> {
//! let engine = Engine::new(EngineConfig::from_env()?);
//! let root = RootSource::Image { reference: "127.0.0.1:5000/team/tool:1".into(), digest: None };
//! let process = ProcessSpec { args: vec!["sh".into(), "-c".into(), "exit 3".into()], ..Default::default() };
//! let spec = BoxSpec::single(ContainerSpec::new(root, process));
//! let record = engine.create(spec, PullOptions::default()).await?;
//! let id = &record.config.id;
//! engine.start(id).await?.expect("the workload starts");
//! assert_eq!(engine.wait(id, WaitCondition::NotRunning).await?, 3);
//! println!("{}", serde_json::to_string_pretty(&engine.inspect(id)?).unwrap());
//! engine.remove(id, RemoveOptions::default()).await?;
//! # Ok(()) }
//! ```

mod connect;
mod network;
mod pods;
mod session;
mod storage;

pub use crate::network::store::NetworkCreate;
pub use connect::NetworkConnect;
pub use network::NetworkView;
pub use pods::{PodContainer, PodCreate, PodInspect, PodSummary};
pub use session::{ExecRequest, MainProcess, Session};
pub use storage::VolumeView;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::spec::BoxSpec;
use a3s_box_core::{BoxError, Result};

use super::logs::{self, Follower, LogsOptions, FOLLOW_POLL};
use super::resolve::{resolve, PullOptions};
use super::views::inspect::BoxInspect;
use super::views::list::{BoxSummary, ListOptions};
use super::{BoxManager, StartError};
use crate::config::EngineConfig;
use crate::home::Home;
use crate::sandbox::client::SandboxClient;
use crate::sandbox::rpc::{Reply, Request};
use crate::sandbox::spawn::{supervisor_gone, Supervisors};
use crate::state::events::{EventLog, EVENTS_FILE};
use crate::state::log::{read_log, LogLine};
use crate::state::{BoxRecord, LOG_FILE};

pub use crate::sandbox::rpc::WaitCondition;

/// How long `run`, `start -a` and `attach` wait for a box's supervisor to
/// finish after its workload exited.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// What `rm` does beyond removing the box.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoveOptions {
    /// Kill a running box first.
    pub force: bool,
    /// Remove its anonymous volumes too (`-v`).
    pub volumes: bool,
}

/// A wait for the box's exit on a connection that holds it.
type PendingExit = tokio::task::JoinHandle<(SandboxClient, Result<Reply>)>;

/// A client waiting for a box's end: knows where this run's output begins
/// in the log, and (once the box is started with
/// [`Engine::start_watched`], or held with [`Engine::hold_watched`]) waits
/// for its exit on a connection that keeps an `--rm` box until the exit
/// code and the last output are read. Take it before starting the box.
#[derive(Debug)]
pub struct ExitWatch {
    record: BoxRecord,
    offset: u64,
    pending: Option<PendingExit>,
}

impl ExitWatch {
    /// The box watched.
    pub fn record(&self) -> &BoxRecord {
        &self.record
    }
}

/// Nanoseconds since the epoch.
fn nanos(t: std::time::SystemTime) -> u128 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// One `--filter` of `events`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `type=container|pod|image|volume|network`.
    Type(EventType),
    /// `event=start` (an action).
    Action(String),
    /// `container=NAME|ID` (also `box=`).
    Box(String),
    /// `label=KEY[=VALUE]` on the object's attributes.
    Label(String, Option<String>),
}

impl FromStr for EventFilter {
    type Err = BoxError;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            BoxError::Invalid(format!(
                "invalid filter {text:?}: use type=TYPE, event=ACTION, container=BOX or \
                 label=KEY[=VALUE]"
            ))
        };
        let (key, value) = text.split_once('=').ok_or_else(bad)?;
        Ok(match key {
            "type" => EventFilter::Type(
                serde_json::from_value(serde_json::Value::String(value.into()))
                    .map_err(|_| bad())?,
            ),
            "event" | "action" => EventFilter::Action(value.to_string()),
            "container" | "box" => EventFilter::Box(value.to_string()),
            "label" => match value.split_once('=') {
                Some((k, v)) => EventFilter::Label(k.into(), Some(v.into())),
                None => EventFilter::Label(value.into(), None),
            },
            _ => return Err(bad()),
        })
    }
}

impl EventFilter {
    /// Whether `e` passes.
    pub fn matches(&self, e: &Event) -> bool {
        let attr = |k: &str| e.actor.attributes.get(k);
        match self {
            EventFilter::Type(t) => e.kind == *t,
            EventFilter::Action(a) => e.action.to_string() == *a,
            EventFilter::Box(b) => {
                e.actor.id.starts_with(b.as_str()) || attr("name").is_some_and(|n| n == b)
            }
            EventFilter::Label(k, v) => {
                attr(k).is_some_and(|have| v.as_ref().is_none_or(|want| want == have))
            }
        }
    }
}

/// Events as they are recorded.
#[derive(Debug)]
pub struct EventStream {
    follower: crate::state::events::EventFollower,
    filters: Vec<EventFilter>,
}

impl EventStream {
    /// The next events (waits until there is at least one).
    pub async fn next(&mut self) -> Vec<Event> {
        loop {
            let new: Vec<Event> = self
                .follower
                .poll()
                .into_iter()
                .filter(|e| self.filters.iter().all(|f| f.matches(e)))
                .collect();
            if !new.is_empty() {
                return new;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }
}

/// What `system prune` freed beyond boxes.
#[derive(Debug)]
pub struct SystemPruneReport {
    /// Bytes of cached root images removed.
    pub root_cache_bytes: u64,
    /// Unused images removed.
    pub images: super::PruneReport,
}

/// The engine over one home.
#[derive(Debug, Clone)]
pub struct Engine {
    config: Arc<EngineConfig>,
    home: Home,
    boxes: BoxManager,
    events: EventLog,
}

impl Engine {
    /// The engine configured by `config` (see [`EngineConfig`]).
    pub fn new(config: EngineConfig) -> Self {
        let config = Arc::new(config);
        let boxes = BoxManager::new(config.clone());
        Self::with_boxes(config, boxes)
    }

    /// The engine with its sandboxes supervised by `supervisors` (tests
    /// run them in-process over a fake hypervisor).
    pub fn with_supervisors(config: EngineConfig, supervisors: Arc<dyn Supervisors>) -> Self {
        let config = Arc::new(config);
        let boxes = BoxManager::with_supervisors(config.clone(), supervisors);
        Self::with_boxes(config, boxes)
    }

    fn with_boxes(config: Arc<EngineConfig>, boxes: BoxManager) -> Self {
        let home = config.home_dir();
        Engine {
            boxes,
            events: EventLog::at(home.root().join(EVENTS_FILE)),
            home,
            config,
        }
    }

    /// Its configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The home it works on.
    pub fn home(&self) -> &Home {
        &self.home
    }

    /// Lifecycle internals (for the storage and image modules).
    pub fn boxes(&self) -> &BoxManager {
        &self.boxes
    }

    /// The events log.
    pub fn events(&self) -> &EventLog {
        &self.events
    }

    fn record(&self, action: EventAction, r: &BoxRecord) {
        self.events.record(
            &Event::now(EventType::Container, action, &r.config.id)
                .with("name", &r.config.name)
                .with("image", super::views::list::image_of(r)),
        );
    }

    /// Create a box from `spec` (resolved first: see [`super::resolve`]);
    /// it is not started.
    pub async fn create(&self, spec: BoxSpec, pull: PullOptions) -> Result<BoxRecord> {
        let name = spec.containers.first().and_then(|c| c.name.clone());
        let spec = self.in_pod(spec)?;
        let spec = resolve(&self.config, spec, pull).await?;
        let boxes = self.boxes.clone();
        let record = blocking(move || boxes.create(name, spec)).await?;
        self.record(EventAction::Create, &record);
        // A running pod takes it in at once (its root is ready for `start`).
        if let Err(e) = self.boxes.join_pod(&record).await {
            tracing::warn!("box {} could not join its pod yet: {e}", record.config.name);
        }
        Ok(record)
    }

    /// Run `spec` as an anonymous throw-away box supervised by this very
    /// process: the workload's output goes to our stdout and stderr, its
    /// signals come from ours, nothing is stored. The workload's exit code.
    pub async fn run_foreground(&self, spec: BoxSpec, pull: PullOptions) -> Result<i32> {
        let spec = resolve(&self.config, spec, pull).await?;
        let opts = super::lower::run_options(&spec, &self.home)?;
        super::run_foreground(self.config.clone(), opts).await
    }

    /// Events recorded at or after `since` (all when `None`) that pass
    /// `filters`, oldest first, and a follower for the ones to come.
    pub fn events_since(
        &self,
        since: Option<std::time::SystemTime>,
        filters: &[EventFilter],
    ) -> (Vec<Event>, EventStream) {
        let (all, end) = self.events.read_all();
        let since_nanos = since.map(nanos);
        let past = all
            .into_iter()
            .filter(|e| since_nanos.is_none_or(|s| e.time_nano >= s))
            .filter(|e| filters.iter().all(|f| f.matches(e)))
            .collect();
        let stream = EventStream {
            follower: self.events.follow_from(end),
            filters: filters.to_vec(),
        };
        (past, stream)
    }

    /// Find a box by id, unique id prefix or name.
    pub fn get(&self, key: &str) -> Result<BoxRecord> {
        self.boxes.store().get(key)
    }

    /// Boxes, newest first.
    pub fn list(&self, opts: &ListOptions) -> Result<Vec<BoxSummary>> {
        let pods: std::collections::HashMap<String, String> = self
            .boxes
            .pods()
            .list()?
            .into_iter()
            .map(|p| (p.config.id, p.config.name))
            .collect();
        let pod_of = |r: &BoxRecord| {
            let id = r.config.spec.sandbox.pod.as_ref()?;
            Some((
                id.clone(),
                pods.get(id).cloned().unwrap_or_else(|| id.clone()),
            ))
        };
        Ok(self
            .boxes
            .store()
            .list()?
            .into_iter()
            .filter(|r| opts.all || r.state.status.is_active())
            .filter(|r| {
                let pod = pod_of(r);
                let pod = pod.as_ref().map(|(id, name)| (id.as_str(), name.as_str()));
                opts.filters.iter().all(|f| f.matches(r, pod))
            })
            .map(|r| {
                let name = pod_of(&r).map(|(_, name)| name);
                BoxSummary::of(&r, name)
            })
            .collect())
    }

    /// A box as Docker's inspect shows it.
    pub fn inspect(&self, key: &str) -> Result<BoxInspect> {
        let record = self.get(key)?;
        let pod = record.config.spec.sandbox.pod.clone();
        Ok(BoxInspect::of(&record, pod))
    }

    /// Start a box; `Ok(Err(..))` is a workload that could not start
    /// (Docker's 125/126/127 with the reason).
    pub async fn start(&self, key: &str) -> Result<std::result::Result<(), StartError>> {
        let record = self.get(key)?;
        // The box's supervisor records its start and exit events.
        let (outcome, _) = self.boxes.start(&record, false).await?;
        Ok(outcome)
    }

    /// Start the box `watch` watches; the watch then holds it until
    /// finished (see [`ExitWatch`]).
    pub async fn start_watched(
        &self,
        watch: &mut ExitWatch,
    ) -> Result<std::result::Result<(), StartError>> {
        let (outcome, client) = self.boxes.start(&watch.record, true).await?;
        if outcome.is_ok() {
            watch.pending = Some(self.wait_exit_on(client, &watch.record));
        }
        Ok(outcome)
    }

    /// Hold the running box `watch` watches (before attaching to it).
    pub async fn hold_watched(&self, watch: &mut ExitWatch) -> Result<()> {
        let client = self
            .boxes
            .client(&watch.record)
            .await
            .map_err(|e| match e.kind() {
                a3s_box_core::ErrorKind::NotRunning => BoxError::NotRunning(format!(
                    "box {} is not running ({}): start it first",
                    watch.record.config.name, watch.record.state.status
                )),
                _ => e,
            })?;
        watch.pending = Some(self.wait_exit_on(client, &watch.record));
        Ok(())
    }

    fn wait_exit_on(&self, mut client: SandboxClient, record: &BoxRecord) -> PendingExit {
        let container = self.boxes.container_key(record);
        tokio::spawn(async move {
            let request = Request::Wait {
                container,
                condition: WaitCondition::NotRunning,
                hold: true,
            };
            let reply = client.call(request).await;
            (client, reply)
        })
    }

    /// Stop: the stop signal to the workload, SIGKILL after `timeout`.
    pub async fn stop(&self, key: &str, timeout: Duration) -> Result<()> {
        let record = self.get(key)?;
        // Its supervisor records the stop.
        self.boxes.stop(&record, timeout).await
    }

    /// Stop (with the grace period) then start.
    pub async fn restart(
        &self,
        key: &str,
        timeout: Duration,
    ) -> Result<std::result::Result<(), StartError>> {
        self.stop(key, timeout).await?;
        self.start(key).await
    }

    /// Send `signal` to the workload.
    pub async fn kill(&self, key: &str, signal: i32) -> Result<()> {
        let record = self.get(key)?;
        // Its supervisor records the signal.
        self.boxes.kill(&record, signal).await
    }

    /// Stop the box's vCPUs (its memory stays).
    pub async fn pause(&self, key: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.pause(&record).await
    }

    /// Run the vCPUs again.
    pub async fn unpause(&self, key: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.unpause(&record).await
    }

    /// Give a box a new, unused name. A running box's networks resolve it
    /// by the new name (and no longer by the old one) right away.
    pub async fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.rename(&record, new_name)?;
        self.rename_on_networks(&record, new_name).await;
        self.events.record(
            &Event::now(EventType::Container, EventAction::Rename, &record.config.id)
                .with("name", new_name)
                .with("oldName", &record.config.name),
        );
        Ok(())
    }

    /// Remove a box (a running one only with `force`).
    pub async fn remove(&self, key: &str, opts: RemoveOptions) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.remove(&record, opts.force).await?;
        self.record(EventAction::Destroy, &record);
        if opts.volumes {
            self.remove_anonymous_volumes(&record)?;
        }
        Ok(())
    }

    /// `rm -v`: the anonymous volumes of a removed box.
    fn remove_anonymous_volumes(&self, record: &BoxRecord) -> Result<()> {
        use a3s_box_core::spec::Mount;
        let store = crate::storage::volumes::VolumeStore::new(&self.home);
        for m in &record.config.container().storage.mounts {
            if let Mount::Volume {
                name: Some(name),
                anonymous: true,
                ..
            } = m
            {
                store.remove(name, false)?;
            }
        }
        Ok(())
    }

    /// Remove every box that is not active; the ids removed.
    pub fn prune(&self) -> Result<Vec<String>> {
        let removed = self.boxes.prune()?;
        for id in &removed {
            self.events
                .record(&Event::now(EventType::Container, EventAction::Destroy, id));
        }
        Ok(removed)
    }

    /// `system prune`: stopped boxes (see [`Engine::prune`]), the cached
    /// root images of `--rootfs` directories, and unused images.
    pub fn system_prune(&self) -> Result<SystemPruneReport> {
        let cache = self.home.rootfs_cache_dir();
        let root_cache_bytes = crate::storage::volumes::tree_bytes(&cache);
        if cache.exists() {
            std::fs::remove_dir_all(&cache)
                .map_err(|e| BoxError::io(format!("remove {}", cache.display()), e))?;
        }
        let images = super::ImageManager::new(&self.config)?.prune()?;
        Ok(SystemPruneReport {
            root_cache_bytes,
            images,
        })
    }

    /// Watch `key`'s end: take before starting it (see [`ExitWatch`]).
    pub fn watch_exit(&self, key: &str) -> Result<ExitWatch> {
        let record = self.get(key)?;
        let offset = std::fs::metadata(record.dir.join(LOG_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        Ok(ExitWatch {
            record,
            offset,
            pending: None,
        })
    }

    /// Stream the watched box's output from where the watch began until it
    /// stops; its exit code. The box is removed (`--rm`) or stopped for
    /// good when this returns.
    pub async fn follow_to_exit(
        &self,
        mut watch: ExitWatch,
        on_line: &mut (dyn FnMut(&LogLine) + Send),
    ) -> Result<i32> {
        let mut follower = Follower::new(watch.record.dir.join(LOG_FILE), watch.offset);
        if watch.pending.is_none() {
            self.hold_watched(&mut watch).await?;
        }
        if let Some(pending) = &watch.pending {
            // The output is in the log; the end comes from the supervisor.
            while !pending.is_finished() {
                follower.poll().iter().for_each(&mut *on_line);
                tokio::time::sleep(FOLLOW_POLL).await;
            }
        }
        follower.poll().iter().for_each(&mut *on_line);
        self.finish(watch).await
    }

    /// Wait for the watched box to end, then let go of `watch`; the box's
    /// exit code. An `--rm` box is gone, any other's supervisor is done
    /// (unless a restart policy keeps it), when this returns.
    pub async fn finish(&self, watch: ExitWatch) -> Result<i32> {
        let record = watch.record;
        let Some(pending) = watch.pending else {
            return self.boxes.wait(&record, WaitCondition::NotRunning).await;
        };
        let (mut client, reply) = pending
            .await
            .map_err(|e| BoxError::io("wait for the box", std::io::Error::other(e)))?;
        match reply {
            Ok(Reply::Exited { code, last }) => {
                if record.config.auto_remove() {
                    let removed = client
                        .call(Request::Wait {
                            container: self.boxes.container_key(&record),
                            condition: WaitCondition::Removed,
                            hold: false,
                        })
                        .await;
                    return Ok(match removed {
                        Ok(Reply::Removed { code }) => code,
                        _ => code,
                    });
                }
                drop(client);
                if last {
                    supervisor_gone(&record.dir, SETTLE_LIMIT).await;
                }
                Ok(code)
            }
            // Its supervisor died: the store (reconciled) says.
            _ => {
                drop(client);
                Ok(self
                    .get(&record.config.id)
                    .ok()
                    .and_then(|r| r.state.exit_code)
                    .unwrap_or(0))
            }
        }
    }

    /// The box's log lines (`since`, `tail`), then, with `follow`, every new
    /// line until the box stops.
    pub async fn logs(
        &self,
        key: &str,
        opts: &LogsOptions,
        on_line: &mut (dyn FnMut(&LogLine) + Send),
    ) -> Result<()> {
        let record = self.get(key)?;
        let path = record.dir.join(LOG_FILE);
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        logs::select(read_log(&path)?, opts)
            .iter()
            .for_each(&mut *on_line);
        if !opts.follow {
            return Ok(());
        }
        let mut follower = Follower::new(path, offset);
        if let Ok(mut client) = self.boxes.client(&record).await {
            let container = self.boxes.container_key(&record);
            let mut ended = Box::pin(client.call(Request::Wait {
                container,
                condition: WaitCondition::NotRunning,
                hold: false,
            }));
            loop {
                follower.poll().iter().for_each(&mut *on_line);
                tokio::select! {
                    _ = &mut ended => break,
                    _ = tokio::time::sleep(FOLLOW_POLL) => {}
                }
            }
        }
        follower.poll().iter().for_each(&mut *on_line);
        Ok(())
    }

    /// Wait for `condition`; the box's exit code.
    pub async fn wait(&self, key: &str, condition: WaitCondition) -> Result<i32> {
        let record = self.get(key)?;
        self.boxes.wait(&record, condition).await
    }
}

/// Run blocking lifecycle code off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BoxError::io("engine task", std::io::Error::other(e)))?
}
