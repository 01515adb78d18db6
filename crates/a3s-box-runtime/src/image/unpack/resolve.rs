//! Resolving layer paths inside the unpack root without ever leaving it.
//!
//! Entry names are cleaned first: `..` components are refused outright; a leading `/` is
//! dropped (the name is taken relative to the root, as GNU tar, Docker and containerd do:
//! umoci, for one, writes `/` and `/bin/...` entries).
//! Parent directories are then walked one component at a time with `lstat`; a symlink met
//! on the way is expanded with the root treated as `/` (an absolute target restarts at the
//! root), and a relative target that climbs above the root is refused. The final
//! component is never followed, so an entry always replaces a symlink rather than writing
//! through it. The unpack root is a private temp directory, so nothing else changes the
//! tree while it is walked.

use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::UnpackError;

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// The components of an entry name, or why it is refused.
pub fn clean(entry: &Path) -> Result<Vec<OsString>, UnpackError> {
    let mut out = Vec::new();
    for comp in entry.components() {
        match comp {
            Component::Normal(c) => out.push(c.to_owned()),
            Component::CurDir | Component::RootDir => {}
            Component::Prefix(_) => {
                return Err(UnpackError::Escape {
                    entry: entry.to_owned(),
                    reason: "path prefix",
                })
            }
            Component::ParentDir => {
                return Err(UnpackError::Escape {
                    entry: entry.to_owned(),
                    reason: "'..' component",
                })
            }
        }
    }
    Ok(out)
}

/// Resolve the directory `parent` (components under `root`), following symlinks inside
/// the root only. Returns the real path relative to `root`, with no symlinks in it.
pub fn resolve_dir(root: &Path, parent: &[OsString], entry: &Path) -> Result<PathBuf, UnpackError> {
    let mut real: Vec<OsString> = Vec::new();
    let mut pending: Vec<OsString> = parent.iter().rev().cloned().collect();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == OsStr::new(".") || comp.is_empty() {
            continue;
        }
        if comp == OsStr::new("..") {
            if real.pop().is_none() {
                return Err(UnpackError::Escape {
                    entry: entry.to_owned(),
                    reason: "a symlink in its path points outside the root",
                });
            }
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&real);
        candidate.push(&comp);
        let is_link =
            std::fs::symlink_metadata(&candidate).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link {
            real.push(comp);
            continue;
        }
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(UnpackError::SymlinkLoop {
                entry: entry.to_owned(),
            });
        }
        let target = std::fs::read_link(&candidate).map_err(|source| UnpackError::Io {
            op: "readlink",
            path: candidate.clone(),
            source,
        })?;
        if target.has_root() {
            real.clear();
        }
        for c in target.components().rev() {
            match c {
                Component::Normal(n) => pending.push(n.to_owned()),
                Component::ParentDir => pending.push("..".into()),
                Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            }
        }
    }
    Ok(real.iter().collect())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn comps(s: &str) -> Vec<OsString> {
        clean(Path::new(s)).unwrap()
    }

    #[test]
    fn clean_refuses_absolute_and_dotdot() {
        assert_eq!(comps("./a/./b/"), vec![OsString::from("a"), "b".into()]);
        assert_eq!(
            comps("/etc/passwd"),
            vec![OsString::from("etc"), "passwd".into()]
        );
        assert!(matches!(
            clean(Path::new("a/../../x")),
            Err(UnpackError::Escape { .. })
        ));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("usr/lib")).unwrap();
        symlink("usr/lib", r.join("lib")).unwrap();
        symlink("/usr", r.join("abs")).unwrap();
        symlink("../../..", r.join("usr/lib/up")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        let e = Path::new("e");
        assert_eq!(
            resolve_dir(r, &comps("lib/x"), e).unwrap(),
            Path::new("usr/lib/x")
        );
        assert_eq!(
            resolve_dir(r, &comps("abs/lib"), e).unwrap(),
            Path::new("usr/lib")
        );
        let err = resolve_dir(r, &comps("usr/lib/up/etc"), e).unwrap_err();
        assert!(err.to_string().contains("outside the root"), "{err}");
        assert!(matches!(
            resolve_dir(r, &comps("loop/x"), e),
            Err(UnpackError::SymlinkLoop { .. })
        ));
    }
}
