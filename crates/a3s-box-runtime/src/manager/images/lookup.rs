//! Finding local images by name or id, and reading their manifest, config and summary.

use std::collections::BTreeMap;

use oci_spec::image::ImageManifest;

use super::{blob_digest, ImageError, ImageManager, ImageSummary, Result, MIN_ID_PREFIX};
use crate::image::digest::Digest;
use crate::image::reference::Reference;

/// A local image found by name or id.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// The reference names that matched (one for a name, all for an id).
    pub(super) names: Vec<String>,
    pub(super) digest: Digest,
    pub(super) by_name: bool,
}

impl ImageManager {
    /// A name or id → the local image. Names are tried first, then id prefixes (of the
    /// config digest, as Docker shows them, or of the manifest digest).
    pub(super) fn find(&self, key: &str) -> Result<Found> {
        let refs = self.store.refs()?;
        if let Ok(reference) = key.parse::<Reference>() {
            let name = reference.to_string();
            if let Some(digest) = refs.get(&name) {
                return Ok(Found {
                    names: vec![name],
                    digest: digest.clone(),
                    by_name: true,
                });
            }
            if let Some(pinned) = reference.digest() {
                if refs.values().any(|d| d == pinned) {
                    return Ok(self.by_digest(&refs, pinned, false));
                }
            }
        }
        let hex = key.strip_prefix("sha256:").unwrap_or(key);
        if hex.len() >= MIN_ID_PREFIX && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut hits: Vec<Digest> = Vec::new();
            for digest in refs.values() {
                let id = self.config_digest(digest)?;
                if (id.hex().starts_with(hex) || digest.hex().starts_with(hex))
                    && !hits.contains(digest)
                {
                    hits.push(digest.clone());
                }
            }
            match hits.as_slice() {
                [one] => return Ok(self.by_digest(&refs, one, false)),
                [] => {}
                _ => {
                    return Err(ImageError::AmbiguousId {
                        reference: key.to_owned(),
                    })
                }
            }
        }
        Err(ImageError::NotFound {
            reference: key.to_owned(),
        })
    }

    fn by_digest(&self, refs: &BTreeMap<String, Digest>, digest: &Digest, by_name: bool) -> Found {
        Found {
            names: refs
                .iter()
                .filter(|(_, d)| *d == digest)
                .map(|(n, _)| n.clone())
                .collect(),
            digest: digest.clone(),
            by_name,
        }
    }

    pub(super) fn manifest(&self, digest: &Digest) -> Result<ImageManifest> {
        let bytes = self.store.read_blob(digest)?;
        ImageManifest::from_reader(bytes.as_slice()).map_err(|e| ImageError::Corrupt {
            what: "manifest",
            digest: digest.clone(),
            reason: e.to_string(),
        })
    }

    pub(super) fn config_digest(&self, manifest: &Digest) -> Result<Digest> {
        let m = self.manifest(manifest)?;
        blob_digest(m.config().digest().as_ref(), manifest)
    }

    pub(super) fn summary(&self, name: &str, digest: &Digest) -> Result<ImageSummary> {
        let manifest = self.manifest(digest)?;
        let id = blob_digest(manifest.config().digest().as_ref(), digest)?;
        let config: serde_json::Value =
            serde_json::from_slice(&self.store.read_blob(&id)?).unwrap_or_default();
        Ok(ImageSummary {
            reference: name.to_owned(),
            digest: digest.clone(),
            id,
            created: config["created"].as_str().map(str::to_owned),
            size: manifest.config().size()
                + manifest.layers().iter().map(|l| l.size()).sum::<u64>(),
        })
    }
}
