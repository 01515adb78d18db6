//! Images on this host: pull, resolve for `run`, list, tag, remove, inspect, prune.
//!
//! Layout under `$A3S_HOME/images/`:
//!
//! ```text
//! store/                 the content-addressed Store (blobs + refs.json)
//! rootfs/<hex>/          the image unpacked, <hex> = manifest digest; what a box boots
//! rootfs/.<hex>.lock     flock(2) held while <hex> is being unpacked
//! gc.lock                shared by pulls and unpacks, exclusive for rmi and prune
//! ```
//!
//! A rootfs directory appears only by an atomic rename once every layer is applied, so
//! its presence means "complete"; `rootfs::cached_image` turns it into the box's root image
//! (cached by tree metadata), so the second run of an image unpacks nothing. Pulls and
//! unpacks hold `gc.lock` shared, so a concurrent `rmi`/`prune` (exclusive) never deletes
//! a blob a pull has written but not yet referenced.

mod archive;
mod describe;
mod gc;
mod load;
mod login;
mod lookup;
mod progress;
mod push;
mod register;

use std::fs::{self, OpenOptions};
use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use nix::fcntl::{Flock, FlockArg};
use oci_spec::image::ImageManifest;

use crate::config::EngineConfig;
use crate::home::Home;
use crate::image::config::{ConfigError, ImageConfig};
use crate::image::digest::Digest;
use crate::image::reference::{Reference, ReferenceError};
use crate::image::registry::{
    self, ClientOptions, CredentialError, CredentialStore, Platform, RegistryClient, RegistryError,
};
use crate::image::store::{Store, StoreError};
use crate::image::unpack::{unpack_layers, UnpackError};

pub use archive::{ArchiveError, ArchiveFormat};
pub use describe::{short_name, HistoryEntry};
pub use gc::{PruneReport, Removed};
pub use load::LoadedImage;
pub use progress::human_size;

/// Credentials written by `a3s-box login`, under the home.
pub const AUTH_FILE: &str = "auth.json";
/// Shortest hex prefix accepted as an image id.
pub const MIN_ID_PREFIX: usize = 4;
const IMAGES_DIR: &str = "images";
const STORE_DIR: &str = "store";
const ROOTFS_DIR: &str = "rootfs";
const GC_LOCK: &str = "gc.lock";

/// Errors from image operations.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The `--platform` does not parse.
    #[error(transparent)]
    Platform(#[from] registry::PlatformError),
    /// Talking to the registry failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpacking layers failed.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// The image config is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Credentials could not be read or written.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// No local image has this name or id.
    #[error("no such image: {reference}")]
    NotFound { reference: String },
    /// `--pull never` and the image is not here.
    #[error("image {reference} is not present locally and the pull policy is never")]
    NotPulled { reference: String },
    /// The image's last tag is used by boxes.
    #[error("unable to remove {reference}: image is in use by box {boxes} (use -f to force)")]
    InUse { reference: String, boxes: String },
    /// An id names an image tagged in several repositories.
    #[error("unable to remove {reference}: it is referenced by {names} (use -f to force)")]
    Ambiguous { reference: String, names: String },
    /// An id prefix matches several images.
    #[error("image id {reference} is ambiguous: it matches several images")]
    AmbiguousId { reference: String },
    /// A pull policy other than always, missing or never.
    #[error("invalid pull policy {value:?}: expected always, missing or never")]
    BadPolicy { value: String },
    /// A stored manifest or config does not parse.
    #[error("image store: invalid {what} {digest}: {reason}")]
    Corrupt {
        what: &'static str,
        digest: Digest,
        reason: String,
    },
    /// Login was refused by the registry.
    #[error("login to {registry} failed: {reason}")]
    Login { registry: String, reason: String },
    /// The box store could not be read.
    #[error("listing boxes: {source}")]
    Boxes { source: a3s_box_core::BoxError },
    /// A filesystem operation failed.
    #[error("images: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// A blocking task failed to run.
    #[error("background task failed: {source}")]
    Task { source: tokio::task::JoinError },
}

