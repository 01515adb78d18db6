//! `os/arch[/variant]` platforms, used to pick a manifest out of an index.

use std::fmt;
use std::str::FromStr;

/// A platform such as `linux/amd64` or `linux/arm64/v8`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system (`linux`).
    pub os: String,
    /// CPU architecture in Go/OCI spelling (`amd64`, `arm64`).
    pub architecture: String,
    /// Architecture variant (`v8`), if any.
    pub variant: Option<String>,
}

/// A platform that is not `os/arch[/variant]`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid platform {value:?}: expected os/arch[/variant], e.g. linux/amd64")]
pub struct PlatformError {
    /// The text that failed to parse.
    pub value: String,
}

impl Platform {
    /// The platform this binary runs on (`linux/amd64` on x86-64).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: "linux".to_owned(),
            architecture: architecture.to_owned(),
            variant: None,
        }
    }

    /// Whether an index entry's platform fields match this platform
    /// (a variant is only compared when we asked for one).
    pub fn matches(&self, os: &str, architecture: &str, variant: Option<&str>) -> bool {
        self.os == os
            && self.architecture == architecture
            && self.variant.as_deref().is_none_or(|v| variant == Some(v))
    }
}

impl FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let ok =
            |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, v] if ok(os) && ok(arch) && ok(v) => Ok(Self {
                os: (*os).to_owned(),
                architecture: (*arch).to_owned(),
                variant: Some((*v).to_owned()),
            }),
            _ => Err(PlatformError {
                value: s.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_matches() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(!p.matches("linux", "arm64", None));
        let p: Platform = "linux/amd64".parse().unwrap();
        assert!(p.matches("linux", "amd64", Some("v3")));
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux//x".parse::<Platform>().is_err());
        assert_eq!(Platform::host().os, "linux");
    }
}
