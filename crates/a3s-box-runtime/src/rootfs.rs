//! Turning a root filesystem directory into a block image the guest mounts.
//!
//! The host only *writes* the image (`mkfs.erofs` or `mkfs.ext4 -d`, which
//! copy the tree with owners, modes, links, device nodes and xattrs); it never
//! mounts it. The guest mounts it read-only under an overlay, so the source
//! directory is never modified.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::str::FromStr;

use a3s_box_core::{BoxError, Result};
use sha2::{Digest, Sha256};

/// Filesystem of a read-only root image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootfsFormat {
    /// EROFS: read-only by design, compact, fastest to build and mount.
    #[default]
    Erofs,
    /// ext4 without a journal.
    Ext4,
}

impl RootfsFormat {
    /// The guest's name for the filesystem type.
    pub fn fstype(self) -> &'static str {
        match self {
            RootfsFormat::Erofs => "erofs",
            RootfsFormat::Ext4 => "ext4",
        }
    }
}

impl FromStr for RootfsFormat {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "erofs" => Ok(RootfsFormat::Erofs),
            "ext4" => Ok(RootfsFormat::Ext4),
            other => Err(BoxError::Invalid(format!(
                "unknown root filesystem format {other:?}: use erofs or ext4"
            ))),
        }
    }
}

/// The image of `dir` in the cache under `cache_dir`, built on first use.
///
/// The key hashes every entry's path, type, mode, owner, size, inode, mtime
/// and ctime, so any change to the tree (ctime cannot be set back by users)
/// gives a new image; an unchanged tree reuses its image and the run does no
/// building at all. Images are written to a temporary name and renamed, so
/// concurrent runs never see a partial image.
pub fn cached_image(cache_dir: &Path, dir: &Path, format: RootfsFormat) -> Result<PathBuf> {
    check_source(dir)?;
    let key = tree_key(dir, format)
        .map_err(|e| BoxError::io(format!("read root filesystem {}", dir.display()), e))?;
    let image = cache_dir.join(format!("{key}.{}", format.fstype()));
    if image.is_file() {
        return Ok(image);
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| BoxError::io(format!("create {}", cache_dir.display()), e))?;
    let tmp = cache_dir.join(format!(".{key}.{}.tmp", std::process::id()));
    build_image(dir, &tmp, format)?;
    std::fs::rename(&tmp, &image).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        BoxError::io(format!("store {}", image.display()), e)
    })?;
    Ok(image)
}

fn tree_key(dir: &Path, format: RootfsFormat) -> std::io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::MetadataExt;
    let mut hasher = Sha256::new();
    hasher.update(format.fstype());
    hasher.update(std::fs::canonicalize(dir)?.as_os_str().as_bytes());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let m = entry.metadata()?;
            hasher.update(entry.path().as_os_str().as_bytes());
            hasher.update([0]);
            for n in [m.mode(), m.uid(), m.gid()] {
                hasher.update(n.to_le_bytes());
            }
            for n in [m.size(), m.ino(), m.rdev()] {
                hasher.update(n.to_le_bytes());
            }
            for n in [m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()] {
                hasher.update(n.to_le_bytes());
            }
            if m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Build a `format` image at `image` holding the tree at `dir`.
pub fn build_image(dir: &Path, image: &Path, format: RootfsFormat) -> Result<()> {
    check_source(dir)?;
    let output = match format {
        RootfsFormat::Ext4 => return build_ext4_image(dir, image),
        RootfsFormat::Erofs => Command::new("mkfs.erofs")
            .args(["--quiet", "--preserve-mtime"])
            .arg(image)
            .arg(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| tool_error("mkfs.erofs", "erofs-utils", e))?,
    };
    check_tool(output, dir, image)
}

fn tool_error(tool: &'static str, package: &'static str, e: std::io::Error) -> BoxError {
    match e.kind() {
        std::io::ErrorKind::NotFound => BoxError::MissingAsset {
            what: tool,
            path: tool.into(),
            hint: if package == "erofs-utils" {
                "install erofs-utils (make setup)"
            } else {
                "install e2fsprogs (make setup)"
            },
        },
        _ => BoxError::io(format!("run {tool}"), e),
    }
}

