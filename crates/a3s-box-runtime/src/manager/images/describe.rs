//! `image inspect` and `history`: the stored manifest and config, shaped as Docker prints
//! them.

use serde_json::{json, Map, Value};

use super::{blob_digest, ImageError, ImageManager, Result};
use crate::image::digest::Digest;
use crate::image::reference::{Reference, DOCKER_HUB, DOCKER_HUB_LIBRARY};

/// One row of `history`, newest first as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEntry {
    /// When the step ran (RFC 3339), if recorded.
    pub created: Option<String>,
    /// The command that made the step.
    pub created_by: String,
    /// Free-form comment.
    pub comment: String,
    /// Bytes of the layer the step made (compressed); 0 for a config-only step.
    pub size: u64,
    /// Digest of that layer, when the step made one.
    pub layer: Option<Digest>,
}

/// A reference as Docker shows it: `docker.io/library/alpine:3` → `alpine:3`,
/// `docker.io/org/app` → `org/app`; other registries are kept.
pub fn short_name(reference: &str) -> String {
    let library = format!("{DOCKER_HUB}/{DOCKER_HUB_LIBRARY}/");
    let hub = format!("{DOCKER_HUB}/");
    reference
        .strip_prefix(&library)
        .or_else(|| reference.strip_prefix(&hub))
        .unwrap_or(reference)
        .to_owned()
}

impl ImageManager {
    /// Docker-shaped `image inspect` of the image `key` names.
    pub fn inspect(&self, key: &str) -> Result<Value> {
        let found = self.find(key)?;
        let refs = self.store.refs()?;
        let names: Vec<&String> = refs
            .iter()
            .filter(|(_, d)| **d == found.digest)
            .map(|(n, _)| n)
            .collect();
        let mut tags = Vec::new();
        let mut digests = Vec::new();
        for name in names {
            let Ok(r) = name.parse::<Reference>() else {
                continue;
            };
            if r.tag().is_some() && r.digest().is_none() {
                tags.push(short_name(name));
            }
            let pinned = short_name(&format!("{}@{}", r.name(), found.digest));
            if !digests.contains(&pinned) {
                digests.push(pinned);
            }
        }
        let manifest = self.manifest(&found.digest)?;
        let id = blob_digest(manifest.config().digest().as_ref(), &found.digest)?;
        let config = self.config_json(&id)?;
        let c = &config["config"];
        let size =
            manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
        Ok(json!({
            "Id": id.to_string(),
            "RepoTags": tags,
            "RepoDigests": digests,
            "Created": config["created"],
            "Author": config["author"],
            "Config": {
                "User": c["User"].as_str().unwrap_or_default(),
                "Env": c["Env"],
                "Cmd": c["Cmd"],
                "Entrypoint": c["Entrypoint"],
                "WorkingDir": c["WorkingDir"].as_str().unwrap_or_default(),
                "ExposedPorts": c["ExposedPorts"],
                "Volumes": c["Volumes"],
                "Labels": c["Labels"],
                "StopSignal": c["StopSignal"],
            },
            "Architecture": config["architecture"],
            "Os": config["os"],
            "Variant": config["variant"],
            "Size": size,
            "RootFS": {
                "Type": "layers",
                "Layers": config["rootfs"]["diff_ids"],
            },
            "Manifest": {
                "Digest": found.digest.to_string(),
                "MediaType": manifest.media_type().as_ref().map(ToString::to_string),
                "Layers": manifest.layers().iter().map(|l| json!({
                    "Digest": l.digest().to_string(),
                    "MediaType": l.media_type().to_string(),
                    "Size": l.size(),
                })).collect::<Vec<_>>(),
            },
        }))
    }

    /// The image's build steps, newest first; each step that made a layer carries it.
    pub fn history(&self, key: &str) -> Result<Vec<HistoryEntry>> {
        let found = self.find(key)?;
        let manifest = self.manifest(&found.digest)?;
        let id = blob_digest(manifest.config().digest().as_ref(), &found.digest)?;
        let config = self.config_json(&id)?;
        let mut layers = manifest.layers().iter();
        let mut out = Vec::new();
        let steps = config["history"].as_array().cloned().unwrap_or_default();
        for step in &steps {
            let text = |k: &str| step[k].as_str().unwrap_or_default().to_owned();
            let layer = if step["empty_layer"].as_bool().unwrap_or(false) {
                None
            } else {
                layers.next()
            };
            out.push(HistoryEntry {
                created: step["created"].as_str().map(str::to_owned),
                created_by: text("created_by"),
                comment: text("comment"),
                size: layer.map_or(0, |l| l.size()),
                layer: layer
                    .map(|l| blob_digest(l.digest().as_ref(), &found.digest))
                    .transpose()?,
            });
        }
        // Layers without a history step (history is optional) still show up.
        for l in layers {
            out.push(HistoryEntry {
                created: None,
                created_by: String::new(),
                comment: String::new(),
                size: l.size(),
                layer: Some(blob_digest(l.digest().as_ref(), &found.digest)?),
            });
        }
        out.reverse();
        Ok(out)
    }

    fn config_json(&self, id: &Digest) -> Result<Value> {
        let bytes = self.store.read_blob(id)?;
        match serde_json::from_slice(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Ok(Value::Object(Map::new())),
            Err(e) => Err(ImageError::Corrupt {
                what: "config",
                digest: id.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_follow_docker() {
        assert_eq!(short_name("docker.io/library/alpine:3"), "alpine:3");
        assert_eq!(short_name("docker.io/org/app:1"), "org/app:1");
        assert_eq!(
            short_name("127.0.0.1:5000/team/tool:1"),
            "127.0.0.1:5000/team/tool:1"
        );
    }
}
