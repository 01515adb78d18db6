//! Pods through the engine (podman's `pod` verbs): a pod is one sandbox
//! (one VM) whose containers are boxes naming it. Its VM boots at the
//! pod's start, or at the start of its first container; containers join
//! the running VM without a boot. Views have podman's shapes.

use std::collections::BTreeMap;
use std::time::Duration;

use a3s_box_core::event::{Event, EventAction, EventType};
use a3s_box_core::spec::{BoxSpec, Mount, NetworkSpec, SandboxSpec};
use a3s_box_core::status::BoxStatus;
use a3s_box_core::{BoxError, Result};
use serde::Serialize;

use super::{Engine, RemoveOptions};
use crate::sandbox::client::SandboxClient;
use crate::sandbox::pods::PodRecord;
use crate::sandbox::rpc::Request;
use crate::sandbox::shim::POD_ROOT_DIR;
use crate::sandbox::spawn::supervisor_gone;
use crate::state::{shim_alive, BoxRecord};

/// Extra time `pod stop` waits after the grace period.
const STOP_SLACK: Duration = Duration::from_secs(30);

/// What `pod create` asks for.
#[derive(Debug, Clone, Default)]
pub struct PodCreate {
    /// Its name (made up when `None`).
    pub name: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Its VM: resources, hostname (the containers' default), network.
    pub sandbox: SandboxSpec,
}

/// A container of a pod, as the pod's views list it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodContainer {
    /// Full id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `running`, `exited`, ...
    pub state: BoxStatus,
}

/// One row of `pod ls` (podman's `pod ps --format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodSummary {
    /// Full id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `Created`, `Running`, `Degraded` (some containers are not running),
    /// `Exited`.
    pub status: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// How many containers it has.
    pub number_of_containers: usize,
    /// Its containers.
    pub containers: Vec<PodContainer>,
}

/// A pod, inspected (podman's `pod inspect`, plus an `A3s` section).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodInspect {
    /// Full id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Its status (as in [`PodSummary::status`]).
    pub state: String,
    /// Its containers' default hostname.
    pub hostname: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// vCPUs of its VM.
    #[serde(rename = "CPUs")]
    pub cpus: u8,
    /// Memory of its VM in bytes.
    pub memory_limit: u64,
    /// How many containers it has.
    pub num_containers: usize,
    /// Its containers.
    pub containers: Vec<PodContainer>,
    /// What only a VM has.
    #[serde(rename = "A3s")]
    pub a3s: PodA3s,
}

/// The VM side of a pod.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PodA3s {
    /// Its directory.
    pub dir: std::path::PathBuf,
    /// Its supervisor's pid, while it runs.
    pub shim_pid: Option<u32>,
    /// Its VM's pid, while it runs.
    pub vm_pid: Option<u32>,
    /// When its VM last started.
    pub started_at: Option<String>,
    /// When it last stopped.
    pub finished_at: Option<String>,
    /// Why it stopped, when it failed.
    pub error: Option<String>,
}

impl Engine {
    /// The boxes of pod `id`, newest first.
    fn pod_members(&self, id: &str) -> Result<Vec<BoxRecord>> {
        Ok(self
            .boxes
            .store()
            .list()?
            .into_iter()
            .filter(|r| r.config.spec.sandbox.pod.as_deref() == Some(id))
            .collect())
    }

    fn pod_containers(&self, pod: &PodRecord) -> Result<Vec<PodContainer>> {
        Ok(self
            .pod_members(&pod.config.id)?
            .into_iter()
            .map(|r| PodContainer {
                id: r.config.id,
                name: r.config.name,
                state: r.state.status,
            })
            .collect())
    }

    fn pod_event(&self, action: EventAction, pod: &PodRecord) {
        self.events.record(
            &Event::now(EventType::Pod, action, &pod.config.id).with("name", &pod.config.name),
        );
    }

