//! `login` / `logout`: check credentials against the registry's `/v2/` endpoint (answering
//! its Basic challenge, or getting a token from its Bearer realm, as Docker does), then
//! keep them in `$A3S_HOME/auth.json`.

use reqwest::header::WWW_AUTHENTICATE;
use reqwest::StatusCode;

use super::{ImageError, ImageManager, Result};
use crate::image::reference::DOCKER_HUB;
use crate::image::registry::auth::Challenge;
use crate::image::registry::{Credentials, RegistryError};

/// Names Docker users give Docker Hub's registry.
const DOCKER_HUB_ALIASES: [&str; 3] = ["index.docker.io", "registry-1.docker.io", "docker.io"];

/// `https://index.docker.io/v1/` → `docker.io`; `host:5000/` → `host:5000`.
pub fn registry_host(input: &str) -> String {
    let host = input
        .strip_prefix("https://")
        .or_else(|| input.strip_prefix("http://"))
        .unwrap_or(input);
    let host = host.split('/').next().unwrap_or(host);
    if DOCKER_HUB_ALIASES.contains(&host) {
        DOCKER_HUB.to_owned()
    } else {
        host.to_owned()
    }
}

impl ImageManager {
    /// Verify `creds` with `registry`, then store them. Returns the registry host used.
    pub async fn login(&self, registry: &str, creds: &Credentials) -> Result<String> {
        let host = registry_host(registry);
        let base = self.client()?.base_url(&host);
        let url = format!("{base}/v2/");
        let http = reqwest::Client::builder()
            .user_agent(concat!("a3s-box/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| http_err(&url, source))?;
        let refused = |reason: String| ImageError::Login {
            registry: host.clone(),
            reason,
        };
        let resp = http.get(&url).send().await.map_err(|e| http_err(&url, e))?;
        let status = match resp.status() {
            StatusCode::UNAUTHORIZED => {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Challenge::parse)
                    .ok_or_else(|| refused("no usable authentication challenge".into()))?;
                let req = match challenge {
                    Challenge::Basic => http.get(&url),
                    Challenge::Bearer { realm, service, .. } => {
                        let mut req = http.get(realm).query(&[("account", &creds.username)]);
                        if let Some(service) = service {
                            req = req.query(&[("service", service)]);
                        }
                        req
                    }
                };
                let resp = req
                    .basic_auth(&creds.username, Some(&creds.password))
                    .send()
                    .await
                    .map_err(|e| http_err(&url, e))?;
                resp.status()
            }
            status => status,
        };
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(refused("incorrect username or password".into()));
        }
        if !status.is_success() {
            return Err(refused(format!("HTTP {status}")));
        }
        self.credentials().login(&host, creds)?;
        Ok(host)
    }

    /// Forget the credentials for `registry`; whether any were stored.
    pub fn logout(&self, registry: &str) -> Result<bool> {
        Ok(self.credentials().logout(&registry_host(registry))?)
    }
}

fn http_err(url: &str, source: reqwest::Error) -> ImageError {
    ImageError::Registry(RegistryError::Http {
        url: url.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::registry_host;

    #[test]
    fn hosts_are_normalised() {
        assert_eq!(registry_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_host("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(registry_host("http://reg.local:5000/"), "reg.local:5000");
    }
}
