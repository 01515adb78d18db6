//! Pulling an image: resolve the index to one manifest, download config and layers
//! (in parallel, each verified) into the store, then record the reference.

use futures_util::stream::{self, TryStreamExt};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use super::client::{Manifest, RegistryClient};
use super::{Platform, RegistryError, MAX_PARALLEL_DOWNLOADS};
use crate::image::config::ImageConfig;
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::store::Store;

/// What a pull left in the store.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as asked for (normalised).
    pub reference: Reference,
    /// Digest of the image manifest (not of the index it may have come from).
    pub manifest_digest: Digest,
    /// Digest of the index the manifest was chosen from, if there was one.
    pub index_digest: Option<Digest>,
    /// The image manifest.
    pub manifest: ImageManifest,
    /// The parsed image config.
    pub config: ImageConfig,
    /// Layer digests, lowest first; their blobs are in the store.
    pub layers: Vec<Digest>,
}

/// Pull `reference` for `platform` into `store` and point the reference at it.
pub async fn pull(
    client: &RegistryClient,
    store: &Store,
    reference: &Reference,
    platform: &Platform,
) -> Result<PulledImage, RegistryError> {
    let top = client
        .manifest(reference, &reference.manifest_selector())
        .await?;
    store.put_blob(&top.bytes, Some(&top.digest))?;
    let (manifest, index_digest) = if top.is_index() {
        let index = ImageIndex::from_reader(top.bytes.as_slice()).map_err(|source| {
            RegistryError::BadManifest {
                digest: top.digest.clone(),
                source,
            }
        })?;
        let chosen = choose(&index, platform, reference)?;
        let m = client.manifest(reference, &chosen.to_string()).await?;
        if m.is_index() {
            return Err(RegistryError::UnsupportedMediaType {
                media_type: m.media_type,
            });
        }
        store.put_blob(&m.bytes, Some(&m.digest))?;
        (m, Some(top.digest))
    } else {
        (top, None)
    };
    let Manifest { digest, bytes, .. } = manifest;
    let image = ImageManifest::from_reader(bytes.as_slice()).map_err(|source| {
        RegistryError::BadManifest {
            digest: digest.clone(),
            source,
        }
    })?;

    let config_desc = image.config();
    let config_digest = descriptor_digest(config_desc)?;
    let layers = image
        .layers()
        .iter()
        .map(descriptor_digest)
        .collect::<Result<Vec<_>, _>>()?;
    let mut wanted: Vec<(Digest, u64)> = vec![(config_digest.clone(), config_desc.size())];
    wanted.extend(
        layers
            .iter()
            .cloned()
            .zip(image.layers().iter().map(Descriptor::size)),
    );
    stream::iter(wanted.into_iter().map(Ok))
        .try_for_each_concurrent(MAX_PARALLEL_DOWNLOADS, |(d, size)| async move {
            client.fetch_blob(reference, &d, size, store).await
        })
        .await?;
    let config = ImageConfig::from_json(&store.read_blob(&config_digest)?)?;
    store.set_ref(&reference.to_string(), &digest)?;
    Ok(PulledImage {
        reference: reference.clone(),
        manifest_digest: digest,
        index_digest,
        manifest: image,
        config,
        layers,
    })
}

fn descriptor_digest(d: &Descriptor) -> Result<Digest, RegistryError> {
    d.digest()
        .to_string()
        .parse()
        .map_err(|_| RegistryError::BadDescriptor {
            digest: d.digest().to_string(),
        })
}

fn choose(
    index: &ImageIndex,
    platform: &Platform,
    reference: &Reference,
) -> Result<Digest, RegistryError> {
    let mut available = Vec::new();
    for m in index.manifests() {
        let Some(p) = m.platform() else { continue };
        let (os, arch) = (p.os().to_string(), p.architecture().to_string());
        if platform.matches(&os, &arch, p.variant().as_deref()) {
            return descriptor_digest(m);
        }
        available.push(format!("{os}/{arch}"));
    }
    Err(RegistryError::NoMatchingPlatform {
        reference: reference.to_string(),
        platform: platform.clone(),
        available: available.join(", "),
    })
}
