//! guest-init's built-in helpers: programs it runs inside a box (as
//! `ProcessSpec { builtin: true, executable: NAME, .. }`) so that `cp`, `top`
//! and `stats` work in any image, with or without a shell or `tar`.

/// `tar-create PATH`: a tar of PATH on stdout, entries named from its basename.
pub const TAR_CREATE: &str = "tar-create";
/// `tar-extract DIR`: extract the tar on stdin under DIR (which must exist).
pub const TAR_EXTRACT: &str = "tar-extract";
/// `ps`: the box's processes as `ps -ef` shows them.
pub const PS: &str = "ps";
/// `stats`: `{"mem_total_bytes":N,"mem_available_bytes":N,"pids":N}`.
pub const STATS: &str = "stats";
/// `stat PATH`: `{"kind":K,"target_kind":K}` (missing|file|dir|symlink|other).
pub const STAT: &str = "stat";
/// `layer-diff`: the box's changes to its image, one `A|C|D /path` line each
/// (Docker's `diff`), read from the overlay's upper layer.
pub const LAYER_DIFF: &str = "layer-diff";
/// `layer-tar`: the box's changes as an OCI layer tar (whiteouts as `.wh.`).
pub const LAYER_TAR: &str = "layer-tar";
/// `root-tar`: a tar of the box's whole filesystem, without its mounts.
pub const ROOT_TAR: &str = "root-tar";

/// What a path is, as `stat` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// Nothing there (or a dangling symlink, as a `target_kind`).
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symlink (only as `kind`, never as `target_kind`).
    Symlink,
    /// A FIFO, socket or device node.
    Other,
}

impl PathKind {
    /// The kind of a path from its `lstat`/`stat` result: missing when
    /// nothing is there, or when a file stands where the path needs a
    /// directory (`file/x`); other errors are returned.
    pub fn of(meta: std::io::Result<std::fs::Metadata>) -> std::io::Result<PathKind> {
        match meta {
            Ok(m) if m.is_dir() => Ok(PathKind::Dir),
            Ok(m) if m.is_file() => Ok(PathKind::File),
            Ok(m) if m.file_type().is_symlink() => Ok(PathKind::Symlink),
            Ok(_) => Ok(PathKind::Other),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(PathKind::Missing)
            }
            Err(e) => Err(e),
        }
    }

    /// The word `stat` prints for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            PathKind::Missing => "missing",
            PathKind::File => "file",
            PathKind::Dir => "dir",
            PathKind::Symlink => "symlink",
            PathKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_print_as_their_json_names() {
        for k in [
            PathKind::Missing,
            PathKind::File,
            PathKind::Dir,
            PathKind::Symlink,
            PathKind::Other,
        ] {
            let json = serde_json::to_string(&k).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }
}
