//! Syntax rules shared by the spec's parts: object names, host names, paths
//! inside a box.

use std::path::{Component, Path};

use super::SpecError;

/// Longest box, pod, volume or network name.
pub const MAX_NAME_LEN: usize = 128;
/// Longest label of a host name (RFC 1123).
pub const MAX_HOST_LABEL_LEN: usize = 63;
/// Longest host name (RFC 1123).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest host name the Linux kernel sets (`HOST_NAME_MAX`): a box's own
/// `--hostname`, unlike a name in DNS, must fit.
pub const MAX_KERNEL_HOST_NAME_LEN: usize = 64;

/// Docker's rule for container, volume and network names:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most [`MAX_NAME_LEN`] characters.
pub fn check_name(field: &str, what: &str, name: &str) -> Result<(), SpecError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(SpecError::invalid(
            field,
            name,
            format!(
                "a {what} name uses letters, digits, '_', '.' and '-', starting with a letter or digit"
            ),
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(SpecError::out_of_range(
            field,
            name,
            format!("a {what} name has at most {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(())
}

/// A host name as RFC 1123 has it: dot-separated labels of letters, digits
/// and `-` (not first or last), at most 63 characters each and 253 in all.
/// `underscore` also allows `_` (found in names of services, not of hosts).
pub(crate) fn host_name_problem(name: &str, underscore: bool) -> Option<String> {
    if name.is_empty() {
        return Some("the name is empty".into());
    }
    if name.len() > MAX_HOST_NAME_LEN {
        return Some(format!(
            "a host name has at most {MAX_HOST_NAME_LEN} characters"
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Some(
                "a host name has no empty labels (no leading, trailing or double dots)".into(),
            );
        }
        if label.len() > MAX_HOST_LABEL_LEN {
            return Some(format!(
                "each dot-separated label of a host name has at most {MAX_HOST_LABEL_LEN} characters"
            ));
        }
        let ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || (underscore && c == '_');
        if !label.chars().all(ok) {
            return Some(format!(
                "a host name uses letters, digits{} and '-' in dot-separated labels",
                if underscore { ", '_'" } else { "" }
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Some("a label of a host name does not start or end with '-'".into());
        }
    }
    let top = name.rsplit('.').next().unwrap_or_default();
    if name.contains('.') && top.chars().all(|c| c.is_ascii_digit()) {
        return Some("neither an IP address nor a host name (the last label is all digits)".into());
    }
    None
}

/// A host name as RFC 1123 has it (see [`MAX_HOST_NAME_LEN`]), as a
/// [`SpecError`] about `field`; `underscore` also allows `_`.
pub fn check_host_name(field: &str, name: &str, underscore: bool) -> Result<(), SpecError> {
    match host_name_problem(name, underscore) {
        Some(reason) => Err(SpecError::invalid(field, name, reason)),
        None => Ok(()),
    }
}

/// A path inside the box: absolute, without `..`, not `/` itself. Returns
/// it in normal form (no `.`, no doubled or trailing `/`).
pub fn box_path(field: &str, path: &str) -> Result<String, SpecError> {
    let bad = |reason: &str| SpecError::invalid(field, path, reason.to_string());
    if path.contains('\0') {
        return Err(bad("a path has no NUL bytes"));
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(bad("the path inside the box must be absolute"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(bad("the path inside the box must not contain .."));
    }
    let normal: std::path::PathBuf = p.components().collect();
    if normal == Path::new("/") {
        return Err(bad("the path inside the box cannot be /"));
    }
    // Built from a &str's components: still UTF-8.
    Ok(normal.to_string_lossy().into_owned())
}

/// A host path: absolute, no NUL. (Whether it exists is the engine's
/// business.)
pub fn host_path(field: &str, path: &Path) -> Result<(), SpecError> {
    let text = path.to_string_lossy();
    if !path.is_absolute() {
        return Err(SpecError::invalid(
            field,
            text,
            "a host path must be absolute",
        ));
    }
    if text.contains('\0') {
        return Err(SpecError::invalid(field, text, "a path has no NUL bytes"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dockers_rule() {
        for ok in ["web", "a1", "my_box.v2-x", "0"] {
            check_name("--name", "box", ok).unwrap();
        }
        for bad in ["", "-x", "_x", ".x", "a b", "a/b", "ünï"] {
            let e = check_name("--name", "box", bad).unwrap_err();
            assert!(e.message.contains("starting with a letter or digit"), "{e}");
        }
        let long = "a".repeat(MAX_NAME_LEN + 1);
        assert!(check_name("--name", "box", &long).is_err());
    }

    #[test]
    fn host_names_follow_rfc_1123() {
        for ok in ["web", "a-b.example.com", "x1", &"a".repeat(63)] {
            check_host_name("--hostname", ok, false).unwrap();
        }
        let long = vec!["a".repeat(60); 5].join(".");
        for bad in [
            "",
            "-a",
            "a-",
            "a..b",
            ".a",
            "a_b",
            "a b",
            &"a".repeat(64),
            &long,
            "1.2.3",
        ] {
            assert!(check_host_name("--hostname", bad, false).is_err(), "{bad}");
        }
        check_host_name("--add-host", "my_db", true).unwrap();
    }

    #[test]
    fn box_paths_are_absolute_and_normal() {
        assert_eq!(box_path("t", "/a//b/./c/").unwrap(), "/a/b/c");
        for bad in ["rel", "/", "//", "/a/../b", "", "/a\0"] {
            assert!(box_path("t", bad).is_err(), "{bad:?}");
        }
        host_path("s", Path::new("/srv")).unwrap();
        assert!(host_path("s", Path::new("srv")).is_err());
    }
}