impl From<ImageError> for a3s_box_core::BoxError {
    /// Image errors keep their message and get the kind a front end acts on.
    fn from(e: ImageError) -> Self {
        use a3s_box_core::BoxError;
        match e {
            ImageError::NotFound { reference } => BoxError::not_found("image", reference),
            ImageError::Boxes { source } => source,
            e @ (ImageError::InUse { .. } | ImageError::Ambiguous { .. }) => {
                BoxError::Conflict(e.to_string())
            }
            e @ (ImageError::Reference(_)
            | ImageError::Platform(_)
            | ImageError::Config(_)
            | ImageError::NotPulled { .. }
            | ImageError::AmbiguousId { .. }
            | ImageError::BadPolicy { .. }) => BoxError::Invalid(e.to_string()),
            e @ (ImageError::Registry(_) | ImageError::Login { .. }) => {
                BoxError::Unavailable(e.to_string())
            }
            ImageError::Io { op, path, source } => {
                BoxError::io(format!("images: {op} {}", path.display()), source)
            }
            other => BoxError::io("images", io::Error::other(other.to_string())),
        }
    }
}

type Result<T> = std::result::Result<T, ImageError>;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// When `run` pulls: Docker's `--pull always|missing|never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    /// Pull every time (a no-op download when nothing changed).
    Always,
    /// Pull only when the image is not here.
    #[default]
    Missing,
    /// Never pull; fail when the image is not here.
    Never,
}

impl FromStr for PullPolicy {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "always" => Ok(Self::Always),
            "missing" => Ok(Self::Missing),
            "never" => Ok(Self::Never),
            _ => Err(ImageError::BadPolicy {
                value: s.to_owned(),
            }),
        }
    }
}

/// One reference in the local image list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageSummary {
    /// Fully qualified reference (`docker.io/library/alpine:3.20`).
    pub reference: String,
    /// Manifest digest (what `RepoDigests` shows).
    pub digest: Digest,
    /// Image id: the config digest, as Docker computes it.
    pub id: Digest,
    /// The config's `created`, if it has one.
    pub created: Option<String>,
    /// Bytes of the image's blobs as pulled (config and compressed layers).
    pub size: u64,
}

/// An image ready to boot.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Unpacked root filesystem (never modified; shared by every box of the image).
    pub rootfs_dir: PathBuf,
    /// The image config.
    pub config: ImageConfig,
    /// Manifest digest.
    pub digest: Digest,
    /// The reference it was found by.
    pub reference: String,
}

/// The images under one home.
#[derive(Debug, Clone)]
pub struct ImageManager {
    home: Home,
    root: PathBuf,
    store: Store,
    progress: bool,
    insecure_registries: Vec<String>,
    docker_config: Option<PathBuf>,
}

impl ImageManager {
    /// Open (creating) `$A3S_HOME/images` of `config`'s home; registries
    /// are reached with `config`'s settings.
    pub fn new(config: &EngineConfig) -> Result<Self> {
        let home = config.home_dir();
        let root = home.root().join(IMAGES_DIR);
        let store = Store::open(root.join(STORE_DIR))?;
        let rootfs = root.join(ROOTFS_DIR);
        fs::create_dir_all(&rootfs).map_err(io_err("create", &rootfs))?;
        Ok(Self {
            home,
            root,
            store,
            progress: false,
            insecure_registries: config.insecure_registries.clone(),
            docker_config: config.docker_config.clone(),
        })
    }

    /// Show pull progress (on a TTY) when [`Self::ensure`] has to pull.
    pub fn with_progress(mut self, progress: bool) -> Self {
        self.progress = progress;
        self
    }

    /// The content-addressed store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the image with this manifest digest is unpacked.
    pub fn rootfs_dir(&self, digest: &Digest) -> PathBuf {
        self.root.join(ROOTFS_DIR).join(digest.hex())
    }

    /// Our credentials file, with Docker's `config.json` as fallback.
    pub fn credentials(&self) -> CredentialStore {
        CredentialStore::new(self.home.root().join(AUTH_FILE), self.docker_config.clone())
    }

    /// Registries the user marked insecure (plain HTTP allowed).
    pub fn insecure_registries(&self) -> &[String] {
        &self.insecure_registries
    }

    fn client(&self) -> Result<RegistryClient> {
        Ok(RegistryClient::new(ClientOptions {
            insecure_registries: self.insecure_registries.clone(),
            credentials: Some(self.credentials()),
        })?)
    }

    fn lock(&self, exclusive: bool) -> Result<Flock<fs::File>> {
        lock_file(&self.root.join(GC_LOCK), exclusive)
    }

