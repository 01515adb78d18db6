//! Image references (`alpine`, `ghcr.io/org/app@sha256:…`, `127.0.0.1:5000/team/tool:1`),
//! parsed and normalised the way Docker does.

use std::fmt;
use std::str::FromStr;

use super::digest::{Digest, DigestError};

/// The registry a reference without a registry host points at.
pub const DOCKER_HUB: &str = "docker.io";
/// The namespace Docker Hub puts single-component names in.
pub const DOCKER_HUB_LIBRARY: &str = "library";
/// The tag used when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
/// Longest repository name (registry excluded) that Docker accepts.
pub const MAX_NAME_LEN: usize = 255;
/// Longest tag that Docker accepts.
pub const MAX_TAG_LEN: usize = 128;

/// Why a reference failed to parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// The reference is empty.
    #[error("invalid image reference: empty")]
    Empty,
    /// A registry host that is not a hostname, IP address or `host:port`.
    #[error("invalid image reference {reference:?}: bad registry host {host:?}")]
    Host { reference: String, host: String },
    /// A repository path component with characters Docker does not allow.
    #[error(
        "invalid image reference {reference:?}: repository component {component:?} must be \
         lowercase letters, digits and single separators (. _ __ -)"
    )]
    Component {
        reference: String,
        component: String,
    },
    /// The repository name is too long.
    #[error("invalid image reference {reference:?}: repository name longer than {MAX_NAME_LEN}")]
    NameTooLong { reference: String },
    /// A tag that is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid image reference {reference:?}: bad tag {tag:?}")]
    Tag { reference: String, tag: String },
    /// A malformed `@digest`.
    #[error("invalid image reference {reference:?}: {source}")]
    Digest {
        reference: String,
        source: DigestError,
    },
}

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry (`library/alpine`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag; `latest` is filled in only when there is no digest either.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The pinned digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry's manifest endpoint for: the digest if pinned, else the tag.
    pub fn manifest_selector(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same image with a digest pinned (the tag is kept).
    pub fn with_digest(&self, digest: Digest) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let reference = s.to_owned();
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => {
                let digest = d
                    .parse::<Digest>()
                    .map_err(|source| ReferenceError::Digest {
                        reference: reference.clone(),
                        source,
                    })?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        // A ':' after the last '/' starts a tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            if !valid_tag(tag) {
                return Err(ReferenceError::Tag {
                    reference,
                    tag: tag.to_owned(),
                });
            }
        }
        let (registry, repository) = split_registry(name);
        if let Some(host) = registry {
            if !valid_host(host) {
                return Err(ReferenceError::Host {
                    reference,
                    host: host.to_owned(),
                });
            }
        }
        let mut registry = registry.unwrap_or(DOCKER_HUB).to_owned();
        if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            registry = DOCKER_HUB.to_owned();
        }
        let mut repository = repository.to_owned();
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("{DOCKER_HUB_LIBRARY}/{repository}");
        }
        for component in repository.split('/') {
            if !valid_component(component) {
                return Err(ReferenceError::Component {
                    reference,
                    component: component.to_owned(),
                });
            }
        }
        if repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong { reference });
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_owned()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_owned()),
        };
        Ok(Self {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Docker's rule: the first component is a registry if it has a '.' or ':' or is `localhost`.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

fn valid_host(host: &str) -> bool {
    let (name, port) = if let Some(inner) = host.strip_prefix('[') {
        // IPv6 literal: [::1] or [::1]:5000
        match inner.split_once(']') {
            Some((addr, rest)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                return rest.is_empty() || rest.strip_prefix(':').is_some_and(valid_port);
            }
            _ => return false,
        }
    } else {
        match host.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (host, None),
        }
    };
    if port.is_some_and(|p| !valid_port(p)) {
        return false;
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok()
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(c: &str) -> bool {
    let bytes = c.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if alnum(b) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TAG_LEN
        && word(bytes[0])
        && bytes.iter().all(|&b| word(b) || b == b'.' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn docker_hub_names_are_normalised() {
        assert_eq!(
            parse("alpine").to_string(),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(
            parse("alpine:3.20").to_string(),
            "docker.io/library/alpine:3.20"
        );
        assert_eq!(parse("user/app").to_string(), "docker.io/user/app:latest");
        assert_eq!(parse("docker.io/alpine").repository(), "library/alpine");
        assert_eq!(
            parse("index.docker.io/library/alpine").registry(),
            "docker.io"
        );
    }

    #[test]
    fn registries_with_ports_and_localhost() {
        let r = parse("127.0.0.1:5000/team/tool:1");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("127.0.0.1:5000", "team/tool", Some("1"))
        );
        let r = parse("localhost:5000/x");
        assert_eq!(
            (r.registry(), r.repository(), r.tag()),
            ("localhost:5000", "x", Some("latest"))
        );
        let r = parse("localhost/x");
        assert_eq!(r.registry(), "localhost");
        assert_eq!(parse("[::1]:5000/x").registry(), "[::1]:5000");
        // No dot, colon or localhost: a Docker Hub namespace, not a host.
        assert_eq!(parse("myhost/x").to_string(), "docker.io/myhost/x:latest");
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let r = parse(&format!("ghcr.io/org/app@sha256:{HEX}"));
        assert_eq!(r.tag(), None);
        assert_eq!(r.manifest_selector(), format!("sha256:{HEX}"));
        let r = parse(&format!("ghcr.io/org/app:v1@sha256:{HEX}"));
        assert_eq!(r.tag(), Some("v1"));
        assert_eq!(r.manifest_selector(), format!("sha256:{HEX}"));
        assert_eq!(r.to_string(), format!("ghcr.io/org/app:v1@sha256:{HEX}"));
        assert_eq!(parse("alpine").manifest_selector(), "latest");
    }

    #[test]
    fn malformed_references_give_typed_errors() {
        assert_eq!("".parse::<Reference>(), Err(ReferenceError::Empty));
        assert!(matches!(
            "Alpine".parse::<Reference>(),
            Err(ReferenceError::Component { .. })
        ));
        assert!(matches!(
            "a//b".parse::<Reference>(),
            Err(ReferenceError::Component { .. })
        ));
        assert!(matches!(
            "a..b".parse::<Reference>(),
            Err(ReferenceError::Component { .. })
        ));
        assert!(matches!(
            "alpine:".parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            "alpine:-x".parse::<Reference>(),
            Err(ReferenceError::Tag { .. })
        ));
        assert!(matches!(
            "alpine@sha256:12".parse::<Reference>(),
            Err(ReferenceError::Digest { .. })
        ));
        assert!(matches!(
            "host:99999/x".parse::<Reference>(),
            Err(ReferenceError::Host { .. })
        ));
        assert!(matches!(
            "-bad.io/x".parse::<Reference>(),
            Err(ReferenceError::Host { .. })
        ));
        let long = "a".repeat(300);
        assert!(matches!(
            long.parse::<Reference>(),
            Err(ReferenceError::NameTooLong { .. })
        ));
        let err = "Alpine"
            .parse::<Reference>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("\"Alpine\""), "{err}");
    }

    #[test]
    fn separators_follow_docker_grammar() {
        for ok in ["a_b", "a__b", "a---b", "a.b", "a1/b2-c"] {
            assert!(ok.parse::<Reference>().is_ok(), "{ok}");
        }
        for bad in ["a___b", "_a", "a-", "a.-b"] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
