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

mod network;
mod session;
mod storage;

pub use crate::network::store::NetworkCreate;
pub use network::NetworkView;
pub use session::{ExecRequest, MainProcess, Session};
pub use storage::VolumeView;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::spec::BoxSpec;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};

use super::logs::{self, Follower, LogsOptions, FOLLOW_POLL};
use super::resolve::{resolve, PullOptions};
use super::views::inspect::BoxInspect;
use super::views::list::{BoxSummary, ListOptions};
use super::{BoxManager, StartError};
use crate::config::EngineConfig;
use crate::home::Home;
use crate::state::events::{EventLog, EVENTS_FILE};
use crate::state::log::{read_log, LogLine};
use crate::state::{BoxRecord, Hold, LOG_FILE};

/// Docker's `wait` conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitCondition {
    /// Return once the box is not running (at once if it is not).
    #[default]
    NotRunning,
    /// Return at the box's next exit, even if it is not running now.
    NextExit,
    /// Return once the box has been removed.
    Removed,
}

impl FromStr for WaitCondition {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "not-running" | "" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(BoxError::Invalid(format!(
                "invalid wait condition {other:?}: use not-running, next-exit or removed"
            ))),
        }
    }
}

/// What `rm` does beyond removing the box.
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoveOptions {
    /// Kill a running box first.
    pub force: bool,
    /// Remove its anonymous volumes too (`-v`).
    pub volumes: bool,
}

/// A client waiting for a box's end: holds an `--rm` box until its exit
/// code and last output are read, and knows where this run's output
/// begins in the log. Take it before starting the box.
#[derive(Debug)]
pub struct ExitWatch {
    record: BoxRecord,
    offset: u64,
    hold: Option<Hold>,
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
        let home = config.home_dir();
        Engine {
            boxes: BoxManager::new(config.clone()),
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
        let spec = resolve(&self.config, spec, pull).await?;
        let boxes = self.boxes.clone();
        let record = blocking(move || boxes.create(name, spec)).await?;
        self.record(EventAction::Create, &record);
        Ok(record)
    }

    /// Run `spec` as an anonymous throw-away box supervised by this very
    /// process: the workload's output goes to our stdout and stderr, its
    /// signals come from ours, nothing is stored. The workload's exit code.
    pub async fn run_foreground(&self, spec: BoxSpec, pull: PullOptions) -> Result<i32> {
        let spec = resolve(&self.config, spec, pull).await?;
        let opts = super::lower::run_options(&spec, &self.home)?;
        super::run_foreground(&self.config, opts).await
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
        Ok(self
            .boxes
            .store()
            .list()?
            .into_iter()
            .filter(|r| opts.all || r.state.status.is_active())
            .filter(|r| opts.filters.iter().all(|f| f.matches(r, None)))
            .map(|r| BoxSummary::of(&r, None))
            .collect())
    }

    /// A box as Docker's inspect shows it.
    pub fn inspect(&self, key: &str) -> Result<BoxInspect> {
        Ok(BoxInspect::of(&self.get(key)?, None))
    }

    /// Start a box; `Ok(Err(..))` is a workload that could not start
    /// (Docker's 125/126/127 with the reason).
    pub async fn start(&self, key: &str) -> Result<std::result::Result<(), StartError>> {
        let record = self.get(key)?;
        let boxes = self.boxes.clone();
        // The box's supervisor records its start and exit events.
        blocking(move || boxes.start(&record)).await
    }

    /// Stop: SIGTERM to the workload, the VM killed after `timeout`.
    pub async fn stop(&self, key: &str, timeout: Duration) -> Result<()> {
        let record = self.get(key)?;
        let boxes = self.boxes.clone();
        let r = record.clone();
        blocking(move || boxes.stop(&r, timeout)).await?;
        self.record(EventAction::Stop, &record);
        Ok(())
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
        let boxes = self.boxes.clone();
        let r = record.clone();
        blocking(move || boxes.kill(&r, signal)).await?;
        self.events.record(
            &Event::now(EventType::Container, EventAction::Kill, &record.config.id)
                .with("name", &record.config.name)
                .with("signal", signal.to_string()),
        );
        Ok(())
    }

    /// Stop the box's vCPUs (its memory stays).
    pub async fn pause(&self, key: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.pause(&record)?;
        self.record(EventAction::Pause, &record);
        Ok(())
    }

    /// Run the vCPUs again.
    pub async fn unpause(&self, key: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.unpause(&record)?;
        self.record(EventAction::Unpause, &record);
        Ok(())
    }

