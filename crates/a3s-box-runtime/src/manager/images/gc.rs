//! Removing images: `rmi` (untag, and delete when the last name goes) and `image prune`
//! (every blob and rootfs directory no reference reaches). Both run under the exclusive
//! `gc.lock`, so no pull or unpack is half-way through.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::{blob_digest, io_err, ImageError, ImageManager, Result, ROOTFS_DIR};
use crate::image::digest::Digest;
use crate::state::BoxStore;

/// What `rmi` did, in order (Docker prints `Untagged:` and `Deleted:` lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    /// A reference name was removed.
    Untagged(String),
    /// The image's last name went and its content was deleted.
    Deleted(Digest),
}

/// What `image prune` reclaimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs deleted from the store.
    pub blobs: usize,
    /// Unpacked root filesystems deleted.
    pub rootfs_dirs: usize,
    /// Bytes of blobs deleted.
    pub bytes: u64,
}

impl ImageManager {
    /// `rmi`: remove the name (or, for an id, every name) and, once an image has no name
    /// left, its unpacked root and blobs. Refuses when the last name goes while a box uses
    /// the image, unless `force` (then the box keeps its root until `prune`).
    pub fn remove(&self, key: &str, force: bool) -> Result<Vec<Removed>> {
        let _gc = self.lock(true)?;
        let found = self.find(key)?;
        if !found.by_name && found.names.len() > 1 && !force {
            return Err(ImageError::Ambiguous {
                reference: key.to_owned(),
                names: found.names.join(", "),
            });
        }
        let refs = self.store.refs()?;
        let last = refs
            .iter()
            .filter(|(_, d)| **d == found.digest)
            .all(|(n, _)| found.names.contains(n));
        let users = self.boxes_using(&found.digest)?;
        if last && !users.is_empty() && !force {
            return Err(ImageError::InUse {
                reference: key.to_owned(),
                boxes: users.join(", "),
            });
        }
        let mut out = Vec::new();
        for name in &found.names {
            self.store.remove_ref(name)?;
            out.push(Removed::Untagged(name.clone()));
        }
        if last {
            if users.is_empty() {
                remove_tree(&self.rootfs_dir(&found.digest))?;
            }
            self.collect_blobs()?;
            out.push(Removed::Deleted(found.digest));
        }
        Ok(out)
    }

    /// `image prune`: delete blobs and root filesystems that no reference reaches (root
    /// filesystems that a box still boots from are kept), and leftovers of failed work.
    pub fn prune(&self) -> Result<PruneReport> {
        let _gc = self.lock(true)?;
        let mut report = self.collect_blobs()?;
        let live: BTreeSet<String> = self
            .store
            .refs()?
            .values()
            .map(|d| d.hex().to_owned())
            .collect();
        let used = self.used_rootfs_dirs()?;
        let dir = self.root.join(ROOTFS_DIR);
        for entry in fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') {
                // Lock files and unpack/delete leftovers: nothing works on them now.
                if path.is_dir() {
                    remove_tree(&path)?;
                } else {
                    fs::remove_file(&path).map_err(io_err("remove", &path))?;
                }
            } else if !live.contains(&name)
                && !used.contains(&fs::canonicalize(&path).unwrap_or_else(|_| path.clone()))
            {
                remove_tree(&path)?;
                report.rootfs_dirs += 1;
            }
        }
        Ok(report)
    }

    /// Delete every blob (and temp file) that no reference reaches.
    fn collect_blobs(&self) -> Result<PruneReport> {
        let mut keep = BTreeSet::new();
        for digest in self.store.refs()?.values() {
            keep.insert(digest.hex().to_owned());
            if let Ok(m) = self.manifest(digest) {
                keep.insert(
                    blob_digest(m.config().digest().as_ref(), digest)?
                        .hex()
                        .to_owned(),
                );
                for layer in m.layers() {
                    keep.insert(
                        blob_digest(layer.digest().as_ref(), digest)?
                            .hex()
                            .to_owned(),
                    );
                }
            }
        }
        let mut report = PruneReport::default();
        let blobs = self.store.root().join("blobs/sha256");
        for entry in fs::read_dir(&blobs).map_err(io_err("read", &blobs))? {
            let entry = entry.map_err(io_err("read", &blobs))?;
            if keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            let path = entry.path();
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            report.blobs += 1;
            report.bytes += size;
        }
        let tmp = self.store.root().join("tmp");
        if let Ok(entries) = fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(report)
    }

    /// Boxes (names) whose root filesystem is this image's unpacked directory.
    fn boxes_using(&self, digest: &Digest) -> Result<Vec<String>> {
        let dir = self.rootfs_dir(digest);
        let dir = fs::canonicalize(&dir).unwrap_or(dir);
        Ok(self
            .box_roots()?
            .into_iter()
            .filter(|(_, root)| *root == dir)
            .map(|(name, _)| name)
            .collect())
    }

    fn used_rootfs_dirs(&self) -> Result<BTreeSet<PathBuf>> {
        Ok(self.box_roots()?.into_iter().map(|(_, r)| r).collect())
    }

    fn box_roots(&self) -> Result<Vec<(String, PathBuf)>> {
        let records = BoxStore::new(&self.home)
            .list()
            .map_err(|source| ImageError::Boxes { source })?;
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let root = crate::manager::lower::run_options(&r.config.spec, &self.home)
                    .ok()?
                    .rootfs_dir;
                let root = fs::canonicalize(&root).unwrap_or(root);
                Some((r.config.name, root))
            })
            .collect())
    }
}

/// Remove a directory tree that may hold read-only directories: it is first renamed
/// aside (so nobody sees it half-deleted), then deleted, making directories writable
/// where deletion needs it.
fn remove_tree(path: &Path) -> Result<()> {
    if fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let aside = if name.starts_with('.') {
        path.to_owned()
    } else {
        let aside = path.with_file_name(format!(".{name}.deleting-{}", std::process::id()));
        fs::rename(path, &aside).map_err(io_err("rename", path))?;
        aside
    };
    if fs::remove_dir_all(&aside).is_ok() {
        return Ok(());
    }
    make_writable(&aside).map_err(io_err("chmod", &aside))?;
    fs::remove_dir_all(&aside).map_err(io_err("remove", &aside))
}

fn make_writable(dir: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Ok(());
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode | 0o700))?;
    }
    for entry in fs::read_dir(dir)? {
        make_writable(&entry?.path())?;
    }
    Ok(())
}