    /// Pull `reference` for `platform` (default: this host) and, for this host's
    /// platform, unpack it so that the first `run` does no unpacking (as `docker pull`
    /// extracts). Progress goes to stderr, one line per layer, only when `progress` is set
    /// and stderr is a terminal.
    pub async fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        progress: bool,
    ) -> Result<ImageSummary> {
        let reference: Reference = reference.parse()?;
        let platform = match platform {
            Some(p) => p.parse()?,
            None => Platform::host(),
        };
        let client = self.client()?;
        let pulled = {
            let _gc = self.lock(false)?;
            let display = if progress && io::stderr().is_terminal() {
                progress::Display::start(&client, &self.store, &reference, &platform).await
            } else {
                None
            };
            let pulled = registry::pull(&client, &self.store, &reference, &platform).await;
            if let Some(display) = display {
                display.finish(pulled.is_ok()).await;
            }
            pulled?
        };
        if platform == Platform::host() {
            self.unpack(&pulled.manifest_digest, &pulled.manifest)
                .await?;
        }
        self.summary(&reference.to_string(), &pulled.manifest_digest)
    }

    /// The image `reference` names, pulled per `policy` and unpacked if it is not yet.
    pub async fn ensure(&self, reference: &str, policy: PullPolicy) -> Result<ResolvedImage> {
        let local = match self.find(reference) {
            Ok(found) => Some(found),
            Err(ImageError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        let (name, digest) = match (policy, local) {
            (PullPolicy::Never | PullPolicy::Missing, Some(found)) => {
                (found.names.join(", "), found.digest)
            }
            (PullPolicy::Never, None) => {
                return Err(ImageError::NotPulled {
                    reference: reference.to_owned(),
                })
            }
            (PullPolicy::Always, _) | (PullPolicy::Missing, None) => {
                let summary = self.pull(reference, None, self.progress).await?;
                (summary.reference, summary.digest)
            }
        };
        let manifest = self.manifest(&digest)?;
        let config_digest = blob_digest(manifest.config().digest().as_ref(), &digest)?;
        let config = ImageConfig::from_json(&self.store.read_blob(&config_digest)?)?;
        let rootfs_dir = self.unpack(&digest, &manifest).await?;
        Ok(ResolvedImage {
            rootfs_dir,
            config,
            digest,
            reference: name,
        })
    }

    /// Unpack the image into its rootfs directory unless it is there already.
    async fn unpack(&self, digest: &Digest, manifest: &ImageManifest) -> Result<PathBuf> {
        let dest = self.rootfs_dir(digest);
        if dest.is_dir() {
            return Ok(dest);
        }
        let layers = manifest
            .layers()
            .iter()
            .map(|l| {
                Ok(self
                    .store
                    .blob_path(&blob_digest(l.digest().as_ref(), digest)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let gc = self.lock(false)?;
        let lock_path = self
            .root
            .join(ROOTFS_DIR)
            .join(format!(".{}.lock", digest.hex()));
        let out = dest.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let _gc = gc;
            let _unpacking = lock_file(&lock_path, true)?;
            if !out.is_dir() {
                unpack_layers(&layers, &out)?;
            }
            Ok(())
        })
        .await
        .map_err(|source| ImageError::Task { source })??;
        Ok(dest)
    }

    /// Every local reference, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        self.store
            .refs()?
            .iter()
            .map(|(name, digest)| self.summary(name, digest))
            .collect()
    }

    /// Point `dst` at the image `src` names.
    pub fn tag(&self, src: &str, dst: &str) -> Result<()> {
        let found = self.find(src)?;
        let dst: Reference = dst.parse()?;
        self.store.set_ref(&dst.to_string(), &found.digest)?;
        Ok(())
    }
}

/// A descriptor's digest text as a [`Digest`]; `within` names the manifest for errors.
fn blob_digest(text: &str, within: &Digest) -> Result<Digest> {
    text.parse().map_err(|_| ImageError::Corrupt {
        what: "manifest",
        digest: within.clone(),
        reason: format!("descriptor digest {text:?} is not sha256"),
    })
}

fn lock_file(path: &Path, exclusive: bool) -> Result<Flock<fs::File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("open", path))?;
    let arg = if exclusive {
        FlockArg::LockExclusive
    } else {
        FlockArg::LockShared
    };
    Flock::lock(file, arg).map_err(|(_, errno)| ImageError::Io {
        op: "lock",
        path: path.to_owned(),
        source: errno.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_parses() {
        assert_eq!("always".parse::<PullPolicy>().unwrap(), PullPolicy::Always);
        assert_eq!(PullPolicy::default(), PullPolicy::Missing);
        assert!("sometimes".parse::<PullPolicy>().is_err());
    }
}
