//! The pod store: `$A3S_HOME/pods/<id12>/`.
//!
//! A pod directory holds `pod.json` (what was asked: name, labels, the
//! sandbox spec; written once) and `state.json` (where it is), its shim's
//! lock, its sandbox socket, its VM's files, and `rw.img`, the disk that
//! holds its containers' writable layers. Its containers are boxes of the
//! box store whose spec names the pod. Writes are atomic and made under
//! the pod's lock, as for boxes; a pod that says it runs while nobody holds
//! its shim lock lost its shim, and is reconciled to `exited` by whoever
//! reads it next.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use a3s_box_core::spec::{rules, SandboxSpec};
use a3s_box_core::status::BoxStatus;
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::FlockArg;
use serde::{Deserialize, Serialize};

use crate::home::Home;
use crate::state::{find_by_key, lock_file as lock, read_json, records, shim_alive, write_json};

/// A pod's configuration file in its directory.
pub const POD_FILE: &str = "pod.json";
const STATE_FILE: &str = "state.json";
const POD_LOCK: &str = "pod.lock";
const STORE_LOCK: &str = ".store.lock";

/// What the user asked for; fixed at create time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodConfig {
    /// 64-hex id.
    pub id: String,
    /// Unique name among pods.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Its VM: resources, hostname, network.
    pub sandbox: SandboxSpec,
}

/// Where the pod is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodState {
    /// `created`, `running` or `exited`.
    pub status: BoxStatus,
    /// Its shim's pid.
    pub shim_pid: Option<u32>,
    /// Its VM's pid.
    pub vm_pid: Option<u32>,
    /// When its VM last started.
    pub started_at: Option<String>,
    /// When it last stopped.
    pub finished_at: Option<String>,
    /// Why it stopped, when not because it was asked to.
    pub error: Option<String>,
}

impl PodState {
    fn created() -> Self {
        PodState {
            status: BoxStatus::Created,
            shim_pid: None,
            vm_pid: None,
            started_at: None,
            finished_at: None,
            error: None,
        }
    }
}

/// A pod as read from the store.
#[derive(Debug, Clone)]
pub struct PodRecord {
    /// Its directory.
    pub dir: PathBuf,
    /// Config.
    pub config: PodConfig,
    /// State (reconciled).
    pub state: PodState,
}

impl PodRecord {
    /// The 12-hex short id.
    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }
}

/// The pods of one home.
#[derive(Debug, Clone)]
pub struct PodStore {
    pods: PathBuf,
}

impl PodStore {
    /// The pods of `home`.
    pub fn new(home: &Home) -> Self {
        PodStore {
            pods: home.root().join("pods"),
        }
    }

    /// The store holding the pod directory `dir`, and its home.
    pub fn of_pod_dir(dir: &Path) -> Result<(Self, Home)> {
        let not_a_pod = || BoxError::Invalid(format!("{} is not a pod directory", dir.display()));
        let pods = dir.parent().ok_or_else(not_a_pod)?;
        let home = pods.parent().ok_or_else(not_a_pod)?;
        Ok((
            PodStore {
                pods: pods.to_path_buf(),
            },
            Home::at(home),
        ))
    }

    /// Whether `dir` is a pod's directory.
    pub fn is_pod_dir(dir: &Path) -> bool {
        dir.join(POD_FILE).is_file()
    }

    /// Record a new pod (not started); a name is made up when `None`.
    pub fn create(
        &self,
        id: String,
        name: Option<String>,
        labels: BTreeMap<String, String>,
        sandbox: SandboxSpec,
    ) -> Result<PodRecord> {
        if let Some(n) = &name {
            rules::check_name("--name", "pod", n).map_err(|e| BoxError::Invalid(e.to_string()))?;
        }
        std::fs::create_dir_all(&self.pods)
            .map_err(|e| BoxError::io(format!("create {}", self.pods.display()), e))?;
        let _guard = lock(&self.pods.join(STORE_LOCK), FlockArg::LockExclusive)?;
        let taken: Vec<String> = self.list()?.into_iter().map(|p| p.config.name).collect();
        let name = match name {
            Some(n) if taken.contains(&n) => {
                return Err(BoxError::Conflict(format!(
                    "the pod name {n:?} is already in use: remove that pod or choose another name"
                )))
            }
            Some(n) => n,
            None => crate::state::names::generate(&id, &taken),
        };
        let config = PodConfig {
            created: now_rfc3339(),
            id,
            name,
            labels,
            sandbox,
        };
        let dir = records::create(&self.pods, &config.id[..12], |tmp| {
            write_json(&tmp.join(POD_FILE), &config)?;
            write_json(&tmp.join(STATE_FILE), &PodState::created())
        })?;
        Ok(PodRecord {
            dir,
            config,
            state: PodState::created(),
        })
    }

