//! Docker's `cp` rules for where a copy lands, as a pure function of what
//! the source and destination are (`docker cp` manual):
//!
//! | SRC | DEST | result |
//! |---|---|---|
//! | file | missing | saved as DEST |
//! | file | missing, ends with `/` | error: the directory must exist |
//! | file | file | DEST overwritten |
//! | file | file, ends with `/` | error: not a directory |
//! | file | dir | copied into DEST under its own name |
//! | dir | missing | DEST created, SRC's *contents* copied into it |
//! | dir | file | error |
//! | dir | dir | SRC copied into DEST under its own name |
//! | dir ending `/.` | dir | SRC's contents copied into DEST |
//! | file ending `/.` | any | error: not a directory |
//!
//! A plan is "extract the archive in this directory, renaming its root",
//! which both directions carry out: [`super::pack`] names the root when it
//! builds the archive, [`super::unpack`] renames it while it extracts.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{CopyError, DestKind, SourceKind};

/// The archive root name meaning "the contents, not the directory itself".
const CONTENTS: &str = ".";

/// The source of a copy.
#[derive(Debug, Clone, Copy)]
pub struct CopySource<'a> {
    /// SRC as the user wrote it (`/etc`, `/etc/`, `/etc/.`).
    pub path: &'a Path,
    /// What it is (see [`SourceKind`]).
    pub kind: SourceKind,
}

/// The destination of a copy.
#[derive(Debug, Clone, Copy)]
pub struct CopyDest<'a> {
    /// DEST as the user wrote it, made absolute for a path in the box.
    pub path: &'a Path,
    /// What is there, symlinks followed.
    pub kind: DestKind,
}

/// Where and under what name a copy is extracted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyPlan {
    /// The name of the root entry of an archive of SRC (its basename, as
    /// `tar-create` names it; `.` for `/`).
    pub archive_root: String,
    /// The directory to extract in. It must exist when the copy runs.
    pub extract_dir: PathBuf,
    /// The name the root must take there, when it is not `archive_root`;
    /// `.` means SRC's contents go straight into `extract_dir`.
    pub rename: Option<String>,
}

impl CopyPlan {
    /// The root name for [`super::pack`] (host → box).
    pub fn packed_name(&self) -> &str {
        self.rename.as_deref().unwrap_or(&self.archive_root)
    }

    /// The `rename_root` for [`super::unpack`] (box → host).
    pub fn rename_root(&self) -> Option<(&str, &str)> {
        self.rename
            .as_deref()
            .map(|to| (self.archive_root.as_str(), to))
    }
}

/// Decide where a copy of `src` to `dst` lands.
pub fn plan_copy(src: &CopySource<'_>, dst: &CopyDest<'_>) -> Result<CopyPlan, CopyError> {
    let archive_root = archive_root_name(src.path);
    let contents = names_contents(src.path) || archive_root == CONTENTS;
    let dst_path = dst.path.to_owned();
    let in_place = |rename: Option<&str>| CopyPlan {
        archive_root: archive_root.clone(),
        extract_dir: dst_path.clone(),
        rename: rename.filter(|to| *to != archive_root).map(str::to_owned),
    };
    let as_dest_name = || -> Result<CopyPlan, CopyError> {
        let name = dst.path.file_name().filter(|_| !names_contents(dst.path));
        let Some(name) = name.and_then(OsStr::to_str) else {
            return Err(CopyError::DestNoName {
                path: dst_path.clone(),
            });
        };
        let parent = match dst.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(CopyPlan {
            archive_root: archive_root.clone(),
            extract_dir: parent,
            rename: (name != archive_root).then(|| name.to_owned()),
        })
    };
    let trailing_slash =
        dst.path.as_os_str().as_bytes().ends_with(b"/") || names_contents(dst.path);
    match (src.kind, dst.kind) {
        (SourceKind::File, _) if contents => Err(CopyError::SourceNotDir {
            path: src.path.to_owned(),
        }),
        (SourceKind::File, DestKind::Dir) => Ok(in_place(None)),
        (SourceKind::File, DestKind::Missing) if trailing_slash => {
            Err(CopyError::DestDirMissing { path: dst_path })
        }
        (SourceKind::File, DestKind::File) if trailing_slash => {
            Err(CopyError::DestNotDir { path: dst_path })
        }
        (SourceKind::File, DestKind::Missing | DestKind::File) => as_dest_name(),
        (SourceKind::Dir, DestKind::File) => Err(CopyError::DirOntoFile { path: dst_path }),
        (SourceKind::Dir, DestKind::Missing) => as_dest_name(),
        (SourceKind::Dir, DestKind::Dir) if contents => Ok(in_place(Some(CONTENTS))),
        (SourceKind::Dir, DestKind::Dir) => Ok(in_place(None)),
    }
}

/// The root name of an archive of `path`: its last component (`/etc/.` and
/// `/etc/` give `etc`), or `.` when it has none (`/`, `..`). Non-UTF-8 bytes
/// are replaced, so such a name only works when it is renamed.
pub fn archive_root_name(path: &Path) -> String {
    path.file_name()
        .map_or_else(|| CONTENTS.to_owned(), |n| n.to_string_lossy().into_owned())
}

