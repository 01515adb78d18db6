//! What every store of record directories (boxes, pods) does the same
//! way: a new record is built under `.new-<id12>` and renamed in whole;
//! its state is read-modified-written under its lock; a listing skips the
//! store's hidden entries and the records removed by someone else meanwhile.

use std::path::{Path, PathBuf};

use a3s_box_core::{BoxError, Result};
use nix::fcntl::FlockArg;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::files::{lock, read_json, write_json};

/// Make the record directory `parent/<short>`: `fill` writes its files
/// into a hidden directory, which is then renamed in. On failure nothing
/// is left (a killed process leaves a `.new-` directory, which the store
/// removes later).
pub(crate) fn create(
    parent: &Path,
    short: &str,
    fill: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let dir = parent.join(short);
    let tmp = parent.join(format!(".new-{short}"));
    let made = std::fs::create_dir_all(&tmp)
        .map_err(|e| BoxError::io(format!("create {}", tmp.display()), e))
        .and_then(|()| fill(&tmp))
        .and_then(|()| {
            std::fs::rename(&tmp, &dir)
                .map_err(|e| BoxError::io(format!("create {}", dir.display()), e))
        });
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    Ok(dir)
}

/// Read-modify-write the JSON file `file` under the flock `lock_path`.
pub(crate) fn update<T: Serialize + DeserializeOwned>(
    lock_path: &Path,
    file: &Path,
    f: impl FnOnce(&mut T),
) -> Result<T> {
    let _guard = lock(lock_path, FlockArg::LockExclusive)?;
    let mut value: T = read_json(file)?;
    f(&mut value);
    write_json(file, &value)?;
    Ok(value)
}

/// The records under `parent` (directories holding `marker`), each read
/// by `load`. Hidden entries are the store's own (its lock, records being
/// made or removed) and skipped; a record removed between the listing and
/// the read is skipped silently, an unreadable one with a warning naming
/// `what`. A missing `parent` has no records.
pub(crate) fn list<T>(
    parent: &Path,
    marker: &str,
    what: &str,
    load: impl Fn(&Path) -> Result<T>,
) -> Result<Vec<T>> {
    let entries = match std::fs::read_dir(parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BoxError::io(format!("read {}", parent.display()), e)),
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let dir = entry.path();
        if entry.file_name().as_encoded_bytes().starts_with(b".") || !dir.join(marker).is_file() {
            continue; // the store's own, a foreground run's scratch, or debris
        }
        match load(&dir) {
            Ok(r) => records.push(r),
            // Removed by someone else meanwhile (renamed to its tomb).
            Err(_) if !dir.join(marker).is_file() => {}
            Err(e) => tracing::warn!(dir = %dir.display(), "unreadable {what}: {e}"),
        }
    }
    Ok(records)
}