    /// Every pod, newest first, reconciled.
    pub fn list(&self) -> Result<Vec<PodRecord>> {
        let mut pods = records::list(&self.pods, POD_FILE, "pod", |dir| self.load_dir(dir))?;
        pods.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(pods)
    }

    /// Read one pod directory (reconciled).
    pub fn load_dir(&self, dir: &Path) -> Result<PodRecord> {
        let config: PodConfig = read_json(&dir.join(POD_FILE))?;
        let mut state: PodState = read_json(&dir.join(STATE_FILE))?;
        if state.status.is_active() && !shim_alive(dir) {
            state = self.update_dir(dir, |s| {
                if s.status.is_active() && !shim_alive(dir) {
                    s.status = BoxStatus::Exited;
                    s.finished_at.get_or_insert_with(now_rfc3339);
                    s.error.get_or_insert_with(|| {
                        "the pod's supervisor (shim) died; the VM went with it".to_string()
                    });
                    s.shim_pid = None;
                    s.vm_pid = None;
                }
            })?;
        }
        Ok(PodRecord {
            dir: dir.to_path_buf(),
            config,
            state,
        })
    }

    /// Find a pod by id, unique id prefix, or name.
    pub fn get(&self, key: &str) -> Result<PodRecord> {
        let all = self.list()?;
        find_by_key(&all, key, "pod", |p| (&p.config.id, &p.config.name)).cloned()
    }

    /// Read-modify-write a pod's state under its lock.
    pub fn update_dir(&self, dir: &Path, f: impl FnOnce(&mut PodState)) -> Result<PodState> {
        records::update(&dir.join(POD_LOCK), &dir.join(STATE_FILE), f)
    }

    /// Remove a pod's directory (the caller made sure nothing runs).
    pub fn remove(&self, record: &PodRecord) -> Result<()> {
        let _guard = lock(&self.pods.join(STORE_LOCK), FlockArg::LockExclusive)?;
        let tomb = self.pods.join(format!(".rm-{}", record.short_id()));
        std::fs::rename(&record.dir, &tomb)
            .map_err(|e| BoxError::io(format!("remove {}", record.dir.display()), e))?;
        std::fs::remove_dir_all(&tomb)
            .map_err(|e| BoxError::io(format!("remove {}", tomb.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_created_found_reconciled_and_removed() {
        let home = tempfile::tempdir().unwrap();
        let store = PodStore::new(&Home::at(home.path()));
        let a = store
            .create(
                "ab".repeat(32),
                Some("web".into()),
                BTreeMap::new(),
                SandboxSpec::default(),
            )
            .unwrap();
        let b = store
            .create(
                "cd".repeat(32),
                None,
                BTreeMap::new(),
                SandboxSpec::default(),
            )
            .unwrap();
        assert!(!b.config.name.is_empty());
        assert_eq!(store.get("web").unwrap().config.id, a.config.id);
        assert_eq!(store.get("cdcd").unwrap().config.id, b.config.id);
        assert_eq!(
            store.get("nope").unwrap_err().kind(),
            a3s_box_core::ErrorKind::NotFound
        );
        let dup = store
            .create(
                "ef".repeat(32),
                Some("web".into()),
                BTreeMap::new(),
                SandboxSpec::default(),
            )
            .unwrap_err();
        assert_eq!(dup.kind(), a3s_box_core::ErrorKind::Conflict);
        // Running with nobody holding its shim lock: reconciled on read.
        store
            .update_dir(&a.dir, |s| s.status = BoxStatus::Running)
            .unwrap();
        let a = store.get("web").unwrap();
        assert_eq!(a.state.status, BoxStatus::Exited);
        assert!(a.state.error.as_deref().unwrap().contains("shim"));
        store.remove(&a).unwrap();
        assert_eq!(store.list().unwrap().len(), 1);
    }
}
