//! `load`: a Docker archive or OCI layout tarball into the store.
//!
//! The tarball is read once, as a stream. Nothing in it is written under a name it
//! chooses: `blobs/sha256/<hex>` entries stream into the store's verified blob writer
//! (digest and size checked before the blob lands), every other file lands in the store
//! by the digest of its content, and the few metadata files are kept in memory. Paths
//! and link targets that would leave the archive are refused. Then the images are
//! registered (Docker `RepoTags`; OCI `io.containerd.image.name`, else
//! `org.opencontainers.image.ref.name`) and, for the host platform, unpacked as `pull` does.

use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};
use std::path::{Component, Path};

use serde_json::Value;

use super::archive::{
    copy_hashed, io_op, ArchiveError, BLOBS_PREFIX, DOCKER_MANIFEST_FILE, INDEX_FILE,
    OCI_LAYOUT_FILE, REPOSITORIES_FILE,
};
use super::ImageManager;
use crate::image::digest::Digest;
use crate::image::registry::{Platform, MAX_MANIFEST_BYTES};
use crate::image::unpack::open_layer;

/// Links followed when looking an archive file up.
const MAX_LINK_HOPS: usize = 16;

/// An image `load` registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    /// The names it was recorded under (empty if the archive named none).
    pub names: Vec<String>,
    /// Manifest digest.
    pub digest: Digest,
    /// Image id (config digest).
    pub id: Digest,
}

/// What the stream held: metadata in memory, every other file as a stored blob.
#[derive(Debug, Default)]
pub(super) struct Contents {
    pub(super) meta: HashMap<String, Vec<u8>>,
    pub(super) blobs: HashMap<String, Digest>,
    links: HashMap<String, String>,
}

impl Contents {
    /// The stored blob an archive path names (following links inside the archive).
    pub(super) fn blob(&self, name: &str) -> Result<Digest, ArchiveError> {
        let mut name = clean(Path::new(name))?;
        for _ in 0..MAX_LINK_HOPS {
            if let Some(d) = self.blobs.get(&name) {
                return Ok(d.clone());
            }
            match self.links.get(&name) {
                Some(target) => name = target.clone(),
                None => break,
            }
        }
        Err(ArchiveError::Missing { file: name })
    }

    pub(super) fn json(&self, file: &str) -> Result<Option<Value>, ArchiveError> {
        self.meta
            .get(file)
            .map(|b| serde_json::from_slice(b))
            .transpose()
            .map_err(|source| ArchiveError::BadJson {
                file: file.to_owned(),
                source,
            })
    }
}

impl ImageManager {
    /// Load every image in the tarball `input` (Docker archive or OCI layout).
    pub async fn load(
        &self,
        input: impl Read + Send + 'static,
    ) -> Result<Vec<LoadedImage>, ArchiveError> {
        let this = self.clone();
        let loaded = tokio::task::spawn_blocking(move || -> Result<_, ArchiveError> {
            let _gc = this.lock(false)?;
            let contents = this.read_archive(input)?;
            if contents.meta.contains_key(INDEX_FILE) && contents.meta.contains_key(OCI_LAYOUT_FILE)
            {
                this.register_oci(&contents)
            } else if contents.meta.contains_key(DOCKER_MANIFEST_FILE) {
                this.register_docker(&contents)
            } else {
                Err(ArchiveError::UnknownFormat)
            }
        })
        .await
        .map_err(|source| ArchiveError::Task { source })??;
        let host = Platform::host();
        for image in &loaded {
            let config: Value =
                serde_json::from_slice(&self.store.read_blob(&image.id)?).map_err(|source| {
                    ArchiveError::BadJson {
                        file: image.id.to_string(),
                        source,
                    }
                })?;
            let os = config["os"].as_str().unwrap_or_default();
            let arch = config["architecture"].as_str().unwrap_or_default();
            if host.matches(os, arch, config["variant"].as_str()) {
                let manifest = self.manifest(&image.digest)?;
                self.unpack(&image.digest, &manifest).await?;
            }
        }
        Ok(loaded)
    }

