//! What the copy rules need to know about a path, on the host (from
//! `lstat`/`stat`) or in the box (from guest-init's `stat PATH` helper, which
//! prints `{"kind":K,"target_kind":K}`).

use std::io;
use std::path::Path;

use serde::Deserialize;

use super::CopyError;

/// What the source of a copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    /// Anything but a directory: a file, a symlink (copied as the link), a
    /// FIFO or device node.
    File,
    /// A directory (or, with a trailing `/` or `/.`, a symlink to one).
    Dir,
}

/// What is at the destination path, symlinks followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    /// Nothing (or a dangling symlink).
    Missing,
    /// Something that is not a directory.
    File,
    /// A directory.
    Dir,
}

pub use a3s_box_core::guest::builtin::PathKind;

/// The reply of the box's `stat PATH` helper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatReply {
    /// PATH itself (`lstat`).
    pub kind: PathKind,
    /// What PATH leads to with symlinks followed (`stat`).
    pub target_kind: PathKind,
}

impl StatReply {
    /// Parse the helper's output line.
    pub fn parse(line: &str) -> Result<Self, CopyError> {
        serde_json::from_str(line.trim()).map_err(CopyError::StatReply)
    }

    /// The path as a copy destination.
    pub fn dest_kind(&self) -> DestKind {
        dest_kind(self.target_kind)
    }

    /// The path as a copy source, `None` when it does not exist. `follow` is
    /// whether the source path ends with `/` or `/.` (Docker then copies
    /// what a symlink points at, else the link itself).
    pub fn source_kind(&self, follow: bool) -> Option<SourceKind> {
        source_kind(if follow { self.target_kind } else { self.kind })
    }
}

impl DestKind {
    /// What is at a host path, symlinks followed.
    pub fn of_host_path(path: &Path) -> Result<Self, CopyError> {
        host_kind(std::fs::metadata(path), path).map(dest_kind)
    }
}

impl SourceKind {
    /// What a host path is as a copy source (see [`StatReply::source_kind`]).
    pub fn of_host_path(path: &Path, follow: bool) -> Result<Self, CopyError> {
        let meta = if follow {
            std::fs::metadata(path)
        } else {
            std::fs::symlink_metadata(path)
        };
        source_kind(host_kind(meta, path)?).ok_or_else(|| CopyError::SourceMissing {
            path: path.to_owned(),
        })
    }
}

fn dest_kind(kind: PathKind) -> DestKind {
    match kind {
        PathKind::Missing => DestKind::Missing,
        PathKind::Dir => DestKind::Dir,
        PathKind::File | PathKind::Symlink | PathKind::Other => DestKind::File,
    }
}

fn source_kind(kind: PathKind) -> Option<SourceKind> {
    match kind {
        PathKind::Missing => None,
        PathKind::Dir => Some(SourceKind::Dir),
        PathKind::File | PathKind::Symlink | PathKind::Other => Some(SourceKind::File),
    }
}

fn host_kind(meta: io::Result<std::fs::Metadata>, path: &Path) -> Result<PathKind, CopyError> {
    PathKind::of(meta).map_err(CopyError::io("stat", path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn stat_replies_decode() {
        let reply = StatReply::parse("{\"kind\":\"symlink\",\"target_kind\":\"dir\"}\n").unwrap();
        assert_eq!(reply.dest_kind(), DestKind::Dir);
        assert_eq!(reply.source_kind(false), Some(SourceKind::File));
        assert_eq!(reply.source_kind(true), Some(SourceKind::Dir));
        let missing = StatReply::parse(r#"{"kind":"missing","target_kind":"missing"}"#).unwrap();
        assert_eq!(missing.dest_kind(), DestKind::Missing);
        assert_eq!(missing.source_kind(true), None);
        assert!(StatReply::parse(r#"{"kind":"dir"}"#).is_err());
        assert!(StatReply::parse(r#"{"kind":"pipe","target_kind":"dir"}"#).is_err());
    }

    #[test]
    fn host_paths() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("f"), b"").unwrap();
        std::os::unix::fs::symlink(".", d.join("l")).unwrap();
        assert_eq!(DestKind::of_host_path(d).unwrap(), DestKind::Dir);
        assert_eq!(
            DestKind::of_host_path(&d.join("f")).unwrap(),
            DestKind::File
        );
        assert_eq!(DestKind::of_host_path(&d.join("l")).unwrap(), DestKind::Dir);
        assert_eq!(
            DestKind::of_host_path(&d.join("f/x")).unwrap(),
            DestKind::Missing
        );
        assert_eq!(
            SourceKind::of_host_path(&d.join("l"), false).unwrap(),
            SourceKind::File
        );
        assert_eq!(
            SourceKind::of_host_path(&d.join("l"), true).unwrap(),
            SourceKind::Dir
        );
        assert!(matches!(
            SourceKind::of_host_path(&d.join("nope"), false),
            Err(CopyError::SourceMissing { .. })
        ));
    }
}
