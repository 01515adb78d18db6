//! The second half of `load`: turning an archive's metadata into images in the store.
//!
//! A Docker archive has no manifest, so one is written (OCI, layers as the archive held
//! them) after checking each layer against the config's `rootfs.diff_ids`. An OCI
//! layout's manifests are kept byte for byte, so digests survive a save/load round trip.

use serde_json::{json, Value};

use super::archive::{
    ArchiveError, CONTAINERD_NAME_ANNOTATION, DOCKER_MANIFEST_FILE, INDEX_FILE, OCI_MANIFEST,
    REF_NAME_ANNOTATION,
};
use super::load::{Contents, LoadedImage};
use super::{blob_digest, ImageManager};
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::registry::Platform;
use crate::image::store::StoreError;
use crate::image::unpack::Compression;

const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

impl ImageManager {
    pub(super) fn register_docker(
        &self,
        contents: &Contents,
    ) -> Result<Vec<LoadedImage>, ArchiveError> {
        let entries = contents.json(DOCKER_MANIFEST_FILE)?.unwrap_or_default();
        let bad = |source| ArchiveError::BadJson {
            file: DOCKER_MANIFEST_FILE.to_owned(),
            source,
        };
        let entries: Vec<DockerEntry> = serde_json::from_value(entries).map_err(bad)?;
        let mut loaded = Vec::new();
        for entry in entries {
            let config = contents.blob(&entry.config)?;
            let config_bytes = self.store.read_blob(&config)?;
            let parsed: Value =
                serde_json::from_slice(&config_bytes).map_err(|source| ArchiveError::BadJson {
                    file: entry.config.clone(),
                    source,
                })?;
            let diff_ids: Vec<String> = parsed["rootfs"]["diff_ids"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            if diff_ids.len() != entry.layers.len() {
                return Err(ArchiveError::Missing {
                    file: format!(
                        "{} (config lists {} layers, manifest.json {})",
                        entry.config,
                        diff_ids.len(),
                        entry.layers.len()
                    ),
                });
            }
            let mut layers = Vec::new();
            for (index, (name, expected)) in entry.layers.iter().zip(&diff_ids).enumerate() {
                let digest = contents.blob(name)?;
                let actual = self.diff_id(&digest)?;
                if actual.to_string() != *expected {
                    return Err(ArchiveError::DiffId {
                        index,
                        expected: expected.clone(),
                        actual,
                    });
                }
                let size = self.blob_size(&digest)?;
                let media_type = layer_media_type(&self.store.blob_path(&digest));
                layers.push(
                    json!({"mediaType": media_type, "digest": digest.to_string(), "size": size}),
                );
            }
            let manifest = json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": config.to_string(), "size": config_bytes.len()},
                "layers": layers,
            });
            let bytes = serde_json::to_vec(&manifest).map_err(bad)?;
            let digest = self.store.put_blob(&bytes, None)?;
            let names = self.name_all(&entry.repo_tags.unwrap_or_default(), &digest)?;
            loaded.push(LoadedImage {
                names,
                digest,
                id: config,
            });
        }
        Ok(loaded)
    }

    pub(super) fn register_oci(
        &self,
        contents: &Contents,
    ) -> Result<Vec<LoadedImage>, ArchiveError> {
        let index = contents.json(INDEX_FILE)?.unwrap_or_default();
        let mut loaded = Vec::new();
        for desc in index["manifests"].as_array().into_iter().flatten() {
            let mut digest = self.present(desc)?;
            if is_index(desc["mediaType"].as_str().unwrap_or_default()) {
                digest = self.host_manifest(&digest)?;
            }
            let manifest = self.manifest(&digest)?;
            let config = blob_digest(manifest.config().digest().as_ref(), &digest)?;
            for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
                let blob = blob_digest(d.digest().as_ref(), &digest)?;
                if !self.store.has_blob(&blob, Some(d.size())) {
                    return Err(ArchiveError::Missing {
                        file: format!("blobs/sha256/{}", blob.hex()),
                    });
                }
            }
            let annotations = &desc["annotations"];
            let name = annotations[CONTAINERD_NAME_ANNOTATION]
                .as_str()
                .or(annotations[REF_NAME_ANNOTATION].as_str());
            let names = match name {
                Some(n) => self.name_all(&[n.to_owned()], &digest)?,
                None => Vec::new(),
            };
            loaded.push(LoadedImage {
                names,
                digest,
                id: config,
            });
        }
        Ok(loaded)
    }

    /// A descriptor's blob, which the archive must have delivered (verified) to the store.
    fn present(&self, desc: &Value) -> Result<Digest, ArchiveError> {
        let text = desc["digest"].as_str().unwrap_or_default();
        let digest: Digest = text.parse().map_err(|_| ArchiveError::Missing {
            file: format!("blob {text:?}"),
        })?;
        if !self.store.has_blob(&digest, desc["size"].as_u64()) {
            return Err(ArchiveError::Missing {
                file: format!("blobs/sha256/{}", digest.hex()),
            });
        }
        Ok(digest)
    }

    /// The host platform's manifest in a nested index (the first when none says).
    fn host_manifest(&self, index: &Digest) -> Result<Digest, ArchiveError> {
        let bytes = self.store.read_blob(index)?;
        let parsed: Value =
            serde_json::from_slice(&bytes).map_err(|source| ArchiveError::BadJson {
                file: index.to_string(),
                source,
            })?;
        let host = Platform::host();
        let manifests = parsed["manifests"].as_array().cloned().unwrap_or_default();
        let chosen = manifests
            .iter()
            .find(|m| {
                let p = &m["platform"];
                host.matches(
                    p["os"].as_str().unwrap_or_default(),
                    p["architecture"].as_str().unwrap_or_default(),
                    p["variant"].as_str(),
                )
            })
            .or(manifests.first())
            .ok_or_else(|| ArchiveError::Missing {
                file: format!("a manifest in index {index}"),
            })?;
        self.present(chosen)
    }

    fn blob_size(&self, digest: &Digest) -> Result<u64, ArchiveError> {
        let path = self.store.blob_path(digest);
        Ok(std::fs::metadata(&path)
            .map_err(|_| StoreError::BlobNotFound {
                digest: digest.clone(),
            })?
            .len())
    }

    /// Point each name at `digest`; returns the normalised names.
    fn name_all(&self, names: &[String], digest: &Digest) -> Result<Vec<String>, ArchiveError> {
        let mut out = Vec::new();
        for name in names {
            let reference: Reference = name.parse().map_err(super::ImageError::from)?;
            let name = reference.to_string();
            self.store.set_ref(&name, digest)?;
            out.push(name);
        }
        Ok(out)
    }
}

fn is_index(media_type: &str) -> bool {
    matches!(
        media_type,
        "application/vnd.oci.image.index.v1+json"
            | "application/vnd.docker.distribution.manifest.list.v2+json"
    )
}

/// The OCI layer media type for a stored layer, from its first bytes.
fn layer_media_type(path: &std::path::Path) -> &'static str {
    use std::io::Read;
    let mut head = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    match Compression::sniff(&head[..n]) {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}
