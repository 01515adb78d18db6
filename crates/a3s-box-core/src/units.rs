//! Human-readable sizes, as Docker accepts them (`512m`, `2g`, `1048576`).

use crate::error::{BoxError, Result};

const KIB: u64 = 1024;

/// Parse a size such as `512m`, `2G`, `1048576` or `64k` into bytes.
/// Suffixes are binary (k = 1024), as in Docker; an optional trailing `b`
/// or `ib` is accepted (`512mb`, `512MiB`).
pub fn parse_size_bytes(input: &str) -> Result<u64> {
    size_bytes(input)
        .map_err(|reason| BoxError::Invalid(format!("invalid size {input:?}: {reason}")))
}

/// [`parse_size_bytes`], failing with the reason alone.
pub(crate) fn size_bytes(input: &str) -> std::result::Result<u64, String> {
    let text = input.trim().to_ascii_lowercase();
    let text = text
        .strip_suffix("ib")
        .or_else(|| text.strip_suffix('b'))
        .unwrap_or(&text);
    let (digits, shift) = match text.char_indices().last() {
        Some((i, 'k')) => (&text[..i], 1),
        Some((i, 'm')) => (&text[..i], 2),
        Some((i, 'g')) => (&text[..i], 3),
        Some((i, 't')) => (&text[..i], 4),
        _ => (text, 0),
    };
    let bad = || "use a number with an optional unit k, m, g or t (e.g. 512m)".to_string();
    let value: u64 = digits.parse().map_err(|_| bad())?;
    value.checked_mul(KIB.pow(shift)).ok_or_else(bad)
}

/// Parse a memory size for a VM and return whole MiB (at least 1).
pub fn parse_memory_mib(input: &str) -> Result<u32> {
    parse_size_bytes(input)?;
    memory_mib(input)
        .map_err(|reason| BoxError::Invalid(format!("invalid memory size {input:?}: {reason}")))
}

/// [`parse_memory_mib`], failing with the reason alone.
pub(crate) fn memory_mib(input: &str) -> std::result::Result<u32, String> {
    let bytes = size_bytes(input)?;
    let mib = bytes / (KIB * KIB);
    if bytes % (KIB * KIB) != 0 || mib == 0 {
        return Err("a VM needs a whole number of MiB, at least 1m".into());
    }
    u32::try_from(mib).map_err(|_| "the size is too large".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(parse_size_bytes("1024").unwrap(), 1024);
        assert_eq!(parse_size_bytes("64k").unwrap(), 64 * 1024);
        assert_eq!(parse_size_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size_bytes("2gb").unwrap(), 2 << 30);
        assert_eq!(parse_size_bytes("1GiB").unwrap(), 1 << 30);
    }

    #[test]
    fn bad_sizes_are_rejected_with_a_hint() {
        for bad in ["", "m", "12x", "-5m", "1.5g", "99999999999999999999t"] {
            let err = parse_size_bytes(bad).unwrap_err().to_string();
            assert!(err.contains("invalid size"), "{bad}: {err}");
        }
    }

    #[test]
    fn memory_is_whole_mib() {
        assert_eq!(parse_memory_mib("512m").unwrap(), 512);
        assert_eq!(parse_memory_mib("1g").unwrap(), 1024);
        assert!(parse_memory_mib("100k").is_err());
        assert!(parse_memory_mib("0").is_err());
        let e = parse_memory_mib("lots").unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::Invalid);
        assert!(e.to_string().starts_with("invalid size \"lots\""), "{e}");
        let e = parse_memory_mib("100k").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid memory size \"100k\": a VM needs"),
            "{e}"
        );
    }
}