    /// A box spec naming a pod, with the pod's full id; what a container
    /// joining a running VM cannot have is refused.
    pub(super) fn in_pod(&self, mut spec: BoxSpec) -> Result<BoxSpec> {
        let Some(key) = spec.sandbox.pod.clone() else {
            return Ok(spec);
        };
        let pod = self.boxes.pods().get(&key)?;
        for c in &spec.containers {
            if let Some(m) = c
                .storage
                .mounts
                .iter()
                .find(|m| !matches!(m, Mount::Tmpfs { .. }))
            {
                return Err(BoxError::Invalid(format!(
                    "a container of pod {} cannot have the bind mount or volume on {}: \
                     each needs a virtio-fs device of the VM, and a running VM takes no new \
                     devices (tmpfs mounts work)",
                    pod.config.name,
                    m.target()
                )));
            }
            if !c.storage.volumes_from.is_empty() {
                return Err(BoxError::Invalid(format!(
                    "a container of pod {} cannot take --volumes-from: volumes need virtio-fs \
                     devices the running VM cannot add",
                    pod.config.name
                )));
            }
        }
        if spec.sandbox.network != NetworkSpec::default() {
            return Err(BoxError::Invalid(format!(
                "a container of pod {} shares the pod's network: give -p, --network, --dns, \
                 --add-host and --egress-allow to `pod create`",
                pod.config.name
            )));
        }
        // The pod's VM is the sandbox: its resources, hostname and network.
        spec.sandbox = SandboxSpec {
            pod: Some(pod.config.id.clone()),
            hostname: spec.sandbox.hostname.take(),
            ..pod.config.sandbox.clone()
        };
        Ok(spec)
    }

    /// `pod create`: record a pod (its VM starts with it or its first
    /// container), with the disk that will hold its containers' layers.
    pub fn pod_create(&self, req: PodCreate) -> Result<PodInspect> {
        req.sandbox
            .validate()
            .map_err(|e| BoxError::Invalid(e.for_cli().to_string()))?;
        crate::network::dataplane::check_spec(&self.config, &req.sandbox.network)?;
        let id = crate::manager::new_box_id().map_err(|e| BoxError::io("generate pod id", e))?;
        let pods = self.boxes.pods();
        let record = pods.create(id, req.name, req.labels, req.sandbox)?;
        let made = std::fs::create_dir_all(record.dir.join(POD_ROOT_DIR))
            .map_err(|e| BoxError::io(format!("create {}", record.dir.display()), e))
            .and_then(|()| {
                crate::storage::layer::create(
                    &self.home.layer_cache_dir(),
                    &record.dir,
                    crate::storage::layer::DEFAULT_LAYER_BYTES,
                )
                .map(drop)
                .map_err(BoxError::from)
            });
        if let Err(e) = made {
            let _ = pods.remove(&record);
            return Err(e);
        }
        self.pod_event(EventAction::Create, &record);
        self.pod_view(&record)
    }

    /// `pod ls`: every pod, newest first.
    pub fn pod_list(&self) -> Result<Vec<PodSummary>> {
        self.boxes
            .pods()
            .list()?
            .iter()
            .map(|pod| {
                let containers = self.pod_containers(pod)?;
                Ok(PodSummary {
                    id: pod.config.id.clone(),
                    name: pod.config.name.clone(),
                    status: pod_status(pod, &containers),
                    created: pod.config.created.clone(),
                    labels: pod.config.labels.clone(),
                    number_of_containers: containers.len(),
                    containers,
                })
            })
            .collect()
    }

    /// `pod inspect`.
    pub fn pod_inspect(&self, key: &str) -> Result<PodInspect> {
        let pod = self.boxes.pods().get(key)?;
        self.pod_view(&pod)
    }

    fn pod_view(&self, pod: &PodRecord) -> Result<PodInspect> {
        let containers = self.pod_containers(pod)?;
        let s = &pod.state;
        Ok(PodInspect {
            id: pod.config.id.clone(),
            name: pod.config.name.clone(),
            created: pod.config.created.clone(),
            state: pod_status(pod, &containers),
            hostname: pod
                .config
                .sandbox
                .hostname
                .clone()
                .unwrap_or_else(|| pod.config.name.clone()),
            labels: pod.config.labels.clone(),
            cpus: pod.config.sandbox.resources.vcpus,
            memory_limit: u64::from(pod.config.sandbox.resources.memory_mib) << 20,
            num_containers: containers.len(),
            containers,
            a3s: PodA3s {
                dir: pod.dir.clone(),
                shim_pid: s.shim_pid,
                vm_pid: s.vm_pid,
                started_at: s.started_at.clone(),
                finished_at: s.finished_at.clone(),
                error: s.error.clone(),
            },
        })
    }