fn check_tool(output: Output, dir: &Path, image: &Path) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    let _ = std::fs::remove_file(image);
    Err(BoxError::Unavailable(format!(
        "could not build a root filesystem image from {}: {}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}

fn check_source(dir: &Path) -> Result<()> {
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => BoxError::MissingAsset {
            what: "root filesystem",
            path: dir.to_path_buf(),
            hint: "--rootfs needs an existing directory",
        },
        _ => BoxError::io(format!("root filesystem {}", dir.display()), e),
    })?;
    if !meta.is_dir() {
        return Err(BoxError::Invalid(format!(
            "root filesystem {} is not a directory",
            dir.display()
        )));
    }
    Ok(())
}

const BLOCK_BYTES: u64 = 4096;
/// Slack on top of the content for ext4 metadata; the file is sparse, so
/// unused space costs nothing on disk.
const MIN_IMAGE_BYTES: u64 = 64 << 20;

/// Size and entry count of a tree, not following symlinks.
fn tree_usage(dir: &Path) -> std::io::Result<(u64, u64)> {
    let mut bytes = 0;
    let mut entries = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            entries += 1;
            bytes += meta.len().div_ceil(BLOCK_BYTES) * BLOCK_BYTES;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, entries))
}

/// Build an ext4 image at `image` holding the tree at `dir`.
fn build_ext4_image(dir: &Path, image: &Path) -> Result<()> {
    let (bytes, entries) = tree_usage(dir)
        .map_err(|e| BoxError::io(format!("read root filesystem {}", dir.display()), e))?;
    let size = (bytes + bytes / 4 + (entries + 64) * 512).max(MIN_IMAGE_BYTES);
    let inodes = (entries * 5 / 4 + 128).to_string();
    let output = Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-O",
            "^has_journal,^resize_inode",
            "-m",
            "0",
        ])
        .args([
            "-N",
            &inodes,
            "-E",
            "root_owner=0:0,nodiscard",
            "-L",
            "a3s-root",
            "-d",
        ])
        .arg(dir)
        .arg(image)
        .arg(format!("{}k", size.div_ceil(1024)))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| tool_error("mkfs.ext4", "e2fsprogs", e))?;
    check_tool(output, dir, image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_images_and_leaves_the_source_alone() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir(src.path().join("etc")).unwrap();
        std::fs::write(src.path().join("etc/hostname"), "x\n").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", src.path().join("link")).unwrap();
        let before = tree_usage(src.path()).unwrap();
        let out = tempfile::tempdir().unwrap();
        let image = out.path().join("root.img");
        build_image(src.path(), &image, RootfsFormat::Ext4).unwrap();
        assert!(std::fs::metadata(&image).unwrap().len() >= MIN_IMAGE_BYTES);
        let erofs = out.path().join("root.erofs");
        build_image(src.path(), &erofs, RootfsFormat::Erofs).unwrap();
        // EROFS superblock magic at offset 1024.
        let bytes = std::fs::read(&erofs).unwrap();
        assert_eq!(bytes[1024..1028], 0xE0F5_E1E2u32.to_le_bytes());
        assert_eq!(tree_usage(src.path()).unwrap(), before);
    }

    #[test]
    fn the_cache_reuses_an_unchanged_tree_and_rebuilds_a_changed_one() {
        let src = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("a"), "1").unwrap();
        let cache = tempfile::tempdir().unwrap();
        let first = cached_image(cache.path(), src.path(), RootfsFormat::Erofs).unwrap();
        let again = cached_image(cache.path(), src.path(), RootfsFormat::Erofs).unwrap();
        assert_eq!(first, again);
        std::fs::write(src.path().join("a"), "2").unwrap();
        let changed = cached_image(cache.path(), src.path(), RootfsFormat::Erofs).unwrap();
        assert_ne!(first, changed);
        let ext4 = cached_image(cache.path(), src.path(), RootfsFormat::Ext4).unwrap();
        assert_ne!(changed, ext4);
        let leftovers: Vec<_> = std::fs::read_dir(cache.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn missing_or_non_directory_rootfs_is_refused() {
        let out = tempfile::tempdir().unwrap();
        let image = out.path().join("root.img");
        let err = build_image(
            Path::new("/nonexistent/rootfs"),
            &image,
            RootfsFormat::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("root filesystem not found"),
            "{err}"
        );
        let file = out.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(build_image(&file, &image, RootfsFormat::Ext4)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
        assert!(!image.exists());
    }
}
