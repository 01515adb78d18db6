//! `WWW-Authenticate` challenges and the bearer-token exchange.

use std::collections::BTreeMap;

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm="..."`: send the user's credentials with every request.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: get a token from `realm` first.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass back, if the registry named one.
        service: Option<String>,
        /// `scope` the registry asked for, if any.
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parse the header value; `None` for schemes we do not speak.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Some(Self::Basic);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let mut params = parse_params(rest);
        Some(Self::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        })
    }
}

/// `key="value", key2=value2` (values may be quoted and contain commas).
fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.insert(key, value.trim().to_owned());
        rest = after.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// The token endpoint's answer (`token` per Docker, `access_token` per OAuth2).
#[derive(Debug, serde::Deserialize)]
pub struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    /// The bearer token, whichever field carried it.
    pub fn into_token(self) -> Option<String> {
        self.token.or(self.access_token).filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            })
        );
    }

    #[test]
    fn parses_basic_and_unquoted_and_rejects_unknown() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("bearer realm=https://t.example/token, service=x"),
            Some(Challenge::Bearer {
                realm: "https://t.example/token".into(),
                service: Some("x".into()),
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Negotiate abc"), None);
        assert_eq!(Challenge::parse(r#"Bearer service="x""#), None);
    }

    #[test]
    fn token_response_accepts_either_field() {
        let t: TokenResponse = serde_json::from_str(r#"{"access_token":"a"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("a"));
        let t: TokenResponse = serde_json::from_str(r#"{"token":"b","access_token":"a"}"#).unwrap();
        assert_eq!(t.into_token().as_deref(), Some("b"));
    }
}
