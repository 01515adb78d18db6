//! Box lifecycle operations for the engine: create, start (spawn the
//! sandbox's supervisor and read its start report), stop, kill, pause,
//! remove, wait. Everything that touches a running box is a request of the
//! sandbox RPC to its supervisor (the box's own shim, or its pod's), which
//! alone writes its state; this side holds no state of its own and only
//! watches a supervisor's lock to notice one that died.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::spec::BoxSpec;
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, ErrorKind, Result};

use super::new_box_id;
use crate::config::EngineConfig;
use crate::sandbox::client::SandboxClient;
use crate::sandbox::pods::{PodRecord, PodStore};
use crate::sandbox::rpc::{Reply, Request, WaitCondition};
use crate::sandbox::spawn::{start_supervisor, supervisor_gone, ShimSupervisors, Supervisors};
use crate::state::{shim_alive, BoxRecord, BoxStore};

/// Extra time `stop` waits after the grace period for the VM to be killed.
const STOP_SLACK: Duration = Duration::from_secs(15);
/// How long `wait` and `start -a` wait for the supervisor to finish after
/// the workload exited.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);

/// A workload that could not be started (Docker's 125/126/127).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct StartError {
    /// Exit code for the CLI.
    pub code: i32,
    /// Why.
    pub reason: String,
}

impl StartError {
    fn of(code: i32, reason: &str) -> Self {
        StartError {
            code,
            reason: reason.trim_start_matches("a3s-box: ").to_string(),
        }
    }
}

/// Lifecycle operations on the boxes of one home.
#[derive(Debug, Clone)]
pub struct BoxManager {
    store: BoxStore,
    pods: PodStore,
    layer_cache: PathBuf,
    config: Arc<EngineConfig>,
    supervisors: Arc<dyn Supervisors>,
}

impl BoxManager {
    /// Manager of the boxes of `config`'s home, supervised by shims.
    pub fn new(config: Arc<EngineConfig>) -> Self {
        let supervisors = Arc::new(ShimSupervisors::new(config.clone()));
        Self::with_supervisors(config, supervisors)
    }

    /// Manager whose sandboxes are supervised by `supervisors`.
    pub fn with_supervisors(config: Arc<EngineConfig>, supervisors: Arc<dyn Supervisors>) -> Self {
        let home = config.home_dir();
        BoxManager {
            store: BoxStore::new(&home),
            pods: PodStore::new(&home),
            layer_cache: home.layer_cache_dir(),
            config,
            supervisors,
        }
    }