    fn read_archive(&self, input: impl Read) -> Result<Contents, ArchiveError> {
        let mut contents = Contents::default();
        let mut archive = tar::Archive::new(input);
        for entry in archive.entries().map_err(io_op("read archive"))? {
            let mut entry = entry.map_err(io_op("read archive"))?;
            let raw = entry.path().map_err(io_op("read archive"))?.into_owned();
            let name = clean(&raw)?;
            let kind = entry.header().entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(io_op("read archive"))?
                    .ok_or_else(|| ArchiveError::Escape { entry: raw.clone() })?
                    .into_owned();
                let target = if kind.is_symlink() {
                    symlink_target(&raw, &target)?
                } else {
                    clean(&target)?
                };
                contents.links.insert(name, target);
                continue;
            }
            if !kind.is_file() {
                continue;
            }
            let size = entry.size();
            if [
                INDEX_FILE,
                OCI_LAYOUT_FILE,
                DOCKER_MANIFEST_FILE,
                REPOSITORIES_FILE,
            ]
            .contains(&name.as_str())
            {
                if size > MAX_MANIFEST_BYTES as u64 {
                    return Err(ArchiveError::TooLarge {
                        file: name,
                        limit: MAX_MANIFEST_BYTES,
                    });
                }
                let mut bytes = Vec::new();
                entry
                    .read_to_end(&mut bytes)
                    .map_err(io_op("read archive"))?;
                contents.meta.insert(name, bytes);
                continue;
            }
            let digest = self.store_entry(&name, size, &mut entry)?;
            contents.blobs.insert(name, digest);
        }
        Ok(contents)
    }

    /// Land one archive file in the store; a `blobs/sha256/<hex>` name must match.
    fn store_entry(
        &self,
        name: &str,
        size: u64,
        entry: &mut impl Read,
    ) -> Result<Digest, ArchiveError> {
        let named = name
            .strip_prefix(BLOBS_PREFIX)
            .and_then(|hex| format!("sha256:{hex}").parse::<Digest>().ok());
        if let Some(digest) = named {
            if self.store.has_blob(&digest, Some(size)) {
                // Still read it through, so a corrupt copy is noticed, but discard it.
                let actual = copy_hashed(entry, &mut io::sink())?;
                return check_name(name, &digest, actual);
            }
            let mut writer = self.store.blob_writer(digest.clone(), size)?;
            io::copy(entry, &mut writer).map_err(io_op("write blob"))?;
            writer.commit()?;
            return Ok(digest);
        }
        let mut tmp = tempfile::tempfile_in(self.store.root().join("tmp"))
            .map_err(io_op("create temp blob"))?;
        let digest = copy_hashed(entry, &mut tmp)?;
        if let Some(hex) = Path::new(name).file_stem().and_then(|s| s.to_str()) {
            if let Ok(expected) = format!("sha256:{hex}").parse::<Digest>() {
                check_name(name, &expected, digest.clone())?;
            }
        }
        if !self.store.has_blob(&digest, Some(size)) {
            tmp.rewind().map_err(io_op("rewind temp blob"))?;
            let mut writer = self.store.blob_writer(digest.clone(), size)?;
            io::copy(&mut tmp, &mut writer).map_err(io_op("write blob"))?;
            writer.flush().map_err(io_op("write blob"))?;
            writer.commit()?;
        }
        Ok(digest)
    }

    /// The uncompressed digest of a stored layer (its diff id).
    pub(super) fn diff_id(&self, layer: &Digest) -> Result<Digest, ArchiveError> {
        let mut reader = open_layer(&self.store.blob_path(layer))?;
        copy_hashed(&mut reader, &mut io::sink())
    }
}

fn check_name(name: &str, expected: &Digest, actual: Digest) -> Result<Digest, ArchiveError> {
    if *expected == actual {
        Ok(actual)
    } else {
        Err(ArchiveError::NameMismatch {
            file: name.to_owned(),
            expected: expected.to_string(),
            actual,
        })
    }
}

/// An archive path as `a/b/c`, refusing absolute paths and `..`.
pub(super) fn clean(path: &Path) -> Result<String, ArchiveError> {
    let mut parts = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::Normal(p) => parts.push(
                p.to_str()
                    .ok_or_else(|| ArchiveError::Escape {
                        entry: path.to_owned(),
                    })?
                    .to_owned(),
            ),
            _ => {
                return Err(ArchiveError::Escape {
                    entry: path.to_owned(),
                })
            }
        }
    }
    Ok(parts.join("/"))
}

/// A symlink's target as an archive path, resolved from the link's directory; refused
/// when it is absolute or climbs above the archive root.
fn symlink_target(link: &Path, target: &Path) -> Result<String, ArchiveError> {
    let escape = || ArchiveError::Escape {
        entry: link.to_owned(),
    };
    let mut parts: Vec<String> = clean(link)?.split('/').map(str::to_owned).collect();
    parts.pop();
    for c in target.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop().ok_or_else(escape)?;
            }
            Component::Normal(p) => parts.push(p.to_str().ok_or_else(escape)?.to_owned()),
            _ => return Err(escape()),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_archive_are_refused() {
        assert_eq!(clean(Path::new("./a/b.json")).unwrap(), "a/b.json");
        assert!(clean(Path::new("../x")).is_err());
        assert!(clean(Path::new("/etc/passwd")).is_err());
        assert!(clean(Path::new("a/../../x")).is_err());
        let l = Path::new("abc/layer.tar");
        assert_eq!(
            symlink_target(l, Path::new("../def/layer.tar")).unwrap(),
            "def/layer.tar"
        );
        assert!(symlink_target(l, Path::new("../../etc/passwd")).is_err());
        assert!(symlink_target(l, Path::new("/etc/passwd")).is_err());
    }
}
