//! Atomic JSON files.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use a3s_box_core::{BoxError, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Take flock(2) `arg` on `path` (created if missing).
pub fn lock(path: &Path, arg: FlockArg) -> Result<Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| BoxError::io(format!("open {}", path.display()), e))?;
    Flock::lock(file, arg)
        .map_err(|(_, e)| BoxError::io(format!("lock {}", path.display()), e.into()))
}

/// Write `bytes` to `path` atomically: a temporary file beside it, fsync,
/// rename over `path`, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        BoxError::io(format!("write {}", path.display()), e)
    })
}

/// Serialize `value` as pretty JSON into `path`, atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| {
        BoxError::io(
            format!("encode {}", path.display()),
            std::io::Error::other(e),
        )
    })?;
    write_atomic(path, &bytes)
}

/// Read JSON from `path`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes =
        std::fs::read(path).map_err(|e| BoxError::io(format!("read {}", path.display()), e))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        BoxError::io(
            format!("corrupt {}", path.display()),
            std::io::Error::other(e),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        write_json(&p, &serde_json::json!({"a": 1})).unwrap();
        write_json(&p, &serde_json::json!({"a": 2})).unwrap();
        let v: serde_json::Value = read_json(&p).unwrap();
        assert_eq!(v["a"], 2);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