    /// Give a box a new, unused name.
    pub fn rename(&self, key: &str, new_name: &str) -> Result<()> {
        let record = self.get(key)?;
        self.boxes.rename(&record, new_name)?;
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
        let boxes = self.boxes.clone();
        let r = record.clone();
        blocking(move || boxes.remove(&r, opts.force)).await?;
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
        let hold = self.boxes.hold_end(&record)?;
        Ok(ExitWatch {
            record,
            offset,
            hold,
        })
    }

    /// Stream the watched box's output from where the watch began until it
    /// stops; its exit code. The box is removed (`--rm`) or stopped for
    /// good when this returns.
    pub async fn follow_to_exit(
        &self,
        watch: ExitWatch,
        on_line: &mut (dyn FnMut(&LogLine) + Send),
    ) -> Result<i32> {
        let id = watch.record.config.id.clone();
        let follower = Follower::new(watch.record.dir.join(LOG_FILE), watch.offset);
        self.follow_lines(&id, follower, on_line).await;
        self.finish(watch).await
    }

    /// Wait for the watched box to end, then let go of `watch`; the box's
    /// exit code.
    pub async fn finish(&self, watch: ExitWatch) -> Result<i32> {
        let id = watch.record.config.id.clone();
        let mut code = None;
        while let Ok(r) = self.get(&id) {
            code = r.state.exit_code;
            let booting = r.state.status == BoxStatus::Created && crate::state::shim_alive(&r.dir);
            if !r.state.status.is_active() && !booting {
                break;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        let boxes = self.boxes.clone();
        blocking(move || {
            boxes.finish_wait(&watch.record, watch.hold);
            Ok(())
        })
        .await?;
        Ok(code.unwrap_or(0))
    }

    async fn follow_lines(
        &self,
        id: &str,
        mut f: Follower,
        on_line: &mut (dyn FnMut(&LogLine) + Send),
    ) {
        loop {
            let active = match self.get(id) {
                Ok(r) => r.state.status.is_active(),
                Err(_) => false, // removed (--rm)
            };
            f.poll().iter().for_each(&mut *on_line);
            if !active {
                f.poll().iter().for_each(&mut *on_line);
                return;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
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
        logs::select(read_log(&path)?, opts)
            .iter()
            .for_each(&mut *on_line);
        if opts.follow {
            let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            self.follow_lines(&record.config.id, Follower::new(path, offset), on_line)
                .await;
        }
        Ok(())
    }

    /// Wait for `condition`; the box's exit code.
    pub async fn wait(&self, key: &str, condition: WaitCondition) -> Result<i32> {
        let record = self.get(key)?;
        // An `--rm` box would be gone with its code: hold it until read.
        let hold = self.boxes.hold_end(&record)?;
        let id = record.config.id.clone();
        let first_exit = record.state.finished_at.clone();
        let mut last_code = record.state.exit_code;
        loop {
            let now = match self.get(&id) {
                Ok(r) => r,
                Err(e) if e.kind() == a3s_box_core::ErrorKind::NotFound => {
                    return Ok(last_code.unwrap_or(0));
                }
                Err(e) => return Err(e),
            };
            last_code = now.state.exit_code.or(last_code);
            let ended = !now.state.status.is_active() && now.state.status != BoxStatus::Created;
            let done = match condition {
                WaitCondition::NotRunning => ended,
                WaitCondition::NextExit => ended && now.state.finished_at != first_exit,
                WaitCondition::Removed => false,
            };
            if done {
                let boxes = self.boxes.clone();
                blocking(move || {
                    boxes.finish_wait(&now, hold);
                    Ok(())
                })
                .await?;
                return Ok(last_code.unwrap_or(0));
            }
            if condition == WaitCondition::Removed && ended && hold.is_some() {
                // Our own hold keeps an `--rm` box: let its supervisor go.
                drop(hold);
                return self.wait_removed(&id, last_code).await;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    async fn wait_removed(&self, id: &str, code: Option<i32>) -> Result<i32> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.get(id).is_ok() && Instant::now() < deadline {
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        Ok(code.unwrap_or(0))
    }
}

/// Run blocking lifecycle code off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BoxError::io("engine task", std::io::Error::other(e)))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_conditions_are_dockers() {
        assert_eq!(
            "next-exit".parse::<WaitCondition>().unwrap(),
            WaitCondition::NextExit
        );
        assert_eq!(
            "removed".parse::<WaitCondition>().unwrap(),
            WaitCondition::Removed
        );
        assert!("soon".parse::<WaitCondition>().is_err());
    }
}
