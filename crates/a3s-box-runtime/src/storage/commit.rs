//! `commit` (a box's changes become one new layer on its image) and
//! `import` (a tarball becomes a one-layer image).
//!
//! The layer tar comes from the guest (`layer-tar`: the overlay's upper
//! directory with whiteouts as OCI `.wh.` entries; `root-tar` for a box
//! booted from a `--rootfs` directory, which has no image layers to build
//! on). It is stored as an uncompressed layer blob and only ever unpacked by
//! the image unpacker, which refuses path escapes.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use a3s_box_core::guest::builtin::{LAYER_TAR, ROOT_TAR};
use a3s_box_core::spec::RootSource;
use a3s_box_core::time::now_rfc3339;
use a3s_box_core::{BoxError, Result};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use super::change::apply_change;
use super::helpers::{out, run_helper};
use super::StorageError;
use crate::config::EngineConfig;
use crate::home::Home;
use crate::image::{Digest, Reference};
use crate::manager::{BoxManager, ImageManager, PullPolicy};
use crate::state::BoxRecord;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// `-m`, `-a`, `-c` and the new reference.
#[derive(Debug, Clone, Default)]
pub struct CommitOptions {
    /// History comment.
    pub message: Option<String>,
    /// Author.
    pub author: Option<String>,
    /// Dockerfile instructions: CMD, ENTRYPOINT, ENV, WORKDIR, USER, EXPOSE, LABEL, VOLUME.
    pub changes: Vec<String>,
    /// `REPOSITORY[:TAG]` to point at the new image.
    pub reference: Option<String>,
}

/// The image made.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// Image id (config digest).
    pub id: Digest,
    /// Manifest digest.
    pub manifest: Digest,
    /// The reference set, normalised.
    pub reference: Option<String>,
}

/// Errors of the image store while committing are internal: the inputs
/// were checked before.
fn image_err(e: impl std::fmt::Display) -> BoxError {
    BoxError::io("image store", std::io::Error::other(e.to_string()))
}

/// Store the tar at `path` as a layer blob; its digest (also its diff id) and size.
fn store_layer(images: &ImageManager, path: &Path) -> Result<(Digest, u64)> {
    let io = |e| BoxError::io(format!("read {}", path.display()), e);
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io)?;
    let digest = Digest::from_hasher(hasher);
    if !images.store().has_blob(&digest, Some(size)) {
        let mut writer = images
            .store()
            .blob_writer(digest.clone(), size)
            .map_err(image_err)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        std::io::copy(&mut file, &mut writer).map_err(io)?;
        writer.commit().map_err(image_err)?;
    }
    Ok((digest, size))
}

/// The image config and manifest layers to build on (none: an empty base).
struct Base {
    config: Value,
    layers: Vec<Value>,
}

fn empty_base() -> Base {
    Base {
        config: json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }),
        layers: Vec::new(),
    }
}

