//! HTTP side of the distribution API: scheme choice, authentication, manifests, blobs.

use std::collections::HashMap;
use std::io::Write;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures_util::StreamExt;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Response, StatusCode};

use super::auth::{Challenge, TokenResponse};
use super::credentials::CredentialStore;
use super::{RegistryError, MAX_MANIFEST_BYTES};
use crate::image::digest::Digest;
use crate::image::reference::{Reference, DOCKER_HUB};
use crate::image::store::Store;

/// Media types of image manifests we accept.
pub const MANIFEST_TYPES: [&str; 2] = [
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Media types of indexes (manifest lists) we accept.
pub const INDEX_TYPES: [&str; 2] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Body characters kept in an error message.
const ERROR_BODY_CHARS: usize = 512;

/// How the client reaches registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Registries (`host[:port]`) that may be spoken to over plain HTTP.
    /// Loopback registries always may.
    pub insecure_registries: Vec<String>,
    /// Where credentials come from; `None` means anonymous only.
    pub credentials: Option<CredentialStore>,
}

/// A manifest or index as fetched: its digest, media type and exact bytes.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// Media type (from the body's `mediaType`, else the Content-Type header).
    pub media_type: String,
    /// The bytes as served (what the digest covers).
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// Whether this is an index / manifest list rather than an image manifest.
    pub fn is_index(&self) -> bool {
        INDEX_TYPES.contains(&self.media_type.as_str())
    }
}

/// A registry client; keeps bearer tokens per repository for its lifetime.
#[derive(Debug)]
pub struct RegistryClient {
    http: reqwest::Client,
    options: ClientOptions,
    auth: Mutex<HashMap<String, String>>,
}

impl RegistryClient {
    /// The HTTP client (for the push session, which keeps its own auth).
    pub(super) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A client with HTTPS verified against the system roots.
    pub fn new(options: ClientOptions) -> Result<Self, RegistryError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("a3s-box/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistryError::Http {
                url: String::new(),
                source,
            })?;
        Ok(Self {
            http,
            options,
            auth: Mutex::new(HashMap::new()),
        })
    }

    /// `https://host` or, for loopback and insecure registries, `http://host`.
    pub fn base_url(&self, registry: &str) -> String {
        let host = if registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            registry
        };
        let insecure = self
            .options
            .insecure_registries
            .iter()
            .any(|r| r == registry);
        let scheme = if insecure || is_loopback(registry) {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://{host}")
    }

    /// Fetch the manifest or index `reference` names (by digest if pinned, else by tag).
    pub async fn manifest(
        &self,
        reference: &Reference,
        selector: &str,
    ) -> Result<Manifest, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{selector}",
            self.base_url(reference.registry()),
            reference.repository()
        );
        let accept = MANIFEST_TYPES
            .iter()
            .chain(&INDEX_TYPES)
            .copied()
            .collect::<Vec<_>>()
            .join(", ");
        let resp = self.get(reference, &url, Some(&accept)).await?;
        let header_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned());
        let mut bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| RegistryError::Http {
                url: url.clone(),
                source,
            })?;
            if bytes.len() + chunk.len() > MAX_MANIFEST_BYTES {
                return Err(RegistryError::ManifestTooLarge { url });
            }
            bytes.extend_from_slice(&chunk);
        }
        let digest = Digest::of(&bytes);
        if let Ok(expected) = selector.parse::<Digest>() {
            if expected != digest {
                return Err(RegistryError::ManifestDigest {
                    expected,
                    actual: digest,
                });
            }
        }
        #[derive(serde::Deserialize)]
        struct MediaTypeOnly {
            #[serde(rename = "mediaType")]
            media_type: Option<String>,
        }
        let body_type = serde_json::from_slice::<MediaTypeOnly>(&bytes)
            .ok()
            .and_then(|m| m.media_type);
        let media_type = body_type.or(header_type).unwrap_or_default();
        if !MANIFEST_TYPES.contains(&media_type.as_str())
            && !INDEX_TYPES.contains(&media_type.as_str())
        {
            return Err(RegistryError::UnsupportedMediaType { media_type });
        }
        Ok(Manifest {
            digest,
            media_type,
            bytes,
        })
    }

    /// Download a blob into `store`, verifying digest and size as it streams.
    /// Does nothing when the store already has it.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        digest: &Digest,
        size: u64,
        store: &Store,
    ) -> Result<(), RegistryError> {
        if store.has_blob(digest, Some(size)) {
            return Ok(());
        }
        let url = format!(
            "{}/v2/{}/blobs/{digest}",
            self.base_url(reference.registry()),
            reference.repository()
        );
        let resp = self.get(reference, &url, None).await?;
        let mut writer = store.blob_writer(digest.clone(), size)?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| RegistryError::Http {
                url: url.clone(),
                source,
            })?;
            writer
                .write_all(&chunk)
                .map_err(|source| RegistryError::Io {
                    digest: digest.clone(),
                    source,
                })?;
        }
        tokio::task::spawn_blocking(move || writer.commit())
            .await
            .map_err(|source| RegistryError::Task { source })??;
        Ok(())
    }

    /// GET with the cached authorization, answering one 401 challenge if needed.
    async fn get(
        &self,
        reference: &Reference,
        url: &str,
        accept: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let key = format!("{}/{}", reference.registry(), reference.repository());
        let cached = self.auth.lock().ok().and_then(|m| m.get(&key).cloned());
        let resp = self.send(url, accept, cached.as_deref()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return check_status(url, resp).await;
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse);
        let unauthorized = || RegistryError::Unauthorized {
            registry: reference.registry().to_owned(),
            repository: reference.repository().to_owned(),
        };
        let header = match challenge.ok_or_else(unauthorized)? {
            Challenge::Basic => self.basic_header(reference)?.ok_or_else(unauthorized)?,
            Challenge::Bearer { realm, service, .. } => {
                let scope = format!("repository:{}:pull", reference.repository());
                self.bearer_header(reference, &realm, service.as_deref(), &scope)
                    .await?
            }
        };
        if let Ok(mut m) = self.auth.lock() {
            m.insert(key, header.clone());
        }
        let resp = self.send(url, accept, Some(&header)).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(unauthorized());
        }
        check_status(url, resp).await
    }

    async fn send(
        &self,
        url: &str,
        accept: Option<&str>,
        auth: Option<&str>,
    ) -> Result<Response, RegistryError> {
        let mut req = self.http.get(url);
        if let Some(accept) = accept {
            req = req.header(ACCEPT, accept);
        }
        if let Some(auth) = auth {
            req = req.header(AUTHORIZATION, auth);
        }
        req.send().await.map_err(|source| RegistryError::Http {
            url: url.to_owned(),
            source,
        })
    }

    fn basic_header(&self, reference: &Reference) -> Result<Option<String>, RegistryError> {
        let Some(store) = &self.options.credentials else {
            return Ok(None);
        };
        Ok(store.get(reference.registry())?.map(|c| {
            format!(
                "Basic {}",
                BASE64.encode(format!("{}:{}", c.username, c.password))
            )
        }))
    }

    async fn bearer_header(
        &self,
        reference: &Reference,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, RegistryError> {
        let http_err = |source| RegistryError::Http {
            url: realm.to_owned(),
            source,
        };
        let mut req = self.http.get(realm).query(&[("scope", scope)]);
        if let Some(service) = service {
            req = req.query(&[("service", service)]);
        }
        if let Some(basic) = self.basic_header(reference)? {
            req = req.header(AUTHORIZATION, basic);
        }
        let resp = req.send().await.map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(RegistryError::Unauthorized {
                registry: reference.registry().to_owned(),
                repository: reference.repository().to_owned(),
            });
        }
        let resp = check_status(realm, resp).await?;
        let body = resp.bytes().await.map_err(http_err)?;
        bearer_header(realm, &body)
    }
}

