//! Box names: validation and generated names.

use a3s_box_core::{BoxError, Result};

const ADJECTIVES: [&str; 16] = [
    "brave", "calm", "eager", "fond", "gentle", "happy", "keen", "lucid", "merry", "nimble",
    "quiet", "sharp", "steady", "swift", "tidy", "witty",
];
const NOUNS: [&str; 16] = [
    "babbage", "curie", "dijkstra", "euler", "gauss", "hopper", "knuth", "lamport", "liskov",
    "lovelace", "noether", "pike", "ritchie", "shannon", "thompson", "turing",
];

/// Docker's rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
pub fn validate(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 128;
    if ok {
        Ok(())
    } else {
        Err(BoxError::Invalid(format!(
            "invalid box name {name:?}: use letters, digits, '_', '.' and '-', starting with a letter or digit"
        )))
    }
}

/// A free `adjective_noun` name derived from the id (digits added on clashes).
pub fn generate(id: &str, taken: &[String]) -> String {
    let byte = |i: usize| usize::from_str_radix(id.get(i..i + 2).unwrap_or("00"), 16).unwrap_or(0);
    let base = format!("{}_{}", ADJECTIVES[byte(0) % 16], NOUNS[byte(2) % 16]);
    if !taken.contains(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|n| !taken.contains(n))
        .unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a1", "my_box.v2-x"] {
            validate(ok).unwrap();
        }
        for bad in ["", "-x", "_x", "a b", "a/b", "ünï"] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_names_avoid_taken_ones() {
        let first = generate("00aa", &[]);
        assert_eq!(first, "brave_noether");
        assert_eq!(
            generate("00aa", std::slice::from_ref(&first)),
            "brave_noether2"
        );
        validate(&first).unwrap();
    }
}
