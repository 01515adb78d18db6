//! `save`: images to a tarball, as a Docker archive (what `docker save` writes:
//! `manifest.json`, `repositories`, `<config hex>.json`, `<diff id hex>/layer.tar` with
//! uncompressed layers) or as an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>` with the blobs exactly as stored, so digests are kept).
//! `load` (the other direction) is in `load.rs`; both share [`ArchiveError`].

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::image::ImageManifest;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::{blob_digest, short_name, ImageError, ImageManager};
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::store::StoreError;
use crate::image::unpack::{open_layer, Compression, UnpackError};

/// OCI annotation naming a manifest in an index (`skopeo`, `umoci`).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// containerd's (and Docker ≥ 25's) annotation carrying the full image name.
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// Media type of an OCI image manifest (also what Docker-archive loads are stored as).
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(super) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(super) const OCI_LAYOUT_FILE: &str = "oci-layout";
pub(super) const INDEX_FILE: &str = "index.json";
pub(super) const DOCKER_MANIFEST_FILE: &str = "manifest.json";
pub(super) const REPOSITORIES_FILE: &str = "repositories";
pub(super) const BLOBS_PREFIX: &str = "blobs/sha256/";
const COPY_BUF_BYTES: usize = 256 * 1024;

/// Which tarball `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ArchiveFormat {
    /// `docker save`'s layout (the default, as Docker).
    #[default]
    Docker,
    /// An OCI image layout.
    Oci,
}

impl FromStr for ArchiveFormat {
    type Err = ArchiveError;

    fn from_str(s: &str) -> Result<Self, ArchiveError> {
        match s {
            "docker" | "docker-archive" => Ok(Self::Docker),
            "oci" | "oci-archive" => Ok(Self::Oci),
            _ => Err(ArchiveError::BadFormat {
                value: s.to_owned(),
            }),
        }
    }
}

/// Errors from `save` and `load`.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Finding or registering the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The store failed (including a blob whose bytes do not match its digest).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer could not be read or unpacked.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// Reading or writing the tarball failed.
    #[error("archive: {op}: {source}")]
    Io { op: &'static str, source: io::Error },
    /// An entry whose path (or link target) leaves the archive.
    #[error("archive: refused entry {entry:?}: it escapes the archive root")]
    Escape { entry: PathBuf },
    /// A metadata file that is not the JSON it should be.
    #[error("archive: invalid {file}: {source}")]
    BadJson {
        file: String,
        source: serde_json::Error,
    },
    /// A file the archive names but does not hold.
    #[error("archive: {file} is missing from the archive")]
    Missing { file: String },
    /// A metadata file larger than we read into memory.
    #[error("archive: {file} is larger than {limit} bytes")]
    TooLarge { file: String, limit: usize },
    /// A file named by a digest whose content has another digest.
    #[error("archive: {file} is named for {expected} but its content is {actual}")]
    NameMismatch {
        file: String,
        expected: String,
        actual: Digest,
    },
    /// An uncompressed layer that is not the one the config lists.
    #[error("archive: layer {index} is {actual} but the image config says {expected}")]
    DiffId {
        index: usize,
        expected: String,
        actual: Digest,
    },
    /// Neither `manifest.json` nor `index.json` + `oci-layout`.
    #[error("archive: neither a Docker archive (manifest.json) nor an OCI layout (index.json)")]
    UnknownFormat,
    /// A `--format` other than docker or oci.
    #[error("unknown archive format {value:?}: expected docker or oci")]
    BadFormat { value: String },
    /// A blocking task failed to run.
    #[error("background task failed: {source}")]
    Task { source: tokio::task::JoinError },
}

pub(super) fn io_op(op: &'static str) -> impl FnOnce(io::Error) -> ArchiveError {
    move |source| ArchiveError::Io { op, source }
}

/// One image to save.
struct Saved {
    names: Vec<String>,
    digest: Digest,
    manifest_bytes: Vec<u8>,
    manifest: ImageManifest,
    media_type: String,
    config: Digest,
}

impl ImageManager {
    /// Write the images `keys` name (names or ids) to `out` as one tarball.
    pub fn save(
        &self,
        keys: &[String],
        format: ArchiveFormat,
        out: impl Write,
    ) -> Result<(), ArchiveError> {
        let _gc = self.lock(false)?;
        let images = keys
            .iter()
            .map(|k| self.saved(k))
            .collect::<Result<Vec<_>, _>>()?;
        let mut tar = tar::Builder::new(out);
        match format {
            ArchiveFormat::Docker => self.write_docker(&mut tar, &images)?,
            ArchiveFormat::Oci => self.write_oci(&mut tar, &images)?,
        }
        tar.into_inner()
            .map_err(io_op("finish archive"))?
            .flush()
            .map_err(io_op("flush archive"))
    }

    fn saved(&self, key: &str) -> Result<Saved, ArchiveError> {
        let found = self.find(key)?;
        let manifest_bytes = self.store.read_blob(&found.digest)?;
        let manifest = self.manifest(&found.digest)?;
        let config = blob_digest(manifest.config().digest().as_ref(), &found.digest)?;
        let media_type = serde_json::from_slice::<Value>(&manifest_bytes)
            .ok()
            .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
            .unwrap_or_else(|| OCI_MANIFEST.to_owned());
        Ok(Saved {
            names: found.names,
            digest: found.digest,
            manifest_bytes,
            manifest,
            media_type,
            config,
        })
    }