/// The `Authorization` value from a token endpoint's answer.
pub(super) fn bearer_header(realm: &str, body: &[u8]) -> Result<String, RegistryError> {
    serde_json::from_slice::<TokenResponse>(body)
        .ok()
        .and_then(TokenResponse::into_token)
        .map(|t| format!("Bearer {t}"))
        .ok_or_else(|| RegistryError::Token {
            url: realm.to_owned(),
        })
}

/// `resp` if it succeeded, else a status error carrying the start of its body.
pub(super) async fn check_status(url: &str, resp: Response) -> Result<Response, RegistryError> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status().as_u16();
    let body: String = resp
        .text()
        .await
        .unwrap_or_default()
        .chars()
        .take(ERROR_BODY_CHARS)
        .collect();
    Err(RegistryError::Status {
        url: url.to_owned(),
        status,
        body,
    })
}

/// `localhost`, `127.x.y.z` and `::1`, with or without a port.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(inner) = registry.strip_prefix('[') {
        inner.split(']').next().unwrap_or(inner)
    } else {
        registry.split(':').next().unwrap_or(registry)
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_insecure() {
        let client = RegistryClient::new(ClientOptions {
            insecure_registries: vec!["lab.local:5000".into()],
            credentials: None,
        })
        .unwrap();
        assert_eq!(client.base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(client.base_url("localhost:5000"), "http://localhost:5000");
        assert_eq!(client.base_url("[::1]:5000"), "http://[::1]:5000");
        assert_eq!(client.base_url("lab.local:5000"), "http://lab.local:5000");
        assert_eq!(client.base_url("ghcr.io"), "https://ghcr.io");
        assert_eq!(
            client.base_url("127.example.com"),
            "https://127.example.com"
        );
        assert_eq!(client.base_url("docker.io"), "https://registry-1.docker.io");
    }
}
