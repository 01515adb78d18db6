//! Named volumes: `$A3S_HOME/volumes/<name>/_data`, shared into boxes over
//! virtio-fs (several boxes at once), kept when boxes are removed.
//!
//! `<name>/volume.json` records when and how the volume was made; its
//! presence means the volume exists (written atomically after `_data`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use a3s_box_core::time::now_rfc3339;
use serde::{Deserialize, Serialize};

use super::StorageError;
use crate::home::Home;
use crate::state::{write_atomic, BoxStore};

const VOLUMES_DIR: &str = "volumes";
const DATA_DIR: &str = "_data";
const META_FILE: &str = "volume.json";

/// One volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// When it was created (RFC 3339).
    pub created: String,
    /// Made up for one box (`-v /path`, an image `VOLUME`).
    #[serde(default)]
    pub anonymous: bool,
    /// Labels (`volume create --label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The directory the boxes see (filled in when read).
    #[serde(skip_deserializing, default)]
    pub mountpoint: PathBuf,
}

/// Letters, digits and `._-`, starting with a letter or digit (Docker's rule).
pub fn validate_name(name: &str) -> Result<(), StorageError> {
    let ok = name.len() <= 255
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(StorageError::BadVolumeName {
            name: name.to_string(),
        })
    }
}

/// The volumes of one home.
#[derive(Debug, Clone)]
pub struct VolumeStore {
    root: PathBuf,
    boxes: BoxStore,
}

impl VolumeStore {
    /// The volumes under `home`.
    pub fn new(home: &Home) -> Self {
        VolumeStore {
            root: home.root().join(VOLUMES_DIR),
            boxes: BoxStore::new(home),
        }
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The volume `name`, created when missing (an existing one is returned
    /// as it is, as Docker does).
    pub fn ensure(
        &self,
        name: &str,
        anonymous: bool,
        labels: BTreeMap<String, String>,
    ) -> Result<Volume, StorageError> {
        validate_name(name)?;
        if let Ok(existing) = self.get(name) {
            return Ok(existing);
        }
        let dir = self.dir(name);
        let data = dir.join(DATA_DIR);
        std::fs::create_dir_all(&data).map_err(StorageError::io("create", &data))?;
        let volume = Volume {
            name: name.to_string(),
            created: now_rfc3339(),
            anonymous,
            labels,
            mountpoint: data,
        };
        let bytes = serde_json::to_vec_pretty(&volume).map_err(|e| StorageError::Io {
            op: "encode",
            path: dir.join(META_FILE),
            source: e.into(),
        })?;
        write_atomic(&dir.join(META_FILE), &bytes).map_err(|e| StorageError::Io {
            op: "write",
            path: dir.join(META_FILE),
            source: std::io::Error::other(e.to_string()),
        })?;
        Ok(volume)
    }

    /// The volume `name`.
    pub fn get(&self, name: &str) -> Result<Volume, StorageError> {
        validate_name(name)?;
        let dir = self.dir(name);
        let missing = || StorageError::NoSuchVolume {
            name: name.to_string(),
        };
        let bytes = std::fs::read(dir.join(META_FILE)).map_err(|_| missing())?;
        let mut volume: Volume = serde_json::from_slice(&bytes).map_err(|_| missing())?;
        volume.mountpoint = dir.join(DATA_DIR);
        Ok(volume)
    }

    /// Every volume, by name.
    pub fn list(&self) -> Result<Vec<Volume>, StorageError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::io("read", &self.root)(e)),
        };
        let mut all: Vec<Volume> = entries
            .flatten()
            .filter_map(|e| self.get(&e.file_name().to_string_lossy()).ok())
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    /// Names of the boxes (any state) whose mounts use volume `name`.
    pub fn users(&self, name: &str) -> Vec<String> {
        self.boxes
            .list()
            .unwrap_or_default()
            .into_iter()
            .filter(|r| {
                r.config.spec.containers.iter().any(|c| {
                    c.storage.mounts.iter().any(|m| {
                        matches!(m, a3s_box_core::spec::Mount::Volume { name: Some(n), .. } if n == name)
                    })
                })
            })
            .map(|r| r.config.name)
            .collect()
    }

    /// Remove volume `name` and its data; refused while a box uses it
    /// unless `force`.
    pub fn remove(&self, name: &str, force: bool) -> Result<(), StorageError> {
        self.get(name)?;
        let users = self.users(name);
        if !users.is_empty() && !force {
            return Err(StorageError::VolumeInUse {
                name: name.to_string(),
                boxes: users.join(", "),
            });
        }
        let dir = self.dir(name);
        let tomb = self.root.join(format!(".rm-{name}"));
        std::fs::rename(&dir, &tomb).map_err(StorageError::io("remove", &dir))?;
        std::fs::remove_dir_all(&tomb).map_err(StorageError::io("remove", &tomb))
    }

    /// Remove volumes no box uses (all, or only anonymous ones when
    /// `anonymous_only`); the names removed.
    pub fn prune(&self, anonymous_only: bool) -> Result<Vec<String>, StorageError> {
        let mut removed = Vec::new();
        for v in self.list()? {
            if (v.anonymous || !anonymous_only) && self.users(&v.name).is_empty() {
                self.remove(&v.name, false)?;
                removed.push(v.name);
            }
        }
        Ok(removed)
    }

    /// Bytes the volume's files occupy on disk.
    pub fn size(&self, volume: &Volume) -> u64 {
        tree_bytes(&volume.mountpoint)
    }
}

/// Allocated bytes of a tree (not following symlinks).
pub fn tree_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            if let Ok(m) = entry.metadata() {
                total += m.blocks() * 512;
                if m.is_dir() {
                    stack.push(entry.path());
                }
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_are_created_once_listed_and_removed() {
        let home = tempfile::tempdir().unwrap();
        let store = VolumeStore::new(&Home::at(home.path()));
        let v = store.ensure("data", false, BTreeMap::new()).unwrap();
        assert!(v.mountpoint.is_dir());
        std::fs::write(v.mountpoint.join("f"), "x").unwrap();
        let again = store.ensure("data", true, BTreeMap::new()).unwrap();
        assert_eq!(again.created, v.created);
        assert!(!again.anonymous, "an existing volume is kept as it is");
        store.ensure("anon1", true, BTreeMap::new()).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|v| v.name).collect();
        assert_eq!(names, ["anon1", "data"]);
        assert!(store.size(&v) > 0);
        assert_eq!(store.prune(true).unwrap(), ["anon1"]);
        store.remove("data", false).unwrap();
        assert!(store.list().unwrap().is_empty());
        assert!(matches!(
            store.remove("data", false),
            Err(StorageError::NoSuchVolume { .. })
        ));
        for bad in ["", "-x", "a/b", "..", "a b"] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }
}