    /// `pod start`: its VM, then every container of it not running.
    pub async fn pod_start(&self, key: &str) -> Result<()> {
        let pod = self.boxes.pods().get(key)?;
        if !shim_alive(&pod.dir) {
            if let Err(failed) = self.boxes.start_pod(&pod).await? {
                return Err(BoxError::Unavailable(format!(
                    "pod {} could not be started: {}",
                    pod.config.name, failed.reason
                )));
            }
        }
        let mut failures = Vec::new();
        for record in self.pod_members(&pod.config.id)? {
            if record.state.status.is_active() {
                continue;
            }
            match self.boxes.start(&record, false).await {
                Ok((Ok(()), _)) => {}
                Ok((Err(failed), _)) => {
                    failures.push(format!("{}: {}", record.config.name, failed.reason))
                }
                Err(e) => failures.push(format!("{}: {e}", record.config.name)),
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(BoxError::Unavailable(format!(
                "pod {} started, but not all of its containers: {}",
                pod.config.name,
                failures.join("; ")
            ))),
        }
    }

    /// `pod stop`: every container (the stop signal, SIGKILL after
    /// `timeout`), then the VM.
    pub async fn pod_stop(&self, key: &str, timeout: Duration) -> Result<()> {
        let pod = self.boxes.pods().get(key)?;
        if !shim_alive(&pod.dir) {
            return Ok(());
        }
        let what = format!("pod {}", pod.config.name);
        if let Ok(mut client) = SandboxClient::connect(&pod.dir, &what).await {
            let stop = Request::Stop {
                container: None,
                timeout_secs: timeout.as_secs(),
            };
            // A supervisor that ended meanwhile has stopped.
            let _ = client.call(stop).await;
        }
        if !supervisor_gone(&pod.dir, timeout + STOP_SLACK).await {
            return Err(BoxError::Unavailable(format!(
                "pod {} did not stop within {}s",
                pod.config.name,
                (timeout + STOP_SLACK).as_secs()
            )));
        }
        Ok(())
    }

    /// `pod rm`: a pod without containers that does not run; with `force`,
    /// its VM is stopped and its containers removed first.
    pub async fn pod_remove(&self, key: &str, force: bool) -> Result<()> {
        let pod = self.boxes.pods().get(key)?;
        let members = self.pod_members(&pod.config.id)?;
        if !force {
            if shim_alive(&pod.dir) {
                return Err(BoxError::Conflict(format!(
                    "pod {} is running: stop it first or use pod rm -f",
                    pod.config.name
                )));
            }
            if !members.is_empty() {
                return Err(BoxError::Conflict(format!(
                    "pod {} has {} container(s): remove them first or use pod rm -f",
                    pod.config.name,
                    members.len()
                )));
            }
        }
        self.pod_stop(key, Duration::ZERO).await?;
        for record in members {
            let opts = RemoveOptions {
                force: true,
                volumes: false,
            };
            match self.remove(&record.config.id, opts).await {
                Ok(()) => {}
                Err(e) if e.kind() == a3s_box_core::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        self.boxes.pods().remove(&pod)?;
        self.pod_event(EventAction::Destroy, &pod);
        Ok(())
    }
}

/// podman's pod status.
fn pod_status(pod: &PodRecord, containers: &[PodContainer]) -> String {
    match pod.state.status {
        BoxStatus::Created => "Created".into(),
        BoxStatus::Running | BoxStatus::Paused | BoxStatus::Restarting => {
            let running = containers
                .iter()
                .filter(|c| c.state == BoxStatus::Running)
                .count();
            match running == containers.len() {
                true => "Running".into(),
                false => "Degraded".into(),
            }
        }
        BoxStatus::Exited | BoxStatus::Dead => "Exited".into(),
    }
}