    fn write_docker<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        images: &[Saved],
    ) -> Result<(), ArchiveError> {
        let mut written = BTreeSet::new();
        let mut entries = Vec::new();
        let mut repos: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for img in images {
            let config_name = format!("{}.json", img.config.hex());
            if written.insert(config_name.clone()) {
                let bytes = self.store.read_blob(&img.config)?;
                append(tar, &config_name, bytes.len() as u64, bytes.as_slice())?;
            }
            let mut layers = Vec::new();
            for layer in img.manifest.layers() {
                let digest = blob_digest(layer.digest().as_ref(), &img.digest)?;
                let (mut file, diff_id) = self.uncompressed(&digest)?;
                let name = format!("{}/layer.tar", diff_id.hex());
                if written.insert(name.clone()) {
                    let size = file.metadata().map_err(io_op("stat layer"))?.len();
                    append(tar, &name, size, &mut file)?;
                }
                layers.push(name);
            }
            let mut tags = Vec::new();
            for name in &img.names {
                let Ok(r) = name.parse::<Reference>() else {
                    continue;
                };
                let Some(tag) = r.tag() else { continue };
                let repo = short_name(&r.name());
                if let Some(top) = layers.last() {
                    let id = top.trim_end_matches("/layer.tar").to_owned();
                    repos
                        .entry(repo.clone())
                        .or_default()
                        .insert(tag.into(), id);
                }
                tags.push(format!("{repo}:{tag}"));
            }
            entries.push(json!({"Config": config_name, "RepoTags": tags, "Layers": layers}));
        }
        append_json(tar, DOCKER_MANIFEST_FILE, &Value::from(entries))?;
        append_json(tar, REPOSITORIES_FILE, &json!(repos))
    }

    fn write_oci<W: Write>(
        &self,
        tar: &mut tar::Builder<W>,
        images: &[Saved],
    ) -> Result<(), ArchiveError> {
        append_json(
            tar,
            OCI_LAYOUT_FILE,
            &json!({"imageLayoutVersion": "1.0.0"}),
        )?;
        let mut written = BTreeSet::new();
        let mut manifests = Vec::new();
        for img in images {
            let mut blobs = vec![img.digest.clone(), img.config.clone()];
            for layer in img.manifest.layers() {
                blobs.push(blob_digest(layer.digest().as_ref(), &img.digest)?);
            }
            for digest in blobs {
                if !written.insert(digest.clone()) {
                    continue;
                }
                let path = self.store.blob_path(&digest);
                let mut file = File::open(&path).map_err(|_| StoreError::BlobNotFound {
                    digest: digest.clone(),
                })?;
                let size = file.metadata().map_err(io_op("stat blob"))?.len();
                let name = format!("{BLOBS_PREFIX}{}", digest.hex());
                append(tar, &name, size, &mut file)?;
            }
            let descriptor = |annotations: Option<Value>| {
                let mut d = json!({
                    "mediaType": img.media_type,
                    "digest": img.digest.to_string(),
                    "size": img.manifest_bytes.len(),
                });
                if let Some(a) = annotations {
                    d["annotations"] = a;
                }
                d
            };
            if img.names.is_empty() {
                manifests.push(descriptor(None));
            }
            for name in &img.names {
                manifests.push(descriptor(Some(json!({
                    REF_NAME_ANNOTATION: name,
                    CONTAINERD_NAME_ANNOTATION: name,
                }))));
            }
        }
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
        append_json(tar, INDEX_FILE, &index)
    }

    /// The layer as a plain tar (a temp file in the store when it had to be
    /// decompressed) and its digest, which is the config's diff id.
    fn uncompressed(&self, digest: &Digest) -> Result<(File, Digest), ArchiveError> {
        let path = self.store.blob_path(digest);
        let mut head = [0u8; 4];
        let mut file = File::open(&path).map_err(|_| StoreError::BlobNotFound {
            digest: digest.clone(),
        })?;
        let n = file.read(&mut head).map_err(io_op("read layer"))?;
        if Compression::sniff(&head[..n]) == Compression::None {
            file.rewind().map_err(io_op("read layer"))?;
            return Ok((file, digest.clone()));
        }
        let mut tmp = tempfile::tempfile_in(self.store.root().join("tmp"))
            .map_err(io_op("create temp layer"))?;
        let diff_id = copy_hashed(&mut open_layer(&path)?, &mut tmp)?;
        tmp.rewind().map_err(io_op("rewind temp layer"))?;
        Ok((tmp, diff_id))
    }
}

/// Copy `from` into `to`, returning the digest of what passed.
pub(super) fn copy_hashed(
    from: &mut impl Read,
    to: &mut impl Write,
) -> Result<Digest, ArchiveError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; COPY_BUF_BYTES];
    loop {
        let n = from.read(&mut buf).map_err(io_op("read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(io_op("write"))?;
    }
    Ok(Digest::from_hasher(hasher))
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    size: u64,
    data: impl Read,
) -> Result<(), ArchiveError> {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, data)
        .map_err(io_op("write archive entry"))
}

fn append_json<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    value: &Value,
) -> Result<(), ArchiveError> {
    let bytes = serde_json::to_vec(value).map_err(|source| ArchiveError::BadJson {
        file: name.to_owned(),
        source,
    })?;
    append(tar, name, bytes.len() as u64, bytes.as_slice())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_parses_docker_and_oci_names() {
        assert_eq!(
            "docker".parse::<ArchiveFormat>().unwrap(),
            ArchiveFormat::Docker
        );
        assert_eq!(
            "oci-archive".parse::<ArchiveFormat>().unwrap(),
            ArchiveFormat::Oci
        );
        assert_eq!(ArchiveFormat::default(), ArchiveFormat::Docker);
        assert!("zip".parse::<ArchiveFormat>().is_err());
    }
}
