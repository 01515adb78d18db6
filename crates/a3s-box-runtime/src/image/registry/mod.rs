//! OCI distribution v2 client: manifests, blobs, authentication, and pulling an image
//! into the [`Store`](super::store::Store).

pub mod auth;
mod client;
pub mod credentials;
mod platform;
mod pull;
pub mod push;

use std::io;

pub use client::{ClientOptions, Manifest, RegistryClient};
pub use credentials::{CredentialError, CredentialStore, Credentials};
pub use platform::{Platform, PlatformError};
pub use pull::{pull, PulledImage};

use super::config::ConfigError;
use super::digest::Digest;
use super::store::StoreError;

/// Largest manifest or index accepted (registries cap them at 4 MiB too).
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Layers downloaded at once.
pub const MAX_PARALLEL_DOWNLOADS: usize = 4;

/// Errors from talking to a registry or pulling an image.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The HTTP request failed (connection, TLS, body stream).
    #[error("registry request {url}: {source}")]
    Http { url: String, source: reqwest::Error },
    /// The registry answered with an unexpected status.
    #[error("registry {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// Authentication was required and failed (or no credentials are stored).
    #[error("registry {registry}: unauthorized for {repository} (try `a3s-box login {registry}`)")]
    Unauthorized {
        registry: String,
        repository: String,
    },
    /// The token endpoint gave no usable token.
    #[error("registry token endpoint {url} returned no token")]
    Token { url: String },
    /// A manifest bigger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest {url} is larger than {MAX_MANIFEST_BYTES} bytes")]
    ManifestTooLarge { url: String },
    /// A manifest media type we cannot use (e.g. Docker schema 1).
    #[error("unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType { media_type: String },
    /// A manifest that is not valid JSON for its media type.
    #[error("invalid manifest {digest}: {source}")]
    BadManifest {
        digest: Digest,
        source: oci_spec::OciSpecError,
    },
    /// A manifest whose bytes do not match the digest it was asked for by.
    #[error("manifest digest mismatch: asked for {expected}, got {actual}")]
    ManifestDigest { expected: Digest, actual: Digest },
    /// A descriptor with a digest that is not sha256.
    #[error("descriptor digest {digest:?} is not a sha256 digest")]
    BadDescriptor { digest: String },
    /// An index with no manifest for the wanted platform.
    #[error("no manifest for platform {platform} in {reference} (available: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: Platform,
        available: String,
    },
    /// A blob could not be stored (including digest or size mismatch).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored credentials could not be read.
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    /// The image config is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A blocking task (blob commit) failed to run.
    #[error("background task failed: {source}")]
    Task { source: tokio::task::JoinError },
    /// A local I/O failure while streaming a blob.
    #[error("writing blob {digest}: {source}")]
    Io { digest: Digest, source: io::Error },
}
