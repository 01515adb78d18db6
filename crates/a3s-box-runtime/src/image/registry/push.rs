//! Pushing an image from the store to a registry (OCI distribution v2): each blob the
//! registry lacks (checked with `HEAD`) is uploaded monolithically (`POST` for a session,
//! then `PUT …?digest=`), then the manifest is `PUT` under the tag (or digest).
//!
//! Authentication as for pulls (anonymous, basic, bearer challenge), with the bearer
//! scope `repository:<repo>:pull,push`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use futures_util::stream::{self, Stream};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Body, Method, RequestBuilder, Response, StatusCode};
use tokio::io::AsyncReadExt;

use super::auth::Challenge;
use super::client::{bearer_header, check_status as check};
use super::credentials::CredentialStore;
use super::{RegistryClient, RegistryError};
use crate::image::digest::Digest;
use crate::image::reference::Reference;
use crate::image::store::Store;

/// Media type assumed for a stored manifest that does not name its own.
const DEFAULT_MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// Bytes read from a blob file per chunk of an upload body.
const UPLOAD_CHUNK_BYTES: usize = 256 * 1024;

/// What a push sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// Where the image now is.
    pub reference: Reference,
    /// The manifest digest (unchanged by the push).
    pub digest: Digest,
    /// Blobs uploaded (the rest the registry already had).
    pub uploaded: usize,
    /// Blobs the registry already had.
    pub skipped: usize,
}

/// Push the image whose manifest is `manifest` (in `store`) to `dest`.
pub async fn push_image(
    client: &RegistryClient,
    credentials: Option<&CredentialStore>,
    store: &Store,
    manifest: &Digest,
    dest: &Reference,
) -> Result<Pushed, RegistryError> {
    let bytes = store.read_blob(manifest)?;
    let parsed: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|_| RegistryError::UnsupportedMediaType {
            media_type: "(manifest is not JSON)".to_owned(),
        })?;
    let media_type = parsed["mediaType"]
        .as_str()
        .unwrap_or(DEFAULT_MANIFEST_TYPE)
        .to_owned();
    let mut blobs = vec![&parsed["config"]];
    blobs.extend(parsed["layers"].as_array().into_iter().flatten());
    let mut session = Session {
        // reqwest clients share their connection pool when cloned.
        http: client.http().clone(),
        base: format!(
            "{}/v2/{}",
            client.base_url(dest.registry()),
            dest.repository()
        ),
        dest,
        credentials,
        auth: None,
    };
    let (mut uploaded, mut skipped) = (0, 0);
    for desc in blobs {
        let text = desc["digest"].as_str().unwrap_or_default();
        let digest: Digest = text.parse().map_err(|_| RegistryError::BadDescriptor {
            digest: text.to_owned(),
        })?;
        if session.upload_blob(store, &digest).await? {
            uploaded += 1;
        } else {
            skipped += 1;
        }
    }
    let url = format!("{}/manifests/{}", session.base, dest.manifest_selector());
    let resp = session
        .send(Method::PUT, &url, |r| {
            r.header(CONTENT_TYPE, &media_type).body(bytes.clone())
        })
        .await?;
    check(&url, resp).await?;
    Ok(Pushed {
        reference: dest.clone(),
        digest: manifest.clone(),
        uploaded,
        skipped,
    })
}

struct Session<'a> {
    http: reqwest::Client,
    base: String,
    dest: &'a Reference,
    credentials: Option<&'a CredentialStore>,
    auth: Option<String>,
}

impl Session<'_> {
    /// Upload one blob unless the registry has it; whether it was uploaded.
    async fn upload_blob(&mut self, store: &Store, digest: &Digest) -> Result<bool, RegistryError> {
        let url = format!("{}/blobs/{digest}", self.base);
        let head = self.send(Method::HEAD, &url, |r| r).await?;
        if head.status().is_success() {
            return Ok(false);
        }
        let start = format!("{}/blobs/uploads/", self.base);
        let resp = self.send(Method::POST, &start, |r| r).await?;
        let resp = check(&start, resp).await?;
        let location = resp
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Status {
                url: start.clone(),
                status: resp.status().as_u16(),
                body: "upload session without a Location header".to_owned(),
            })?;
        let location = if location.starts_with('/') {
            let origin = self.base.split("/v2/").next().unwrap_or(&self.base);
            format!("{origin}{location}")
        } else {
            location.to_owned()
        };
        // The session is authorized by now, so the body is streamed once, never retried.
        let io_err = |source| RegistryError::Io {
            digest: digest.clone(),
            source,
        };
        let file = tokio::fs::File::open(store.blob_path(digest))
            .await
            .map_err(io_err)?;
        let size = file.metadata().await.map_err(io_err)?.len();
        let req = self
            .http
            .put(&location)
            .query(&[("digest", digest.to_string())])
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(CONTENT_LENGTH, size)
            .body(Body::wrap_stream(chunks(file)));
        let resp = self.attempt(req, &location).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        check(&location, resp).await?;
        Ok(true)
    }

    /// Send with the session's authorization, answering one 401 challenge.
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let resp = self
            .attempt(build(self.http.request(method.clone(), url)), url)
            .await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(Challenge::parse)
            .ok_or_else(|| self.unauthorized())?;
        self.auth = Some(match challenge {
            Challenge::Basic => self.basic()?.ok_or_else(|| self.unauthorized())?,
            Challenge::Bearer { realm, service, .. } => {
                self.bearer(&realm, service.as_deref()).await?
            }
        });
        let resp = self
            .attempt(build(self.http.request(method, url)), url)
            .await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        Ok(resp)
    }

    async fn attempt(&self, mut req: RequestBuilder, url: &str) -> Result<Response, RegistryError> {
        if let Some(auth) = &self.auth {
            req = req.header(AUTHORIZATION, auth);
        }
        req.send().await.map_err(|source| RegistryError::Http {
            url: url.to_owned(),
            source,
        })
    }

    fn unauthorized(&self) -> RegistryError {
        RegistryError::Unauthorized {
            registry: self.dest.registry().to_owned(),
            repository: self.dest.repository().to_owned(),
        }
    }

    fn basic(&self) -> Result<Option<String>, RegistryError> {
        let Some(store) = self.credentials else {
            return Ok(None);
        };
        Ok(store.get(self.dest.registry())?.map(|c| {
            format!(
                "Basic {}",
                BASE64.encode(format!("{}:{}", c.username, c.password))
            )
        }))
    }

    async fn bearer(&self, realm: &str, service: Option<&str>) -> Result<String, RegistryError> {
        let scope = format!("repository:{}:pull,push", self.dest.repository());
        let mut req = self.http.get(realm).query(&[("scope", scope.as_str())]);
        if let Some(service) = service {
            req = req.query(&[("service", service)]);
        }
        if let Some(basic) = self.basic()? {
            req = req.header(AUTHORIZATION, basic);
        }
        let http_err = |source| RegistryError::Http {
            url: realm.to_owned(),
            source,
        };
        let resp = req.send().await.map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized());
        }
        let body = check(realm, resp).await?.bytes().await.map_err(http_err)?;
        bearer_header(realm, &body)
    }
}

/// A file as a stream of chunks, for an upload body.
fn chunks(file: tokio::fs::File) -> impl Stream<Item = std::io::Result<Vec<u8>>> {
    stream::try_unfold(file, |mut file| async move {
        let mut buf = vec![0u8; UPLOAD_CHUNK_BYTES];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
        Ok(Some((buf, file)))
    })
}