/// Whether `path` names a directory's contents: `.` or ending in `/.`.
fn names_contents(path: &Path) -> bool {
    let bytes = path.as_os_str().as_bytes();
    bytes == b"." || bytes.ends_with(b"/.")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn plan(
        src: &str,
        kind: SourceKind,
        dst: &str,
        dkind: DestKind,
    ) -> Result<CopyPlan, CopyError> {
        plan_copy(
            &CopySource {
                path: Path::new(src),
                kind,
            },
            &CopyDest {
                path: Path::new(dst),
                kind: dkind,
            },
        )
    }

    fn ok(
        src: &str,
        kind: SourceKind,
        dst: &str,
        dkind: DestKind,
    ) -> (String, String, Option<String>) {
        let p = plan(src, kind, dst, dkind).unwrap();
        (
            p.archive_root,
            p.extract_dir.display().to_string(),
            p.rename,
        )
    }

    fn s(v: &str) -> String {
        v.to_owned()
    }

    use DestKind::{Dir as DDir, File as DFile, Missing};
    use SourceKind::{Dir, File};

    #[test]
    fn file_to_missing_is_saved_as_dest() {
        assert_eq!(
            ok("/etc/hosts", File, "/tmp/h", Missing),
            (s("hosts"), s("/tmp"), Some(s("h")))
        );
        assert_eq!(
            ok("/etc/hosts", File, "hosts", Missing),
            (s("hosts"), s("."), None)
        );
        let err = plan("/etc/hosts", File, "/tmp/new/", Missing).unwrap_err();
        assert!(matches!(err, CopyError::DestDirMissing { .. }), "{err}");
    }

    #[test]
    fn file_over_file_is_overwritten() {
        assert_eq!(
            ok("a/hosts", File, "/x/y", DFile),
            (s("hosts"), s("/x"), Some(s("y")))
        );
        let err = plan("a/hosts", File, "/x/y/", DFile).unwrap_err();
        assert!(matches!(err, CopyError::DestNotDir { .. }), "{err}");
    }

    #[test]
    fn file_into_dir_keeps_its_name() {
        assert_eq!(
            ok("/etc/hosts", File, "/tmp", DDir),
            (s("hosts"), s("/tmp"), None)
        );
        assert_eq!(
            ok("/etc/hosts", File, "/tmp/", DDir),
            (s("hosts"), s("/tmp/"), None)
        );
    }

    #[test]
    fn dir_to_missing_creates_dest_with_the_contents() {
        assert_eq!(
            ok("/etc", Dir, "/tmp/new", Missing),
            (s("etc"), s("/tmp"), Some(s("new")))
        );
        assert_eq!(
            ok("/etc/", Dir, "/tmp/new/", Missing),
            (s("etc"), s("/tmp"), Some(s("new")))
        );
        assert_eq!(
            ok("/etc/.", Dir, "new", Missing),
            (s("etc"), s("."), Some(s("new")))
        );
        assert_eq!(
            ok("/", Dir, "/tmp/root", Missing),
            (s("."), s("/tmp"), Some(s("root")))
        );
        assert_eq!(
            ok("/etc", Dir, "/tmp/etc", Missing),
            (s("etc"), s("/tmp"), None)
        );
    }

    #[test]
    fn dir_onto_file_is_an_error() {
        let err = plan("/etc", Dir, "/tmp/f", DFile).unwrap_err();
        assert!(matches!(err, CopyError::DirOntoFile { .. }), "{err}");
        assert!(err.to_string().contains("remove the file"), "{err}");
    }

    #[test]
    fn dir_into_dir_keeps_its_name() {
        assert_eq!(ok("/etc", Dir, "/tmp", DDir), (s("etc"), s("/tmp"), None));
        assert_eq!(
            ok("/etc/", Dir, "/tmp/", DDir),
            (s("etc"), s("/tmp/"), None)
        );
    }

    #[test]
    fn dir_contents_go_into_dir() {
        assert_eq!(
            ok("/etc/.", Dir, "/tmp", DDir),
            (s("etc"), s("/tmp"), Some(s(".")))
        );
        assert_eq!(ok(".", Dir, "/tmp", DDir), (s("."), s("/tmp"), None));
        assert_eq!(ok("/", Dir, "/tmp", DDir), (s("."), s("/tmp"), None));
    }

    #[test]
    fn contents_of_a_file_is_an_error() {
        for dkind in [Missing, DFile, DDir] {
            let err = plan("/etc/hosts/.", File, "/tmp", dkind).unwrap_err();
            assert!(matches!(err, CopyError::SourceNotDir { .. }), "{err}");
        }
    }

    #[test]
    fn a_nameless_missing_dest_is_an_error() {
        let err = plan("/etc/hosts", File, "/tmp/..", Missing).unwrap_err();
        assert!(matches!(err, CopyError::DestNoName { .. }), "{err}");
    }

    #[test]
    fn plans_drive_pack_and_unpack() {
        let p = plan("/etc/.", Dir, "/tmp", DDir).unwrap();
        assert_eq!(p.packed_name(), ".");
        assert_eq!(p.rename_root(), Some(("etc", ".")));
        let p = plan("/etc/hosts", File, "/tmp", DDir).unwrap();
        assert_eq!(p.packed_name(), "hosts");
        assert_eq!(p.rename_root(), None);
    }
}