    /// The engine's configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &BoxStore {
        &self.store
    }

    /// The pod store.
    pub fn pods(&self) -> &PodStore {
        &self.pods
    }

    /// The pod `record` belongs to, if any.
    pub fn pod_of(&self, record: &BoxRecord) -> Result<Option<PodRecord>> {
        match &record.config.spec.sandbox.pod {
            Some(pod) => self.pods.get(pod).map(Some),
            None => Ok(None),
        }
    }

    /// The directory of the sandbox `record` runs in (its own, or its pod's).
    pub(crate) fn sandbox_dir(&self, record: &BoxRecord) -> Result<PathBuf> {
        Ok(match self.pod_of(record)? {
            Some(pod) => pod.dir,
            None => record.dir.clone(),
        })
    }

    /// How requests name `record`'s container.
    pub(crate) fn container_key(&self, record: &BoxRecord) -> Option<String> {
        Some(record.config.id.clone())
    }

    /// A connection to the supervisor of `record`'s sandbox.
    pub(crate) async fn client(&self, record: &BoxRecord) -> Result<SandboxClient> {
        let what = format!("box {}", record.config.name);
        SandboxClient::connect(&self.sandbox_dir(record)?, &what).await
    }

    /// Whether `record`'s sandbox has a supervisor.
    fn supervised(&self, record: &BoxRecord) -> bool {
        shim_alive(&record.dir)
    }

    /// Record a new box (not started) from a resolved spec, with its
    /// writable layer (a pod's containers keep theirs on the pod's disk).
    pub fn create(&self, name: Option<String>, spec: BoxSpec) -> Result<BoxRecord> {
        let id = new_box_id().map_err(|e| BoxError::io("generate box id", e))?;
        let storage = &spec.containers[0].storage;
        let own_layer = !storage.read_only && spec.sandbox.pod.is_none();
        let layer_bytes = storage
            .layer_size_bytes
            .unwrap_or(crate::storage::layer::DEFAULT_LAYER_BYTES);
        let record = self.store.create(id, name, spec)?;
        if own_layer {
            // The box's writable layer: a sparse copy of a formatted template.
            let made = crate::storage::layer::create(&self.layer_cache, &record.dir, layer_bytes);
            if let Err(e) = made {
                let _ = self.store.remove(&record);
                return Err(e.into());
            }
        }
        Ok(record)
    }

    /// Start a box: spawn its supervisor (or, in a pod, the pod's if it
    /// is not running) and wait until the workload runs or fails to start.
    /// `Ok(Err(..))` is a workload that could not start. With `hold`, the
    /// connection returned keeps an `--rm` box until it is dropped.
    pub async fn start(
        &self,
        record: &BoxRecord,
        hold: bool,
    ) -> Result<(std::result::Result<(), StartError>, SandboxClient)> {
        if !record.state.status.can_start() {
            return Err(BoxError::Conflict(format!(
                "box {} is {}: it cannot be started",
                record.config.name, record.state.status
            )));
        }
        if let Some(pod) = self.pod_of(record)? {
            return self.start_in_pod(&pod, record, hold).await;
        }
        let what = format!("box {}", record.config.name);
        let mut client =
            start_supervisor(&self.config, &*self.supervisors, &record.dir, &what).await?;
        let outcome = self
            .report(&mut client, Request::StartReport { hold }, record)
            .await?;
        Ok((outcome, client))
    }

    /// What a start came to.
    async fn report(
        &self,
        client: &mut SandboxClient,
        request: Request,
        record: &BoxRecord,
    ) -> Result<std::result::Result<(), StartError>> {
        match client.call(request).await {
            Ok(Reply::Started { .. }) => Ok(Ok(())),
            Ok(Reply::StartFailed { code, reason }) => Ok(Err(StartError::of(code, &reason))),
            Ok(other) => Err(BoxError::Unavailable(format!(
                "unexpected start report {other:?}"
            ))),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                let shim_log = super::log_tail(&record.dir.join("shim.log"), 5);
                Err(BoxError::Vmm {
                    message: format!(
                        "the supervisor exited before the workload started: {shim_log}"
                    ),
                    console_tail: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Start `record` in its pod, starting the pod first if needed.
    async fn start_in_pod(
        &self,
        pod: &PodRecord,
        record: &BoxRecord,
        hold: bool,
    ) -> Result<(std::result::Result<(), StartError>, SandboxClient)> {
        if !shim_alive(&pod.dir) {
            if let Err(failed) = self.start_pod(pod).await? {
                return Err(BoxError::Unavailable(format!(
                    "pod {} could not be started: {}",
                    pod.config.name, failed.reason
                )));
            }
        }
        let what = format!("pod {}", pod.config.name);
        let mut client = SandboxClient::connect(&pod.dir, &what).await?;
        let request = Request::StartContainer {
            container: record.config.id.clone(),
            hold,
        };
        let outcome = self.report(&mut client, request, record).await?;
        Ok((outcome, client))
    }

    /// Start a pod's supervisor and VM (no container).
    pub async fn start_pod(&self, pod: &PodRecord) -> Result<std::result::Result<(), StartError>> {
        let what = format!("pod {}", pod.config.name);
        let mut client =
            start_supervisor(&self.config, &*self.supervisors, &pod.dir, &what).await?;
        match client.call(Request::StartReport { hold: false }).await {
            Ok(Reply::Started { .. }) => Ok(Ok(())),
            Ok(Reply::StartFailed { code, reason }) => Ok(Err(StartError::of(code, &reason))),
            Ok(other) => Err(BoxError::Unavailable(format!(
                "unexpected start report {other:?}"
            ))),
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                let shim_log = super::log_tail(&pod.dir.join("shim.log"), 5);
                Err(BoxError::Vmm {
                    message: format!(
                        "the pod's supervisor exited before its VM started: {shim_log}"
                    ),
                    console_tail: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Take a box into its running pod (its root is assembled, it does
    /// not start). Nothing to do while the pod does not run.
    pub async fn join_pod(&self, record: &BoxRecord) -> Result<()> {
        let Some(pod) = self.pod_of(record)? else {
            return Ok(());
        };
        if !shim_alive(&pod.dir) {
            return Ok(());
        }
        let what = format!("pod {}", pod.config.name);
        let mut client = SandboxClient::connect(&pod.dir, &what).await?;
        client
            .call(Request::CreateContainer {
                container: record.config.id.clone(),
            })
            .await
            .map(drop)
    }

    /// Stop: the stop signal to the workload, SIGKILL after `timeout`.
    /// Returns once the box no longer runs (and a box's own supervisor
    /// has ended).
    pub async fn stop(&self, record: &BoxRecord, timeout: Duration) -> Result<()> {
        if !record.state.status.is_active() && record.state.status != BoxStatus::Created {
            return Ok(());
        }
        if !self.supervised(record) {
            return Ok(());
        }
        let mut client = match self.client(record).await {
            Ok(c) => c,
            Err(e) if e.kind() == ErrorKind::NotRunning => return Ok(()),
            Err(e) => return Err(e),
        };
        let request = Request::Stop {
            container: self.container_key(record),
            timeout_secs: timeout.as_secs(),
        };
        match client.call(request).await {
            Ok(_) => {}
            // Its supervisor ended meanwhile: stopped.
            Err(e) if e.kind() == ErrorKind::Unavailable => {}
            Err(e) => return Err(e),
        }
        drop(client);
        if record.config.spec.sandbox.pod.is_none()
            && !supervisor_gone(&record.dir, timeout + STOP_SLACK).await
        {
            return Err(BoxError::Unavailable(format!(
                "box {} did not stop within {}s",
                record.config.name,
                (timeout + STOP_SLACK).as_secs()
            )));
        }
        Ok(())
    }

    /// Send `signal` to the workload.
    pub async fn kill(&self, record: &BoxRecord, signal: i32) -> Result<()> {
        let not_running =
            || BoxError::NotRunning(format!("box {} is not running", record.config.name));
        if !record.state.status.is_active() || !self.supervised(record) {
            return Err(not_running());
        }
        let mut client = self.client(record).await.map_err(|_| not_running())?;
        client
            .call(Request::Signal {
                container: self.container_key(record),
                signal,
            })
            .await
            .map(drop)
    }

    /// Remove a box; a running one only with `force` (it is killed first).
    pub async fn remove(&self, record: &BoxRecord, force: bool) -> Result<()> {
        if let Some(pod) = self.pod_of(record)? {
            if shim_alive(&pod.dir) {
                let what = format!("pod {}", pod.config.name);
                let mut client = SandboxClient::connect(&pod.dir, &what).await?;
                let request = Request::RemoveContainer {
                    container: record.config.id.clone(),
                    force,
                };
                match client.call(request).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::Unavailable => {}
                    Err(e) => return Err(e),
                }
            }
        } else if self.supervised(record) {
            // A live supervisor owns the box whatever its status says (a
            // box still booting is `created` until its workload runs).
            if !force {
                return Err(BoxError::Conflict(format!(
                    "box {} is {} and supervised: stop it first or use rm -f",
                    record.config.name, record.state.status
                )));
            }
            self.kill_supervised(record).await?;
        }
        match self.store.remove(record) {
            // An `--rm` box its supervisor removed meanwhile.
            Err(_) if !record.dir.exists() => Ok(()),
            other => other,
        }
    }

    /// `rm -f` of a supervised box: stop it with no grace; a supervisor
    /// that does not answer is killed (its VM dies with it).
    async fn kill_supervised(&self, record: &BoxRecord) -> Result<()> {
        if let Ok(mut client) = self.client(record).await {
            let stop = Request::Stop {
                container: self.container_key(record),
                timeout_secs: 0,
            };
            let asked = tokio::time::timeout(STOP_SLACK, client.call(stop)).await;
            drop(client);
            if asked.is_ok() && supervisor_gone(&record.dir, STOP_SLACK).await {
                return Ok(());
            }
        }
        let deadline = std::time::Instant::now() + STOP_SLACK;
        while shim_alive(&record.dir) {
            let pid = self
                .store
                .load_dir(&record.dir)
                .ok()
                .and_then(|r| r.state.shim_pid);
            if let Some(pid) = pid.filter(|p| *p != std::process::id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            if std::time::Instant::now() > deadline {
                return Err(BoxError::Unavailable(format!(
                    "the supervisor of box {} did not stop",
                    record.config.name
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }

    async fn vcpus(&self, record: &BoxRecord, request: Request) -> Result<()> {
        if let Some(pod) = &record.config.spec.sandbox.pod {
            return Err(BoxError::Invalid(format!(
                "box {} runs in pod {pod}: its vCPUs are the pod's, shared by every container of it",
                record.config.name
            )));
        }
        let mut client = self.client(record).await.map_err(|_| {
            BoxError::NotRunning(format!(
                "box {} is {}: only a running box can be paused or unpaused",
                record.config.name, record.state.status
            ))
        })?;
        client.call(request).await.map(drop)
    }

    /// Pause: the VM's vCPUs stop; its memory stays.
    pub async fn pause(&self, record: &BoxRecord) -> Result<()> {
        self.vcpus(record, Request::Pause).await
    }

    /// Unpause: the vCPUs run again.
    pub async fn unpause(&self, record: &BoxRecord) -> Result<()> {
        self.vcpus(record, Request::Unpause).await
    }

    /// Rename a box (the new name must be free).
    pub fn rename(&self, record: &BoxRecord, new_name: &str) -> Result<()> {
        self.store.rename(record, new_name)
    }

    /// Remove every box that is not active; the ids removed.
    pub fn prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for record in self.store.list()? {
            if record.state.status.can_remove() && !shim_alive(&record.dir) {
                self.store.remove(&record)?;
                removed.push(record.config.id);
            }
        }
        Ok(removed)
    }

    /// Wait for `condition` on `record`; its exit code. A connection that
    /// waited for the exit is returned with the reply (for `--rm` boxes,
    /// whose removal it may then await).
    pub async fn wait(&self, record: &BoxRecord, condition: WaitCondition) -> Result<i32> {
        let id = record.config.id.clone();
        let mut last_code = record.state.exit_code;
        let first_exit = record.state.finished_at.clone();
        loop {
            let now = match self.store.get(&id) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(last_code.unwrap_or(0)),
                Err(e) => return Err(e),
            };
            last_code = now.state.exit_code.or(last_code);
            let ended = !now.state.status.is_active() && now.state.status != BoxStatus::Created;
            let supervised = shim_alive(&now.dir);
            if !supervised {
                // Nobody will tell: the store says.
                let done = match condition {
                    WaitCondition::NotRunning => ended,
                    WaitCondition::NextExit => ended && now.state.finished_at != first_exit,
                    WaitCondition::Removed => false,
                };
                if done {
                    return Ok(last_code.unwrap_or(0));
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
            let mut client = match self.client(&now).await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(POLL).await;
                    continue;
                }
            };
            let request = Request::Wait {
                container: self.container_key(&now),
                condition,
                hold: false,
            };
            match client.call(request).await {
                Ok(Reply::Removed { code }) => return Ok(code),
                Ok(Reply::Exited { code, last }) => {
                    drop(client);
                    if condition == WaitCondition::Removed {
                        // Removed by someone else (or never): the store says.
                        last_code = Some(code);
                        tokio::time::sleep(POLL).await;
                        continue;
                    }
                    if last {
                        // As after `docker wait`, a following `rm` finds
                        // it stopped: its supervisor is done.
                        supervisor_gone(&now.dir, SETTLE_LIMIT).await;
                    }
                    return Ok(code);
                }
                // The supervisor ended meanwhile: read the store again.
                Ok(_) | Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }
}
