//! The content-addressed image store shared by every box.
//!
//! Layout under the root (OCI image-layout style):
//!
//! ```text
//! blobs/sha256/<hex>   every manifest, config and layer, named by its digest
//! tmp/                 blobs being written (renamed into blobs/ once verified)
//! refs.json            reference index: "registry/repo:tag" -> manifest digest
//! refs.lock            flock(2) taken while refs.json is rewritten
//! ```
//!
//! Blobs are written to a temp file while they are hashed and renamed into place only
//! when digest and size both match, so a reader never sees a partial blob and a corrupt
//! download leaves nothing behind. Two processes writing the same blob both rename an
//! identical file over the same name, which is harmless. The reference index is replaced
//! atomically (temp file, fsync, rename) under an exclusive lock so concurrent updates from
//! several processes are serialised and none is lost.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use super::digest::Digest;

const BLOBS_DIR: &str = "blobs/sha256";
const TMP_DIR: &str = "tmp";
const REFS_FILE: &str = "refs.json";
const REFS_LOCK: &str = "refs.lock";

/// Errors from the image store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A filesystem operation failed.
    #[error("image store: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// The bytes written do not hash to the expected digest.
    #[error("blob digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// More or fewer bytes than the descriptor announced.
    #[error("blob {digest} size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    /// The blob is not in the store.
    #[error("blob {digest} not found in the image store")]
    BlobNotFound { digest: Digest },
    /// The reference index is not valid JSON.
    #[error("image store: corrupt reference index {path}: {source}")]
    CorruptIndex {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type Result<T> = std::result::Result<T, StoreError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RefIndex {
    refs: BTreeMap<String, Digest>,
}

/// Handle on a store directory. Cheap to clone; holds no open files.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating if needed) the store rooted at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        for dir in [BLOBS_DIR, TMP_DIR] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io_err("create", &path))?;
        }
        Ok(Self { root })
    }

    /// Bytes of `digest` downloaded so far (temporary files being written).
    pub fn partial_bytes(&self, digest: &Digest) -> u64 {
        let prefix = format!("{}.", digest.hex());
        std::fs::read_dir(self.root.join(TMP_DIR))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join(BLOBS_DIR).join(digest.hex())
    }

    /// Whether the blob is present (with this size, when given).
    pub fn has_blob(&self, digest: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(digest)) {
            Ok(m) => size.is_none_or(|s| m.len() == s),
            Err(_) => false,
        }
    }

    /// Read a whole blob (manifests and configs; layers are opened with [`Self::blob_path`]).
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        fs::read(&path).map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => StoreError::BlobNotFound {
                digest: digest.clone(),
            },
            _ => StoreError::Io {
                op: "read",
                path,
                source,
            },
        })
    }

    /// Store `data`, checking it against `expected` when given; returns its digest.
    pub fn put_blob(&self, data: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let digest = expected.cloned().unwrap_or_else(|| Digest::of(data));
        let mut writer = self.blob_writer(digest.clone(), data.len() as u64)?;
        writer
            .write_all(data)
            .map_err(io_err("write", &self.root))?;
        writer.commit()?;
        Ok(digest)
    }

    /// A writer that hashes what it is given and lands it as `digest` on [`BlobWriter::commit`].
    pub fn blob_writer(&self, digest: Digest, size: u64) -> Result<BlobWriter> {
        let tmp_dir = self.root.join(TMP_DIR);
        // Named after the digest so a progress display can watch the download grow.
        let file = tempfile::Builder::new()
            .prefix(&format!("{}.", digest.hex()))
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create temp in", &tmp_dir))?;
        Ok(BlobWriter {
            dest: self.blob_path(&digest),
            file,
            hasher: Sha256::new(),
            written: 0,
            digest,
            size,
        })
    }

    /// The manifest digest a reference name points at, if any.
    pub fn resolve(&self, name: &str) -> Result<Option<Digest>> {
        Ok(self.read_index()?.refs.get(name).cloned())
    }

    /// Every reference name and its manifest digest.
    pub fn refs(&self) -> Result<BTreeMap<String, Digest>> {
        Ok(self.read_index()?.refs)
    }

    /// Point `name` at `digest` (atomically, under the index lock).
    pub fn set_ref(&self, name: &str, digest: &Digest) -> Result<()> {
        self.update_index(|index| {
            index.refs.insert(name.to_owned(), digest.clone());
        })
        .map(|_| ())
    }

    /// Remove `name` from the index; returns the digest it pointed at.
    pub fn remove_ref(&self, name: &str) -> Result<Option<Digest>> {
        self.update_index(|index| index.refs.remove(name))
    }

    fn read_index(&self) -> Result<RefIndex> {
        let path = self.root.join(REFS_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StoreError::CorruptIndex { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(RefIndex::default()),
            Err(source) => Err(StoreError::Io {
                op: "read",
                path,
                source,
            }),
        }
    }

    fn update_index<T>(&self, change: impl FnOnce(&mut RefIndex) -> T) -> Result<T> {
        let lock_path = self.root.join(REFS_LOCK);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err("open", &lock_path))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| {
            StoreError::Io {
                op: "lock",
                path: lock_path.clone(),
                source: errno.into(),
            }
        })?;
        let mut index = self.read_index()?;
        let out = change(&mut index);
        let path = self.root.join(REFS_FILE);
        let mut tmp =
            NamedTempFile::new_in(&self.root).map_err(io_err("create temp in", &self.root))?;
        let json =
            serde_json::to_vec_pretty(&index).map_err(|source| StoreError::CorruptIndex {
                path: path.clone(),
                source,
            })?;
        tmp.write_all(&json).map_err(io_err("write", tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", &path))?;
        tmp.persist(&path).map_err(|e| StoreError::Io {
            op: "rename",
            path: path.clone(),
            source: e.error,
        })?;
        sync_dir(&self.root)?;
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// A blob being written: hashed as it goes, renamed into place only if it verifies.
/// Dropping it without [`Self::commit`] deletes the temp file.
#[derive(Debug)]
pub struct BlobWriter {
    dest: PathBuf,
    file: NamedTempFile,
    hasher: Sha256,
    written: u64,
    digest: Digest,
    size: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verify size and digest, then move the blob into place.
    pub fn commit(self) -> Result<()> {
        if self.written != self.size {
            return Err(StoreError::SizeMismatch {
                digest: self.digest,
                expected: self.size,
                actual: self.written,
            });
        }
        let actual = Digest::from_hasher(self.hasher);
        if actual != self.digest {
            return Err(StoreError::DigestMismatch {
                expected: self.digest,
                actual,
            });
        }
        self.file
            .as_file()
            .sync_data()
            .map_err(io_err("fsync", self.file.path()))?;
        let dest = self.dest;
        self.file.persist(&dest).map_err(|e| StoreError::Io {
            op: "rename",
            path: dest.clone(),
            source: e.error,
        })?;
        Ok(())
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {} is larger than its {} bytes",
                    self.digest, self.size
                ),
            ));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
