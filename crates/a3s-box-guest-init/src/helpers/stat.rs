//! `stat PATH`: what is at PATH, so the host can apply `docker cp`'s
//! destination rules to a path inside the box. Prints one JSON line,
//! `{"kind":K,"target_kind":K}`: `kind` is PATH itself (a symlink is
//! `symlink`), `target_kind` what PATH leads to with symlinks followed.
//! A missing PATH is not an error: its kind is `missing`.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::HelperError;

pub use a3s_box_core::guest::builtin::PathKind;

/// Print the kinds of `path` to `out`.
pub fn run(path: &Path, out: &mut impl Write) -> Result<(), HelperError> {
    let kind = PathKind::of(fs::symlink_metadata(path)).map_err(HelperError::io("stat", path))?;
    let target_kind = PathKind::of(fs::metadata(path)).map_err(HelperError::io("stat", path))?;
    writeln!(
        out,
        "{{\"kind\":\"{}\",\"target_kind\":\"{}\"}}",
        kind.as_str(),
        target_kind.as_str()
    )
    .map_err(HelperError::io("write", "stdout"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(path: &Path) -> String {
        let mut out = Vec::new();
        run(path, &mut out).expect("stat");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn kinds_of_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        fs::write(d.join("f"), b"x").expect("write");
        std::os::unix::fs::symlink("f", d.join("l")).expect("symlink");
        std::os::unix::fs::symlink("nowhere", d.join("dangling")).expect("symlink");
        assert_eq!(stat(d), "{\"kind\":\"dir\",\"target_kind\":\"dir\"}\n");
        assert_eq!(
            stat(&d.join("f")),
            "{\"kind\":\"file\",\"target_kind\":\"file\"}\n"
        );
        assert_eq!(
            stat(&d.join("l")),
            "{\"kind\":\"symlink\",\"target_kind\":\"file\"}\n"
        );
        assert_eq!(
            stat(&d.join("dangling")),
            "{\"kind\":\"symlink\",\"target_kind\":\"missing\"}\n"
        );
        assert_eq!(
            stat(&d.join("f/x")),
            "{\"kind\":\"missing\",\"target_kind\":\"missing\"}\n"
        );
    }
}
