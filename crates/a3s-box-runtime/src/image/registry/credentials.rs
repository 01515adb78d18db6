//! Registry credentials: our own store (written by `login`, mode 0600) and, read-only,
//! Docker's `~/.docker/config.json` `auths`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Mode of the credential file: readable by its owner only.
pub const CREDENTIALS_FILE_MODE: u32 = 0o600;
/// The key Docker uses for Docker Hub in `auths`.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Errors from reading or writing credential files.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A credential file could not be read or written.
    #[error("credentials {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    /// A credential file is not valid JSON of the expected shape.
    #[error("credentials {path}: invalid JSON: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    /// An `auth` entry is not base64 of `user:password`.
    #[error("credentials {path}: entry for {registry} is not base64 of user:password")]
    BadAuth { path: PathBuf, registry: String },
}

/// A user name and password (or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or access token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AuthEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    auth: Option<String>,
}

/// Where credentials are looked up: our file first, then Docker's.
#[derive(Debug, Clone)]
pub struct CredentialStore {
    path: PathBuf,
    docker_config: Option<PathBuf>,
}

impl CredentialStore {
    /// Credentials kept at `path`, falling back to Docker's `config.json` when given.
    pub fn new(path: impl Into<PathBuf>, docker_config: Option<PathBuf>) -> Self {
        Self {
            path: path.into(),
            docker_config,
        }
    }

    /// Credentials for `registry` (`host[:port]`), if any are stored.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>, CredentialError> {
        for path in std::iter::once(&self.path).chain(self.docker_config.as_ref()) {
            let file = read_auth_file(path)?;
            let found = file
                .auths
                .iter()
                .find(|(key, _)| normalise_key(key) == normalise_key(registry));
            if let Some((_, AuthEntry { auth: Some(auth) })) = found {
                return decode(auth)
                    .map(Some)
                    .ok_or_else(|| CredentialError::BadAuth {
                        path: path.clone(),
                        registry: registry.to_owned(),
                    });
            }
        }
        Ok(None)
    }

    /// Store credentials for `registry` (replacing any).
    pub fn login(&self, registry: &str, creds: &Credentials) -> Result<(), CredentialError> {
        let mut file = read_auth_file(&self.path)?;
        let auth = BASE64.encode(format!("{}:{}", creds.username, creds.password));
        file.auths
            .retain(|k, _| normalise_key(k) != normalise_key(registry));
        file.auths
            .insert(registry.to_owned(), AuthEntry { auth: Some(auth) });
        self.write(&file)
    }

    /// Forget `registry`; returns whether anything was stored for it.
    pub fn logout(&self, registry: &str) -> Result<bool, CredentialError> {
        let mut file = read_auth_file(&self.path)?;
        let before = file.auths.len();
        file.auths
            .retain(|k, _| normalise_key(k) != normalise_key(registry));
        if file.auths.len() == before {
            return Ok(false);
        }
        self.write(&file)?;
        Ok(true)
    }

    fn write(&self, file: &AuthFile) -> Result<(), CredentialError> {
        let io_err = |source| CredentialError::Io {
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io_err)?;
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(CREDENTIALS_FILE_MODE))
            .map_err(io_err)?;
        let json = serde_json::to_vec_pretty(file).map_err(|source| CredentialError::Parse {
            path: self.path.clone(),
            source,
        })?;
        tmp.write_all(&json).map_err(io_err)?;
        tmp.as_file().sync_all().map_err(io_err)?;
        tmp.persist(&self.path).map_err(|e| io_err(e.error))?;
        Ok(())
    }
}

fn read_auth_file(path: &Path) -> Result<AuthFile, CredentialError> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| CredentialError::Parse {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(AuthFile::default()),
        Err(source) => Err(CredentialError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `https://index.docker.io/v1/`, `index.docker.io` and `docker.io` all mean Docker Hub;
/// other keys may carry a scheme or a trailing path.
fn normalise_key(key: &str) -> String {
    if key == DOCKER_HUB_AUTH_KEY {
        return "docker.io".to_owned();
    }
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_owned(),
        other => other.to_owned(),
    }
}

fn decode(auth: &str) -> Option<Credentials> {
    let bytes = BASE64.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some(Credentials {
        username: user.to_owned(),
        password: pass.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn creds(u: &str, p: &str) -> Credentials {
        Credentials {
            username: u.into(),
            password: p.into(),
        }
    }

    #[test]
    fn login_writes_0600_and_logout_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = CredentialStore::new(dir.path().join("a3s/credentials.json"), None);
        assert_eq!(store.get("127.0.0.1:5000").unwrap(), None);
        store
            .login("127.0.0.1:5000", &creds("alice", "s3:cret"))
            .unwrap();
        let mode = fs::metadata(dir.path().join("a3s/credentials.json"))
            .unwrap()
            .mode();
        assert_eq!(mode & 0o777, CREDENTIALS_FILE_MODE);
        assert_eq!(
            store.get("127.0.0.1:5000").unwrap(),
            Some(creds("alice", "s3:cret"))
        );
        assert!(store.logout("127.0.0.1:5000").unwrap());
        assert!(!store.logout("127.0.0.1:5000").unwrap());
        assert_eq!(store.get("127.0.0.1:5000").unwrap(), None);
    }

    #[test]
    fn docker_config_is_a_fallback_and_hub_keys_match() {
        let dir = tempfile::tempdir().unwrap();
        let docker = dir.path().join("config.json");
        let hub = BASE64.encode("bob:pw");
        let ghcr = BASE64.encode("carol:tok");
        fs::write(
            &docker,
            format!(
                r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{hub}"}},
                     "https://ghcr.io": {{"auth": "{ghcr}"}}, "empty.io": {{}}}},
                     "credsStore": "desktop"}}"#
            ),
        )
        .unwrap();
        let store = CredentialStore::new(dir.path().join("ours.json"), Some(docker));
        assert_eq!(store.get("docker.io").unwrap(), Some(creds("bob", "pw")));
        assert_eq!(store.get("ghcr.io").unwrap(), Some(creds("carol", "tok")));
        assert_eq!(store.get("empty.io").unwrap(), None);
        store.login("ghcr.io", &creds("dave", "x")).unwrap();
        assert_eq!(store.get("ghcr.io").unwrap(), Some(creds("dave", "x")));
        assert!(!format!("{:?}", creds("u", "secret")).contains("secret"));
    }
}