async fn base_of(images: &ImageManager, reference: &str) -> Result<Base> {
    let resolved = images
        .ensure(reference, PullPolicy::Never)
        .await
        .map_err(image_err)?;
    let read = |d: &Digest| -> Result<Value> {
        let bytes = images.store().read_blob(d).map_err(image_err)?;
        serde_json::from_slice(&bytes).map_err(image_err)
    };
    let manifest = read(&resolved.digest)?;
    let config_digest: Digest = manifest["config"]["digest"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .map_err(image_err)?;
    Ok(Base {
        config: read(&config_digest)?,
        layers: manifest["layers"].as_array().cloned().unwrap_or_default(),
    })
}

/// Write config and manifest for `base` + the layer, and tag it.
fn finish(
    images: &ImageManager,
    mut base: Base,
    layer: (Digest, u64),
    opts: &CommitOptions,
    created_by: &str,
) -> Result<NewImage> {
    let now = now_rfc3339();
    let cfg = &mut base.config;
    if !cfg["config"].is_object() {
        cfg["config"] = json!({});
    }
    if let Some(inner) = cfg["config"].as_object_mut() {
        for change in &opts.changes {
            apply_change(inner, change)?;
        }
    }
    cfg["created"] = json!(now);
    if let Some(author) = &opts.author {
        cfg["author"] = json!(author);
    }
    if !cfg["rootfs"]["diff_ids"].is_array() {
        cfg["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    if let Some(ids) = cfg["rootfs"]["diff_ids"].as_array_mut() {
        ids.push(json!(layer.0.to_string()));
    }
    let mut entry = json!({"created": now, "created_by": created_by});
    if let Some(m) = &opts.message {
        entry["comment"] = json!(m);
    }
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
    }
    match cfg["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => cfg["history"] = json!([entry]),
    }
    let config_bytes = serde_json::to_vec(cfg).map_err(image_err)?;
    let id = images
        .store()
        .put_blob(&config_bytes, None)
        .map_err(image_err)?;
    base.layers.push(json!({
        "mediaType": OCI_LAYER_TAR, "digest": layer.0.to_string(), "size": layer.1,
    }));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": id.to_string(), "size": config_bytes.len()},
        "layers": base.layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(image_err)?;
    let manifest = images
        .store()
        .put_blob(&manifest_bytes, None)
        .map_err(image_err)?;
    let reference = match &opts.reference {
        Some(r) => {
            let name = r.parse::<Reference>().map_err(image_err)?.to_string();
            images
                .store()
                .set_ref(&name, &manifest)
                .map_err(image_err)?;
            Some(name)
        }
        None => None,
    };
    Ok(NewImage {
        id,
        manifest,
        reference,
    })
}

/// A temporary file for a layer, in the image store's filesystem.
fn temp_layer(home: &Home) -> Result<tempfile::NamedTempFile> {
    let dir = home.root().join("images");
    std::fs::create_dir_all(&dir).map_err(|e| BoxError::io("create images dir", e))?;
    tempfile::Builder::new()
        .prefix(".layer-")
        .tempfile_in(&dir)
        .map_err(|e| BoxError::io("create a temporary layer", e))
}

/// `commit`: the box's changes as one new layer on its image.
pub async fn commit(
    config: &EngineConfig,
    manager: &BoxManager,
    record: &BoxRecord,
    opts: &CommitOptions,
) -> Result<NewImage> {
    let home = &config.home_dir();
    let images = ImageManager::new(config).map_err(image_err)?;
    let container = record.config.container();
    let (base, helper) = match &container.root {
        RootSource::Image { reference, .. } => (base_of(&images, reference).await?, LAYER_TAR),
        RootSource::Dir { .. } => {
            // A --rootfs box: its whole filesystem is the image, with its command.
            let mut base = empty_base();
            let p = &container.process;
            base.config["config"] = json!({
                "Cmd": container.command(),
                "Env": p.env.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "WorkingDir": p.cwd.clone().unwrap_or_else(|| "/".into()),
            });
            (base, ROOT_TAR)
        }
    };
    let tmp = temp_layer(home)?;
    let file = tmp
        .reopen()
        .map_err(|e| BoxError::io("open temporary layer", e))?;
    let sink = out(std::io::BufWriter::new(file));
    run_helper(manager, record, helper, sink.clone()).await?;
    sink.lock()
        .map_err(|_| BoxError::io("write layer", std::io::Error::other("writer poisoned")))?
        .flush()
        .map_err(|e| BoxError::io("write layer", e))?;
    let layer = store_layer(&images, tmp.path())?;
    let created_by = format!("a3s-box commit {}", record.config.name);
    finish(&images, base, layer, opts, &created_by)
}

/// `import`: a tarball (plain, gzip or zstd) as a one-layer image.
pub fn import(config: &EngineConfig, input: impl Read, opts: &CommitOptions) -> Result<NewImage> {
    let home = &config.home_dir();
    let images = ImageManager::new(config).map_err(image_err)?;
    let tmp = temp_layer(home)?;
    let mut input = std::io::BufReader::new(input);
    let head = std::io::BufRead::fill_buf(&mut input)
        .map_err(|e| BoxError::io("read the tarball", e))?
        .to_vec();
    let mut reader: Box<dyn Read> = match crate::image::unpack::Compression::sniff(&head) {
        crate::image::unpack::Compression::Gzip => Box::new(flate2::read::GzDecoder::new(input)),
        crate::image::unpack::Compression::Zstd => {
            Box::new(zstd::Decoder::with_buffer(input).map_err(|e| BoxError::io("read zstd", e))?)
        }
        crate::image::unpack::Compression::None => Box::new(input),
    };
    let mut file = tmp
        .reopen()
        .map_err(|e| BoxError::io("open temporary layer", e))?;
    std::io::copy(&mut reader, &mut file).map_err(|e| BoxError::io("read the tarball", e))?;
    let mut check =
        tar::Archive::new(File::open(tmp.path()).map_err(|e| BoxError::io("reopen", e))?);
    check
        .entries()
        .and_then(|mut e| e.next().transpose())
        .map_err(|e| StorageError::Tool {
            tool: "import",
            stderr: format!("not a tar archive: {e}"),
        })?;
    let layer = store_layer(&images, tmp.path())?;
    finish(&images, empty_base(), layer, opts, "a3s-box import")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_makes_a_runnable_one_layer_image() {
        let home = tempfile::tempdir().unwrap();
        let home = EngineConfig::defaults(home.path().into(), None, None);
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        tar.append_data(&mut h, "etc/x", &b"hi"[..]).unwrap();
        let bytes = tar.into_inner().unwrap();
        let opts = CommitOptions {
            changes: vec!["CMD [\"/bin/sh\"]".into()],
            reference: Some("imported:1".into()),
            ..Default::default()
        };
        let made = import(&home, &bytes[..], &opts).unwrap();
        assert_eq!(
            made.reference.as_deref(),
            Some("docker.io/library/imported:1")
        );
        let images = ImageManager::new(&home).unwrap();
        let list = images.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].id, made.id);
        assert!(import(&home, &b"not a tar at all"[..], &opts).is_err());
    }
}
