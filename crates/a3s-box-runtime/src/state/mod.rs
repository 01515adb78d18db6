//! The one store of box state: `$A3S_HOME/boxes/<id12>/`.
//!
//! Each box directory holds `config.json` (what the user asked for; written
//! once) and `state.json` (where the box is; rewritten as it moves). Every
//! write is atomic (temporary file, fsync, rename, fsync of the directory)
//! and made under the box's lock, so a crash at any point leaves the old or
//! the new state. The supervising shim holds `shim.lock` for as long as it
//! lives; a box that says it is active while nobody holds that lock lost its
//! shim, and is reconciled to `exited` by whoever reads it next.

pub mod events;
mod files;
pub mod follow;
mod hold;
mod legacy;
pub mod log;
pub(crate) mod names;
pub(crate) mod records;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use a3s_box_core::status::{BoxStatus, RestartPolicy};
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

pub use files::{read_json, write_atomic, write_json};
pub use hold::{hold, wait_unheld, Hold};

use a3s_box_core::spec::{BoxSpec, ContainerSpec};

use crate::home::Home;

/// A box's configuration file in its directory.
pub const CONFIG_FILE: &str = "config.json";
const STATE_FILE: &str = "state.json";
const BOX_LOCK: &str = "box.lock";
/// Held by the shim for its whole life.
pub const SHIM_LOCK: &str = "shim.lock";
/// The workload's output, one JSON object per line.
pub const LOG_FILE: &str = "log.jsonl";
const STORE_LOCK: &str = ".store.lock";

/// What the user asked for, resolved; fixed at create time (rename aside).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "legacy::AnyConfig")]
pub struct BoxConfig {
    /// 64-hex id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// The box, resolved by the engine: the image's digest, its merged
    /// process, named volumes and canonical bind sources.
    pub spec: BoxSpec,
}

impl TryFrom<legacy::AnyConfig> for BoxConfig {
    type Error = String;

    fn try_from(any: legacy::AnyConfig) -> std::result::Result<Self, String> {
        let (id, name, created) = (any.id.clone(), any.name.clone(), any.created.clone());
        let spec = any
            .into_spec()
            .ok_or_else(|| "neither a spec nor run options".to_string())?;
        if spec.containers.is_empty() {
            return Err("a box spec without containers".into());
        }
        Ok(BoxConfig {
            id,
            name,
            created,
            spec,
        })
    }
}

impl BoxConfig {
    /// The box's container (a standalone box has exactly one).
    pub fn container(&self) -> &ContainerSpec {
        &self.spec.containers[0]
    }

    /// Its labels.
    pub fn labels(&self) -> &BTreeMap<String, String> {
        &self.container().labels
    }

    /// Its restart policy.
    pub fn restart(&self) -> RestartPolicy {
        self.container().restart
    }

    /// Removed when it exits (`--rm`).
    pub fn auto_remove(&self) -> bool {
        self.container().auto_remove
    }
}

/// Where the box is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BoxState {
    /// Status.
    pub status: BoxStatus,
    /// PID of the shim supervising it.
    pub shim_pid: Option<u32>,
    /// PID of QEMU.
    pub vm_pid: Option<u32>,
    /// When the workload last started.
    pub started_at: Option<String>,
    /// When it last ended.
    pub finished_at: Option<String>,
    /// Its last exit code.
    pub exit_code: Option<i32>,
    /// Why it ended, when not by itself.
    pub error: Option<String>,
    /// Restarts made by the restart policy.
    #[serde(default)]
    pub restart_count: u32,
    /// The user stopped it (restart policies then leave it alone).
    #[serde(default)]
    pub stopped_by_user: bool,
    /// Accelerator it runs with and why.
    #[serde(default)]
    pub accelerator: Option<String>,
}

impl BoxState {
    fn created() -> Self {
        BoxState {
            status: BoxStatus::Created,
            shim_pid: None,
            vm_pid: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            restart_count: 0,
            stopped_by_user: false,
            accelerator: None,
        }
    }
}

