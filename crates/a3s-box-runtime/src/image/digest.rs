//! Content digests (`sha256:<64 hex>`), the names of everything in the store.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

/// Length of a sha256 digest in hex characters.
pub const SHA256_HEX_LEN: usize = 64;

/// A digest that is not `sha256:` followed by 64 lowercase hex characters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid digest {value:?}: expected sha256:<64 lowercase hex characters>")]
pub struct DigestError {
    /// The text that failed to parse.
    pub value: String,
}

/// A sha256 content digest. Only sha256 is accepted: it is what every registry serves.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(data))
    }

    /// The digest computed by a finished hasher.
    pub fn from_hasher(hasher: Sha256) -> Self {
        let bytes = hasher.finalize();
        let mut hex = String::with_capacity(SHA256_HEX_LEN);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        Self { hex }
    }

    /// The 64 hex characters, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm name (always `sha256`).
    pub fn algorithm(&self) -> &'static str {
        "sha256"
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || DigestError {
            value: s.to_owned(),
        };
        let hex = s.strip_prefix("sha256:").ok_or_else(err)?;
        let valid = hex.len() == SHA256_HEX_LEN
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(err());
        }
        Ok(Self {
            hex: hex.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> Self {
        d.to_string()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_matches_known_value() {
        assert_eq!(
            Digest::of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips_and_rejects_bad_input() {
        let d = Digest::of(b"x");
        assert_eq!(d.to_string().parse::<Digest>(), Ok(d.clone()));
        for bad in [
            "",
            "sha256:",
            "md5:00",
            "sha256:ABC",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(bad.parse::<Digest>().is_err(), "{bad}");
        }
    }
}