/// A box as read from the store.
#[derive(Debug, Clone)]
pub struct BoxRecord {
    /// Its directory.
    pub dir: PathBuf,
    /// Config.
    pub config: BoxConfig,
    /// State (reconciled).
    pub state: BoxState,
}

impl BoxRecord {
    /// The 12-hex short id.
    pub fn short_id(&self) -> &str {
        &self.config.id[..12]
    }
}

/// The store.
#[derive(Debug, Clone)]
pub struct BoxStore {
    boxes: PathBuf,
}

use files::lock;
pub(crate) use files::lock as lock_file;

/// The one of `all` whose full id or name is `key`, else the one whose id
/// starts with `key` (hex digits only); `what` names the kind ("box",
/// "pod") in the errors. `id_name` gives an item's id and name.
pub(crate) fn find_by_key<'a, T>(
    all: &'a [T],
    key: &str,
    what: &'static str,
    id_name: impl Fn(&T) -> (&str, &str),
) -> Result<&'a T> {
    if let Some(exact) = all.iter().find(|t| {
        let (id, name) = id_name(t);
        id == key || name == key
    }) {
        return Ok(exact);
    }
    let hex = !key.is_empty() && key.bytes().all(|b| b.is_ascii_hexdigit());
    let matches: Vec<&T> = all
        .iter()
        .filter(|t| hex && id_name(t).0.starts_with(key))
        .collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(BoxError::not_found(what, key)),
        many => Err(BoxError::Invalid(format!(
            "{what} id prefix {key:?} is ambiguous: it matches {}",
            many.iter()
                .map(|t| &id_name(t).0[..12.min(id_name(t).0.len())])
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Whether a shim holds `dir`'s shim lock.
pub fn shim_alive(dir: &Path) -> bool {
    match File::open(dir.join(SHIM_LOCK)) {
        Ok(file) => Flock::lock(file, FlockArg::LockSharedNonblock).is_err(),
        Err(_) => false,
    }
}

impl BoxStore {
    /// The store of `home`.
    pub fn new(home: &Home) -> Self {
        BoxStore {
            boxes: home.boxes_dir(),
        }
    }

    /// The store that holds the box directory `box_dir`.
    pub fn of_box_dir(box_dir: &Path) -> Result<(Self, Home)> {
        let not_a_box =
            || BoxError::Invalid(format!("{} is not a box directory", box_dir.display()));
        let boxes = box_dir.parent().ok_or_else(not_a_box)?;
        let home = boxes.parent().ok_or_else(not_a_box)?;
        Ok((
            BoxStore {
                boxes: boxes.to_path_buf(),
            },
            Home::at(home),
        ))
    }

    /// Read one box directory.
    pub fn load_dir(&self, dir: &Path) -> Result<BoxRecord> {
        self.load(dir)
    }

    /// Directory of all boxes.
    pub fn dir(&self) -> &Path {
        &self.boxes
    }

    fn store_lock(&self) -> Result<Flock<File>> {
        std::fs::create_dir_all(&self.boxes)
            .map_err(|e| BoxError::io(format!("create {}", self.boxes.display()), e))?;
        lock(&self.boxes.join(STORE_LOCK), FlockArg::LockExclusive)
    }

    /// Record a new box. The name must be unique (one is made up when
    /// `name` is `None`). Nothing is left behind on failure.
    pub fn create(&self, id: String, name: Option<String>, mut spec: BoxSpec) -> Result<BoxRecord> {
        if let Some(n) = &name {
            names::validate(n)?;
        }
        if spec.containers.len() != 1 {
            return Err(BoxError::Invalid(format!(
                "a box has one container, not {}",
                spec.containers.len()
            )));
        }
        let _guard = self.store_lock()?;
        self.remove_leftovers();
        let taken: Vec<String> = self
            .list_unlocked()?
            .into_iter()
            .map(|r| r.config.name)
            .collect();
        let name = match name {
            Some(n) if taken.contains(&n) => {
                return Err(BoxError::Conflict(format!(
                "the name {n:?} is already in use by another box: remove it or choose another name"
            )))
            }
            Some(n) => n,
            None => names::generate(&id, &taken),
        };
        spec.containers[0].name = Some(name.clone());
        let config = BoxConfig {
            name,
            created: now_rfc3339(),
            spec,
            id,
        };
        let dir = records::create(&self.boxes, &config.id[..12], |tmp| {
            files::write_json(&tmp.join(CONFIG_FILE), &config)?;
            files::write_json(&tmp.join(STATE_FILE), &BoxState::created())
        })?;
        Ok(BoxRecord {
            dir,
            config,
            state: BoxState::created(),
        })
    }

    /// Directories of creates or removes that were interrupted (the store
    /// lock is held, so none is in progress).
    fn remove_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.boxes) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".new-") || name.starts_with(".rm-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }

    fn list_unlocked(&self) -> Result<Vec<BoxRecord>> {
        // Foreground runs being made (`.run-`) are hidden too.
        let mut records = records::list(&self.boxes, CONFIG_FILE, "box", |dir| self.load(dir))?;
        records.sort_by(|a, b| b.config.created.cmp(&a.config.created));
        Ok(records)
    }

    /// Every box, newest first, reconciled.
    pub fn list(&self) -> Result<Vec<BoxRecord>> {
        self.list_unlocked()
    }

    fn load(&self, dir: &Path) -> Result<BoxRecord> {
        let config: BoxConfig = files::read_json(&dir.join(CONFIG_FILE))?;
        let mut state: BoxState = files::read_json(&dir.join(STATE_FILE))?;
        if state.status.is_active() && !shim_alive(dir) {
            state = self.reconcile(dir)?;
        }
        Ok(BoxRecord {
            dir: dir.to_path_buf(),
            config,
            state,
        })
    }

    /// An active box whose shim is gone: record it as exited.
    fn reconcile(&self, dir: &Path) -> Result<BoxState> {
        self.update_dir(dir, |s| {
            if s.status.is_active() && !shim_alive(dir) {
                s.status = BoxStatus::Exited;
                s.finished_at.get_or_insert_with(now_rfc3339);
                s.exit_code.get_or_insert(crate::manager::EXIT_KILLED);
                s.error.get_or_insert_with(|| {
                    "the box's supervisor (shim) died; the VM went with it".to_string()
                });
                s.shim_pid = None;
                s.vm_pid = None;
            }
        })
    }

    /// Find a box by full id, unique id prefix, or name.
    pub fn get(&self, key: &str) -> Result<BoxRecord> {
        let all = self.list_unlocked()?;
        find_by_key(&all, key, "box", |r| (&r.config.id, &r.config.name)).cloned()
    }

    /// Read-modify-write a box's state under its lock.
    pub fn update_dir(&self, dir: &Path, f: impl FnOnce(&mut BoxState)) -> Result<BoxState> {
        records::update(&dir.join(BOX_LOCK), &dir.join(STATE_FILE), f)
    }

    /// Give a box a new, unused name.
    pub fn rename(&self, record: &BoxRecord, new_name: &str) -> Result<()> {
        names::validate(new_name)?;
        let _guard = self.store_lock()?;
        if self
            .list_unlocked()?
            .iter()
            .any(|r| r.config.name == new_name)
        {
            return Err(BoxError::Conflict(format!(
                "the name {new_name:?} is already in use by another box"
            )));
        }
        let _box = lock(&record.dir.join(BOX_LOCK), FlockArg::LockExclusive)?;
        let mut config: BoxConfig = files::read_json(&record.dir.join(CONFIG_FILE))?;
        config.name = new_name.to_string();
        config.spec.containers[0].name = Some(new_name.to_string());
        files::write_json(&record.dir.join(CONFIG_FILE), &config)
    }

    /// Read-modify-write a box's spec under its lock (`network connect`).
    pub fn update_spec(
        &self,
        record: &BoxRecord,
        f: impl FnOnce(&mut BoxSpec) -> Result<()>,
    ) -> Result<()> {
        let _box = lock(&record.dir.join(BOX_LOCK), FlockArg::LockExclusive)?;
        let mut config: BoxConfig = files::read_json(&record.dir.join(CONFIG_FILE))?;
        f(&mut config.spec)?;
        files::write_json(&record.dir.join(CONFIG_FILE), &config)
    }

    /// Remove a box's directory (the caller has made sure nothing runs).
    pub fn remove(&self, record: &BoxRecord) -> Result<()> {
        let _guard = self.store_lock()?;
        let tomb = self.boxes.join(format!(".rm-{}", record.short_id()));
        std::fs::rename(&record.dir, &tomb)
            .map_err(|e| BoxError::io(format!("remove {}", record.dir.display()), e))?;
        std::fs::remove_dir_all(&tomb)
            .map_err(|e| BoxError::io(format!("remove {}", tomb.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(store: &BoxStore, id: &str, name: Option<&str>) -> Result<BoxRecord> {
        use a3s_box_core::spec::{ProcessSpec, RootSource};
        let container = ContainerSpec::new(
            RootSource::Dir { path: "/r".into() },
            ProcessSpec {
                args: vec!["true".into()],
                ..ProcessSpec::default()
            },
        );
        store.create(
            id.repeat(64 / id.len()),
            name.map(String::from),
            BoxSpec::single(container),
        )
    }

    #[test]
    fn ids_names_and_prefixes_resolve_or_fail_clearly() {
        let home = tempfile::tempdir().unwrap();
        let store = BoxStore::new(&Home::at(home.path()));
        let a = create(&store, "ab12", Some("web")).unwrap();
        let b = create(&store, "ab34", None).unwrap();
        assert_eq!(store.get("web").unwrap().config.id, a.config.id);
        assert_eq!(store.get(&b.config.name).unwrap().config.id, b.config.id);
        assert_eq!(store.get("ab12").unwrap().config.id, a.config.id);
        let err = store.get("ab").unwrap_err().to_string();
        assert!(
            err.contains("ambiguous")
                && err.contains("ab12ab12ab12")
                && err.contains("ab34ab34ab34"),
            "{err}"
        );
        assert!(store
            .get("ffff")
            .unwrap_err()
            .to_string()
            .contains("no such box"));
        let dup = create(&store, "cd56", Some("web")).unwrap_err().to_string();
        assert!(dup.contains("already in use"), "{dup}");
        assert_eq!(
            store.list().unwrap().len(),
            2,
            "a refused create leaves nothing"
        );
        assert!(create(&store, "ef78", Some("bad name")).is_err());
        // A box being removed (renamed to its tomb first) is gone at once,
        // even while its files are still being deleted.
        let tomb = home.path().join("boxes").join(".rm-ab34ab34ab34");
        std::fs::rename(&b.dir, tomb).unwrap();
        assert!(store.get(&b.config.name).is_err());
        assert_eq!(store.list().unwrap().len(), 1);
    }

    #[test]
    fn state_updates_are_atomic_and_reconciled_without_a_shim() {
        let home = tempfile::tempdir().unwrap();
        let store = BoxStore::new(&Home::at(home.path()));
        let r = create(&store, "0123", Some("x")).unwrap();
        store
            .update_dir(&r.dir, |s| {
                s.status = BoxStatus::Running;
                s.shim_pid = Some(1);
            })
            .unwrap();
        // Nobody holds the shim lock: the next read records the box as exited.
        let r = store.get("x").unwrap();
        assert_eq!(r.state.status, BoxStatus::Exited);
        assert!(r.state.error.as_deref().unwrap().contains("shim"));
        let leftovers: Vec<_> = std::fs::read_dir(&r.dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
        store.remove(&r).unwrap();
        assert!(store.list().unwrap().is_empty());
    }
}
